"""The reranking engine: order rules, input checks, failures, against the fake server."""

from __future__ import annotations

import pytest

from rank1_integrations import Rank1Client
from rank1_integrations.evaluation.io import read_corpus, read_queries, read_run
from rank1_integrations.evaluation.runner import (
    CountingCache,
    EvalInputError,
    final_order,
    plan_pairs,
    rerank_run,
)
from rank1_integrations.judgment import Judgment
from rank1_integrations.store import JudgmentStore
from rank1_integrations.transports import JudgeCall, Transport

DEPTH = 8  # as in conftest.py

def _ok(score: float) -> Judgment:
    return Judgment(relevant=score >= 0.5, score=score, source="answer_logprobs")


FAILED = Judgment(relevant=None, score=None, error="boom")


def test_final_order_rules() -> None:
    first = ["a", "b", "c", "d", "e", "f"]
    judged = {"a": _ok(0.2), "b": FAILED, "c": _ok(0.9), "d": _ok(0.2)}
    # judged by score (a and d tie: first-stage order), then failed, then beyond depth
    assert final_order(first, judged, depth=4) == ["c", "a", "d", "b", "e", "f"]
    # a missing judgment counts as failed, never as a score
    assert final_order(first, {"a": _ok(0.1)}, depth=3) == ["a", "b", "c", "d", "e", "f"]
    assert first == ["a", "b", "c", "d", "e", "f"]  # input untouched


def test_plan_pairs_checks_inputs(collection) -> None:
    assert collection.depth == DEPTH
    queries = read_queries(collection.queries)
    corpus = read_corpus(collection.corpus)
    run = read_run(collection.run)
    orders, pairs = plan_pairs(queries, corpus, run, DEPTH)
    assert len(pairs) == collection.pairs
    assert orders["q1"] == [d[0] for d in collection.first_stage["q1"]]
    del queries["q2"]
    with pytest.raises(EvalInputError, match="query of the run not in the queries file: 'q2'"):
        plan_pairs(queries, corpus, run, DEPTH)
    queries = read_queries(collection.queries)
    del corpus["d305"]
    with pytest.raises(EvalInputError, match=r"'d305 \(query q3\)'"):
        plan_pairs(queries, corpus, run, DEPTH)
    # a missing document beyond the depth is never needed
    corpus = read_corpus(collection.corpus)
    del corpus["d310"]
    plan_pairs(queries, corpus, run, DEPTH)


def test_rerank_against_fake_server(collection, fake_server, tmp_path) -> None:
    queries = read_queries(collection.queries)
    corpus = read_corpus(collection.corpus)
    run = read_run(collection.run)
    cache = CountingCache(JudgmentStore(tmp_path / "s.sqlite"))
    with Rank1Client(fake_server.base_url, cache=cache) as client:
        result = rerank_run(client, queries, corpus, run, depth=DEPTH, progress=False)
    assert result.rankings == collection.expected_ranking()
    assert result.failures == [] and not result.aborted
    assert result.pairs == collection.pairs == fake_server.requests == cache.puts
    assert result.sources() == {"answer_logprobs": collection.pairs}
    scores = result.run_scores()["q1"]
    assert list(scores.values()) == [float(10 - i) for i in range(10)]  # strictly decreasing
    assert all(len(v) == DEPTH for v in result.judgments.values())


class _FailingTransport(Transport):
    """The client's transport, failing for chosen passages (as after exhausted retries)."""

    def __init__(self, inner: Transport, bad_passages: set[str]) -> None:
        self.inner, self.bad = inner, bad_passages

    async def judge(self, call: JudgeCall) -> Judgment:
        if call.passage in self.bad:
            raise ConnectionError("refused")
        return await self.inner.judge(call)


def _failing_for(client: Rank1Client, bad_passages: set[str]) -> Rank1Client:
    client.transport = _FailingTransport(client.transport, bad_passages)
    return client


def test_failed_judgments_rank_after_judged_ones(collection, fake_server) -> None:
    queries = read_queries(collection.queries)
    corpus = read_corpus(collection.corpus)
    run = read_run(collection.run)
    bad = {corpus["d104"].text, corpus["d102"].text}  # q1's best and a middling one
    with Rank1Client(fake_server.base_url, cache=None) as client:
        result = rerank_run(
            _failing_for(client, bad), queries, corpus, run, depth=DEPTH, progress=False
        )
    expected = [d for d in collection.expected_ranking()["q1"][:DEPTH] if d not in ("d104", "d102")]
    expected += ["d102", "d104"]  # failed: first-stage order, below every judged document
    expected += ["d109", "d110"]  # beyond depth
    assert result.rankings["q1"] == expected
    assert {(f.qid, f.docid) for f in result.failures} == {("q1", "d104"), ("q1", "d102")}
    failed = result.judgments["q1"]["d104"]
    assert failed.score is None and failed.error and "refused" in failed.error
    assert result.sources()["failed"] == 2
    assert result.rankings["q2"] == collection.expected_ranking()["q2"]


def test_max_failures_aborts(collection, fake_server) -> None:
    queries = read_queries(collection.queries)
    corpus = read_corpus(collection.corpus)
    run = read_run(collection.run)
    bad = {doc.text for doc in corpus.values()}
    with Rank1Client(fake_server.base_url, cache=None) as client:
        result = rerank_run(
            _failing_for(client, bad), queries, corpus, run, depth=DEPTH, concurrency=1,
            max_failures=3, progress=False,
        )  # fmt: skip
    assert result.aborted
    assert len(result.failures) == 3
    assert result.pairs == 3  # nothing started after the third failure
