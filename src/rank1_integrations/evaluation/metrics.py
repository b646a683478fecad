"""IR metrics through ``pytrec_eval`` (trec_eval's C code): nDCG@k, MAP, Recall@k, MRR.

No metric is computed by hand here: this module only picks trec_eval measures, names them
for people, and averages the per-query values (an arithmetic mean over the evaluated
queries, as trec_eval and BEIR/mteb report it).

Which queries count: trec_eval evaluates the queries that appear in both the qrels and the
run; a query of the run without judgments is not evaluated (it is listed in
``Evaluation.unjudged``), and a judged query missing from the run is not averaged in
either (as with ``trec_eval`` without ``-c``).

``pytrec_eval`` comes from the ``pytrec-eval-terrier`` wheel, in the ``eval`` extra::

    pip install "rank1-integrations[eval]"

Usage::

    >>> qrels = {"q1": {"d1": 1}}
    >>> run = {"q1": {"d1": 2.0, "d2": 1.0}}
    >>> evaluate(qrels, run).mean["nDCG@10"]
    1.0
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Evaluation", "Metric", "default_metrics", "evaluate"]


@dataclass(frozen=True)
class Metric:
    """A trec_eval measure and the name people know it by."""

    #: Shown in tables and used as the key in results (``"nDCG@10"``).
    label: str
    #: The measure as ``pytrec_eval`` takes it (``"ndcg_cut.10"``).
    measure: str
    #: The key ``pytrec_eval`` returns it under (``"ndcg_cut_10"``).
    key: str


def default_metrics(*, ndcg_k: int = 10, recall_k: int = 100) -> tuple[Metric, ...]:
    """nDCG@``ndcg_k`` (graded gains), MAP, Recall@``recall_k`` and MRR (binary: grade >= 1
    is relevant, trec_eval's default), in that order."""
    for name, k in (("ndcg_k", ndcg_k), ("recall_k", recall_k)):
        if k <= 0:
            raise ValueError(f"{name} must be positive, got {k}")
    return (
        Metric(f"nDCG@{ndcg_k}", f"ndcg_cut.{ndcg_k}", f"ndcg_cut_{ndcg_k}"),
        Metric("MAP", "map", "map"),
        Metric(f"Recall@{recall_k}", f"recall.{recall_k}", f"recall_{recall_k}"),
        Metric("MRR", "recip_rank", "recip_rank"),
    )


@dataclass(frozen=True)
class Evaluation:
    """Per-query and mean metric values, all plain floats, keyed by metric label."""

    metrics: tuple[Metric, ...]
    #: ``{qid: {label: value}}`` for every evaluated query, in the run's query order.
    per_query: dict[str, dict[str, float]]
    #: ``{label: mean over per_query}``; ``nan`` when no query was evaluated.
    mean: dict[str, float]
    #: Queries of the run that have no relevance judgments (not evaluated).
    unjudged: list[str] = field(default_factory=list)

    @property
    def labels(self) -> list[str]:
        return [m.label for m in self.metrics]


def _pytrec_eval() -> Any:
    try:
        import pytrec_eval
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            'rank1 eval computes metrics with pytrec_eval: pip install "rank1-integrations[eval]"'
        ) from exc
    return pytrec_eval


def evaluate(
    qrels: Mapping[str, Mapping[str, int]],
    run: Mapping[str, Mapping[str, float]],
    metrics: tuple[Metric, ...] | None = None,
) -> Evaluation:
    """Evaluate ``run`` (``{qid: {docid: score}}``) against ``qrels`` with trec_eval.

    trec_eval ranks each query's documents by score (ties: document id descending); pass
    scores that encode the order you mean.
    """
    pytrec_eval = _pytrec_eval()
    metrics = metrics or default_metrics()
    judged = {qid: dict(docs) for qid, docs in qrels.items()}
    evaluator = pytrec_eval.RelevanceEvaluator(judged, {m.measure for m in metrics})
    scored = {qid: {d: float(s) for d, s in docs.items()} for qid, docs in run.items()}
    raw = evaluator.evaluate(scored)
    per_query: dict[str, dict[str, float]] = {}
    for qid in run:
        if qid in raw:
            per_query[qid] = {m.label: float(raw[qid][m.key]) for m in metrics}
    unjudged = [qid for qid in run if qid not in judged]
    mean = {
        m.label: (
            sum(v[m.label] for v in per_query.values()) / len(per_query)
            if per_query
            else float("nan")
        )
        for m in metrics
    }
    return Evaluation(metrics=metrics, per_query=per_query, mean=mean, unjudged=unjudged)
