"""Metrics through pytrec_eval, checked against values computed by hand."""

from __future__ import annotations

import math

import pytest

from rank1_integrations.evaluation.metrics import default_metrics, evaluate

QRELS = {"q1": {"d1": 2, "d2": 1, "d3": 0}, "q2": {"d5": 1}, "q9": {"d1": 1}}
RUN = {
    # ranked: d3 (grade 0), d1 (2), d4 (unjudged), d2 (1)
    "q1": {"d3": 3.0, "d1": 2.0, "d4": 1.0, "d2": 0.5},
    # no relevant document retrieved
    "q2": {"d6": 2.0, "d7": 1.0},
    # no judgments at all: not evaluated
    "q3": {"d1": 1.0},
}


def test_values_match_hand_computation() -> None:
    ev = evaluate(QRELS, RUN)
    # trec_eval's nDCG: gain = grade, discount log2(rank + 1); ideal from all judged grades.
    dcg = 0 / math.log2(2) + 2 / math.log2(3) + 0 / math.log2(4) + 1 / math.log2(5)
    idcg = 2 / math.log2(2) + 1 / math.log2(3)
    q1 = ev.per_query["q1"]
    assert q1["nDCG@10"] == pytest.approx(dcg / idcg, abs=1e-12)
    # binary measures: grade >= 1 relevant; relevant at ranks 2 and 4
    assert q1["MAP"] == pytest.approx((1 / 2 + 2 / 4) / 2)
    assert q1["Recall@100"] == pytest.approx(1.0)
    assert q1["MRR"] == pytest.approx(1 / 2)
    assert ev.per_query["q2"] == {"nDCG@10": 0.0, "MAP": 0.0, "Recall@100": 0.0, "MRR": 0.0}
    # means over the evaluated queries (q1, q2); q3 has no judgments, q9 no run
    assert list(ev.per_query) == ["q1", "q2"]
    assert ev.unjudged == ["q3"]
    assert ev.mean["nDCG@10"] == pytest.approx(dcg / idcg / 2)
    assert ev.mean["MRR"] == pytest.approx(0.25)
    assert all(type(v) is float for row in ev.per_query.values() for v in row.values())


def test_cutoffs_are_configurable() -> None:
    metrics = default_metrics(ndcg_k=1, recall_k=2)
    assert [m.label for m in metrics] == ["nDCG@1", "MAP", "Recall@2", "MRR"]
    ev = evaluate(QRELS, RUN, metrics)
    assert ev.per_query["q1"]["nDCG@1"] == 0.0  # the top document has grade 0
    assert ev.per_query["q1"]["Recall@2"] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="ndcg_k"):
        default_metrics(ndcg_k=0)


def test_ties_are_broken_like_trec_eval() -> None:
    # equal scores: trec_eval ranks by document id descending, so "b" comes first
    ev = evaluate({"q": {"a": 1}}, {"q": {"a": 1.0, "b": 1.0}})
    assert ev.per_query["q"]["MRR"] == pytest.approx(0.5)


def test_no_evaluated_query_gives_nan_means() -> None:
    ev = evaluate({"q1": {"d1": 1}}, {"other": {"d1": 1.0}})
    assert ev.per_query == {}
    assert all(math.isnan(v) for v in ev.mean.values())
