"""The report of ``rank1 eval``: one plain dict (for ``--json``) and its text rendering.

Usage::

    report = build_report(result, first_stage=ev0, reranked=ev1, depth=100, cache=counting)
    print(render_text(report))
    print(json.dumps(report))
"""

from __future__ import annotations

import math
from typing import Any

from ..protocol import VerdictSource
from .metrics import Evaluation
from .runner import CountingCache, RerankResult

__all__ = ["build_report", "early_exit_report", "render_text"]

#: Failures listed in the text report (all of them are in the JSON report).
_SHOWN_FAILURES = 10


def _num(value: float) -> float | None:
    """JSON has no NaN: an undefined mean is ``null``."""
    return None if math.isnan(value) else float(value)


def build_report(
    result: RerankResult,
    *,
    first_stage: Evaluation,
    reranked: Evaluation,
    depth: int,
    cache: CountingCache | None = None,
    store: str | None = None,
    run_out: str | None = None,
) -> dict[str, Any]:
    """Everything ``rank1 eval`` reports, as JSON-ready plain values."""
    metrics = {
        label: {
            "first_stage": _num(first_stage.mean[label]),
            "rank1": _num(reranked.mean[label]),
            "delta": _num(reranked.mean[label] - first_stage.mean[label]),
        }
        for label in reranked.labels
    }
    per_query: dict[str, Any] = {}
    for qid, docs in result.judgments.items():
        failed = sum(1 for j in docs.values() if not j.ok)
        per_query[qid] = {
            "first_stage": first_stage.per_query.get(qid),
            "rank1": reranked.per_query.get(qid),
            "judged": len(docs) - failed,
            "failed": failed,
        }
    every = [j for docs in result.judgments.values() for j in docs.values() if j.ok]
    tokens = [j.reasoning_tokens for j in every]
    sources = {**{source.value: 0 for source in VerdictSource}, "failed": 0}
    sources.update(result.sources())
    return {
        "depth": depth,
        "queries": len(result.rankings),
        "evaluated_queries": len(reranked.per_query),
        "unjudged_queries": list(reranked.unjudged),
        "pairs": result.pairs,
        "from_store": cache.hits if cache is not None else None,
        "judged_now": cache.puts if cache is not None else None,
        "failed": len(result.failures),
        "aborted": result.aborted,
        "elapsed_s": round(result.elapsed_s, 3),
        "judgments_per_s": (
            round(result.pairs / result.elapsed_s, 3) if result.elapsed_s > 0 else None
        ),
        "metrics": metrics,
        "per_query": per_query,
        "sources": sources,
        "score_estimated": sum(1 for j in every if j.score_estimated),
        "truncated_passages": sum(1 for j in every if j.truncated),
        "reasoning_tokens": {
            "total": sum(tokens),
            "mean": (sum(tokens) / len(tokens)) if tokens else None,
            "max": max(tokens) if tokens else None,
        },
        "failures": [
            {"qid": f.qid, "docid": f.docid, "message": f.message} for f in result.failures
        ],
        "store": store,
        "run_out": run_out,
    }


def _spent(result: RerankResult) -> dict[str, int]:
    judged = [j for docs in result.judgments.values() for j in docs.values() if j.ok]
    return {"judgments": len(judged), "reasoning_tokens": sum(j.reasoning_tokens for j in judged)}


def early_exit_report(
    full: RerankResult, early: RerankResult, *, reranked: Evaluation, early_eval: Evaluation,
    stop_after_relevant: int,
) -> dict[str, Any]:
    """The early exit beside the full rerank: the first metric (nDCG@10 by default), the
    judgments and the reasoning tokens each spent (the early exit replays the full run's
    judgments in first-stage order, as if judged one at a time; against a live endpoint up
    to ``concurrency - 1`` more are started, then cancelled)."""
    primary = reranked.labels[0]
    spent_full, spent_early = _spent(full), _spent(early)
    return {
        "stop_after_relevant": stop_after_relevant,
        "metric": primary,
        "full": {primary: _num(reranked.mean[primary]), **spent_full},
        "early_exit": {primary: _num(early_eval.mean[primary]), **spent_early,
                       "unjudged": early.skipped},
    }


def _fmt(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value:+.4f}" if signed else f"{value:.4f}"


def render_text(report: dict[str, Any]) -> str:
    """The report as aligned plain-text tables."""
    lines: list[str] = []
    stored = report["from_store"]
    origin = (
        f" ({stored} from the store, {report['judged_now']} judged now, {report['failed']} failed)"
        if stored is not None
        else f" ({report['failed']} failed)"
    )
    lines.append(
        f"rank1 eval: {report['queries']} queries ({report['evaluated_queries']} with relevance "
        f"judgments), depth {report['depth']}, {report['pairs']} documents{origin} "
        f"in {report['elapsed_s']:.1f} s"
    )
    if report["aborted"]:
        lines.append("ABORTED: too many failed judgments; metrics below cover a partial run")
    lines.append("")
    width = max(12, *(len(k) for k in report["metrics"]))
    lines.append(f"{'metric':<{width}}  {'first stage':>11}  {'rank1':>8}  {'delta':>8}")
    for label, values in report["metrics"].items():
        lines.append(
            f"{label:<{width}}  {_fmt(values['first_stage']):>11}  {_fmt(values['rank1']):>8}  "
            f"{_fmt(values['delta'], signed=True):>8}"
        )
    primary = next(iter(report["metrics"]))
    lines.append("")
    lines.append(f"per query ({primary}):")
    qwidth = max(8, *(len(q) for q in report["per_query"])) if report["per_query"] else 8
    lines.append(
        f"{'query':<{qwidth}}  {'first stage':>11}  {'rank1':>8}  {'delta':>8}  "
        f"{'judged':>6}  {'failed':>6}"
    )
    for qid, row in report["per_query"].items():
        first = row["first_stage"][primary] if row["first_stage"] else None
        after = row["rank1"][primary] if row["rank1"] else None
        delta = after - first if first is not None and after is not None else None
        lines.append(
            f"{qid:<{qwidth}}  {_fmt(first):>11}  {_fmt(after):>8}  {_fmt(delta, True):>8}  "
            f"{row['judged']:>6}  {row['failed']:>6}"
        )
    if report["unjudged_queries"]:
        n = len(report["unjudged_queries"])
        lines.append(
            f"({n} {'query has' if n == 1 else 'queries have'} no relevance judgments: "
            "not evaluated)"
        )
    lines.append("")
    src = report["sources"]
    lines.append(
        "verdicts: "
        + ", ".join(f"{name} {count}" for name, count in src.items())
        + f"; {report['score_estimated']} scores estimated (one answer token outside the "
        f"top-k); {report['truncated_passages']} passages truncated"
    )
    tok = report["reasoning_tokens"]
    if tok["mean"] is not None:
        lines.append(
            f"reasoning tokens: {tok['total']} total, {tok['mean']:.1f} mean, {tok['max']} max"
        )
    if report["judgments_per_s"] is not None:
        lines.append(
            f"throughput: {report['judgments_per_s']:.2f} documents/s (store reads included)"
        )
    if report["failures"]:
        lines.append("")
        lines.append(
            f"{len(report['failures'])} failed judgments (ranked below the judged documents, "
            "in first-stage order; rerun with the same store to retry only these):"
        )
        for f in report["failures"][:_SHOWN_FAILURES]:
            lines.append(f"  query {f['qid']}, document {f['docid']}: {f['message']}")
        if len(report["failures"]) > _SHOWN_FAILURES:
            lines.append(f"  ... and {len(report['failures']) - _SHOWN_FAILURES} more (see --json)")
    if report.get("early_exit"):
        ex = report["early_exit"]
        metric, full, early = ex["metric"], ex["full"], ex["early_exit"]
        lines.append("")
        lines.append(f"early exit (--stop-after-relevant {ex['stop_after_relevant']}):")
        lines.append(f"{'':<12}  {metric:>10}  {'judgments':>10}  {'reasoning tokens':>16}")
        for name, row in (("full rerank", full), ("early exit", early)):
            lines.append(
                f"{name:<12}  {_fmt(row[metric]):>10}  {row['judgments']:>10}  "
                f"{row['reasoning_tokens']:>16}"
            )
    if report["run_out"]:
        lines.append(f"reranked run written to {report['run_out']}")
    if report["store"]:
        lines.append(f"judgments stored in {report['store']}")
    return "\n".join(lines)
