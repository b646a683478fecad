"""``rank1 eval --report report.html``: one self-contained HTML page with plots.

Plots (matplotlib, drawn to inline SVG: the page fetches nothing): nDCG per query, first
stage against rank1; a reliability diagram (rank1's score against the share of relevant
documents per score bin, qrels' labels); a score histogram split by label; reasoning
length against correctness; the precision/recall curve of the confidence threshold with
the threshold reaching ``target_precision`` marked
(:mod:`~rank1_integrations.evaluation.calibration`). Then the judgments table, each chain
expandable.

matplotlib is imported when a report is written (part of the ``eval`` extra).

Usage::

    write_html_report("report.html", report, result, qrels, target_precision=0.9)
"""

from __future__ import annotations

import html
import io
from collections.abc import Mapping
from typing import Any

from .calibration import Labelled, ThresholdRow, labelled_pairs, pick_threshold, threshold_table
from .runner import RerankResult

__all__ = ["write_html_report"]


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ImportError(
            "rank1 eval --report needs matplotlib: pip install \"rank1-integrations[eval]\""
        ) from exc
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _svg(fig: Any) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight")
    fig.clf()
    import matplotlib.pyplot as plt

    plt.close(fig)
    text = buf.getvalue()
    return text[text.index("<svg"):]  # drop the XML prolog and doctype


def _plots(report: dict[str, Any], pairs: list[Labelled], rows: list[ThresholdRow],
           best: ThresholdRow | None, target: float) -> dict[str, str]:
    plt = _pyplot()
    out: dict[str, str] = {}
    primary = next(iter(report["metrics"]))

    qids = [q for q, r in report["per_query"].items() if r["rank1"] and r["first_stage"]]
    fig, ax = plt.subplots(figsize=(max(5.0, 0.5 * len(qids) + 2), 3.2))
    xs = range(len(qids))
    ax.bar([x - 0.2 for x in xs], [report["per_query"][q]["first_stage"][primary]
                                   for q in qids], 0.4, label="first stage")
    ax.bar([x + 0.2 for x in xs], [report["per_query"][q]["rank1"][primary] for q in qids],
           0.4, label="rank1")
    ax.set_xticks(list(xs), qids, rotation=45 if len(qids) > 8 else 0, ha="right"
                  if len(qids) > 8 else "center")
    ax.set_ylabel(primary)
    ax.set_ylim(0, 1.05)
    ax.legend()
    ax.set_title(f"{primary} per query")
    out["ndcg"] = _svg(fig)

    fig, ax = plt.subplots(figsize=(4.2, 4.0))
    bins: list[list[Labelled]] = [[] for _ in range(10)]
    for p in pairs:
        bins[min(9, int(p.score * 10))].append(p)
    mids = [sum(p.score for p in b) / len(b) for b in bins if b]
    frac = [sum(p.relevant for p in b) / len(b) for b in bins if b]
    counts = [len(b) for b in bins if b]
    ax.plot([0, 1], [0, 1], "--", color="grey", label="perfect calibration")
    ax.plot(mids, frac, "o-", label="rank1")
    for x, y, n in zip(mids, frac, counts, strict=True):
        ax.annotate(str(n), (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
    ax.set_xlabel("rank1 score (bin mean)")
    ax.set_ylabel("share relevant in the qrels")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.05)
    ax.legend(loc="upper left")
    ax.set_title("Reliability diagram")
    out["reliability"] = _svg(fig)

    fig, ax = plt.subplots(figsize=(4.6, 3.2))
    edges = [k / 20 for k in range(21)]
    ax.hist([[p.score for p in pairs if p.relevant], [p.score for p in pairs if not p.relevant]],
            bins=edges, stacked=True, label=["relevant (qrels)", "not relevant (qrels)"])
    ax.set_xlabel("rank1 score")
    ax.set_ylabel("documents")
    ax.legend()
    ax.set_title("Score histogram")
    out["histogram"] = _svg(fig)

    fig, ax = plt.subplots(figsize=(4.6, 3.2))
    right = [p.reasoning_tokens for p in pairs if (p.score >= 0.5) == p.relevant]
    wrong = [p.reasoning_tokens for p in pairs if (p.score >= 0.5) != p.relevant]
    data = [d for d in (right, wrong) if d]
    labels = [n for n, d in (("verdict right", right), ("verdict wrong", wrong)) if d]
    if data:
        ax.boxplot(data)
        ax.set_xticks(range(1, len(data) + 1), [f"{n} ({len(d)})" for n, d in
                                                zip(labels, data, strict=True)])
    ax.set_ylabel("reasoning tokens")
    ax.set_title("Reasoning length against correctness")
    out["length"] = _svg(fig)

    fig, ax = plt.subplots(figsize=(4.6, 4.0))
    if rows:
        ax.plot([r.recall for r in rows], [r.precision for r in rows], "-", label="threshold")
        if best is not None:
            ax.plot([best.recall], [best.precision], "o", color="C3",
                    label=f"score_threshold={best.threshold:.3f}")
    ax.axhline(target, ls="--", color="grey", label=f"target precision {target:.2f}")
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_xlim(0, 1.02)
    ax.set_ylim(0, 1.05)
    ax.legend(loc="lower left")
    ax.set_title("Precision / recall of the score threshold")
    out["pr"] = _svg(fig)
    return out


_CSS = """
body{font:15px/1.45 system-ui,sans-serif;max-width:70em;margin:0 auto;padding:1em;color:#1d1d1f}
h1{font-size:1.4em} table{border-collapse:collapse;margin:.6em 0} td,th{padding:.2em .6em;
border-bottom:1px solid #ddd;text-align:right} td.l,th.l{text-align:left}
.plots{display:flex;flex-wrap:wrap;gap:1em} figure{margin:0;max-width:100%}
figure svg{max-width:100%;height:auto} details pre{white-space:pre-wrap;max-width:60em}
.yes{color:#1a7f37} .no{color:#b42318}
"""


def write_html_report(
    path: str,
    report: dict[str, Any],
    result: RerankResult,
    qrels: Mapping[str, Mapping[str, int]],
    *,
    target_precision: float,
) -> ThresholdRow | None:
    """Write the page to ``path``; returns the threshold reaching the target (or None)."""
    scores = {qid: {d: j.score for d, j in docs.items() if j.ok and j.score is not None}
              for qid, docs in result.judgments.items()}
    tokens = {qid: {d: j.reasoning_tokens for d, j in docs.items()}
              for qid, docs in result.judgments.items()}
    pairs = labelled_pairs(scores, qrels, tokens)
    rows = threshold_table(pairs)
    best = pick_threshold(rows, target_precision)
    plots = _plots(report, pairs, rows, best, target_precision)
    e = html.escape
    parts = [
        "<!doctype html><html lang=en><head><meta charset=utf-8>",
        "<meta name=viewport content='width=device-width, initial-scale=1'>",
        f"<title>rank1 eval report</title><style>{_CSS}</style></head><body>",
        "<h1>rank1 eval report</h1>",
        f"<p>{report['queries']} queries, depth {report['depth']}, {report['pairs']} documents, "
        f"{report['failed']} failed; {len(pairs)} judged pairs labelled by the qrels.</p>",
        "<table id=metrics><tr><th class=l>metric</th><th>first stage</th><th>rank1</th>"
        "<th>delta</th></tr>",
    ]
    for label, v in report["metrics"].items():
        cells = "".join(f"<td>{'-' if x is None else f'{x:.4f}'}</td>"
                        for x in (v["first_stage"], v["rank1"], v["delta"]))
        parts.append(f"<tr><td class=l>{e(label)}</td>{cells}</tr>")
    parts.append("</table>")
    if best is not None:
        parts.append(
            f"<p id=threshold><b>score_threshold = {best.threshold:.4f}</b> reaches precision "
            f"{best.precision:.4f} (target {target_precision:.2f}) at recall "
            f"{best.recall:.4f}.</p>")
    else:
        parts.append(f"<p id=threshold>No threshold reaches precision {target_precision:.2f} "
                     "on these labels.</p>")
    parts.append("<div class=plots>")
    for key, caption in (("ndcg", "per query"), ("reliability", "reliability"),
                         ("histogram", "scores"), ("length", "reasoning length"),
                         ("pr", "threshold")):
        parts.append(f"<figure id=plot-{key} aria-label='{caption}'>{plots[key]}</figure>")
    parts.append("</div><h2>Judgments</h2><table id=judgments><tr><th class=l>query</th>"
                 "<th class=l>document</th><th>rank</th><th>score</th><th>verdict</th>"
                 "<th>qrels</th><th class=l>reasoning</th></tr>")
    for qid, order in result.rankings.items():
        for rank, docid in enumerate(order, start=1):
            j = result.judgments.get(qid, {}).get(docid)
            if j is None:
                continue
            grade = qrels.get(qid, {}).get(docid)
            if j.ok and j.score is not None:
                verdict = (f"<span class={'yes' if j.relevant else 'no'}>"
                           f"{'relevant' if j.relevant else 'not relevant'}</span>")
                score = f"{j.score:.4f}"
            else:
                verdict, score = f"failed: {e(j.error or '')}", "-"
            parts.append(
                f"<tr><td class=l>{e(qid)}</td><td class=l>{e(docid)}</td><td>{rank}</td>"
                f"<td>{score}</td><td>{verdict}</td><td>{'-' if grade is None else grade}</td>"
                f"<td class=l><details><summary>{j.reasoning_tokens} tokens</summary>"
                f"<pre>{e(j.reasoning)}</pre></details></td></tr>")
    parts.append("</table></body></html>")
    with open(path, "w", encoding="utf-8") as fh:
        fh.write("\n".join(parts))
    return best
