"""Interactive budgets against the loopback fake server with controlled delays: a deadline,
results as they arrive, the early exit and many queries under one bound.

The fake answers P(true) ~0.95 for a passage holding every query word (``REL``) and
~0.05 for one holding none (``IRR``); ``delay_for`` sets each passage's time.
"""

from __future__ import annotations

import asyncio
import pickle
import time

import httpx
import openai
import pytest

from rank1_integrations import DeadlineExceeded, JudgmentError, JudgmentState, Rank1Client
from rank1_integrations._retry import with_retries
from rank1_integrations.testing import FakeRank1Server

QUERY = "tidal moon gravity"


def rel(n: int) -> str:
    return f"Tidal forces come from the moon and its gravity ({n})."


def irr(n: int) -> str:
    return f"Cats sleep a lot ({n})."


def slow(n: int) -> str:
    return f"Slow cats nap all day ({n})."


def delays(table: dict[str, float], default: float = 0.05):  # type: ignore[no-untyped-def]
    return lambda passage: table.get(passage, default)


def wait_for(predicate, timeout: float = 3.0) -> bool:  # type: ignore[no-untyped-def]
    """Poll until ``predicate()`` (the server notices a closed connection on its own time)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


# ---------------------------------------------------------------------- deadline


def test_deadline_returns_what_was_judged_and_closes_the_rest() -> None:
    passages = [rel(0), slow(1), irr(2), slow(3), rel(4)]
    with FakeRank1Server(delay_for=delays({slow(1): 10.0, slow(3): 10.0})) as server:
        with Rank1Client(server.base_url, concurrency=8, cache=None) as client:
            started = time.monotonic()
            judgments = client.judge_all(QUERY, passages, deadline=1.0)
            elapsed = time.monotonic() - started
        assert 1.0 <= elapsed < 2.5  # close to the deadline, far from the 10 s of work
        assert [j.index for j in judgments] == [0, 1, 2, 3, 4]  # input positions
        judged = {j.index for j in judgments if j.score is not None}
        assert judged == {0, 2, 4}  # exactly those done by then
        for j in (judgments[1], judgments[3]):
            assert j.score is None and j.relevant is None
            assert j.error is not None and "deadline of 1 s passed" in j.error
        # the cancelled requests closed their connections: the server saw it and freed
        # the slots long before their 10 s
        assert wait_for(lambda: server.disconnects == 2)
        gone = [r for r in server.log if r.disconnected]
        assert sorted(r.passage for r in gone) == sorted([slow(1), slow(3)])
        assert all(r.ended is not None and r.ended - r.started < 3.0 for r in gone)


def test_deadline_raise_carries_the_fallback() -> None:
    passages = [rel(0), slow(1)]
    with FakeRank1Server(delay_for=delays({slow(1): 10.0})) as server:
        with Rank1Client(server.base_url, cache=None) as client:
            started = time.monotonic()
            with pytest.raises(DeadlineExceeded) as caught:
                client.rerank(QUERY, passages, deadline=0.5, on_deadline="raise")
            assert time.monotonic() - started < 1.5
    exc = caught.value
    assert isinstance(exc, TimeoutError) and exc.deadline == 0.5
    assert [j.score is not None for j in exc.judgments] == [True, False]
    assert pickle.loads(pickle.dumps(exc)).deadline == 0.5


def test_unjudged_passages_are_kept_whatever_on_error() -> None:
    with FakeRank1Server(delay_for=delays({slow(1): 10.0})) as server:
        with Rank1Client(server.base_url, cache=None) as client:
            for policy in ("raise", "drop", "keep"):
                judgments = client.rerank(QUERY, [rel(0), slow(1)], deadline=0.5, on_error=policy)
                assert [j.index for j in judgments] == [0, 1]
                assert judgments[1].error and "deadline" in judgments[1].error
                assert judgments[1].state is JudgmentState.DEADLINE and not judgments[1].ok


@pytest.mark.parametrize(
    ("kwargs", "culprit"),
    [({"deadline": 0}, "deadline"), ({"deadline": float("nan")}, "deadline"),
     ({"stop_after_relevant": 0}, "stop_after_relevant"),
     ({"relevant_threshold": 1.5}, "relevant_threshold"), ({"on_deadline": "wait"}, "on_deadline")],
)
def test_bad_budget_options_are_named(kwargs: dict, culprit: str) -> None:
    client = Rank1Client("http://127.0.0.1:9/v1")
    with pytest.raises(ValueError, match=culprit):
        client.rerank(QUERY, ["x"], **kwargs)


def test_retry_never_sleeps_past_the_deadline() -> None:
    request = httpx.Request("POST", "http://rank1.test/v1/completions")
    response = httpx.Response(429, headers={"Retry-After": "30"}, request=request)
    calls = []

    async def step() -> None:
        calls.append(time.monotonic())
        raise openai.RateLimitError("slow down", response=response, body=None)

    async def main() -> float:
        started = time.monotonic()
        with pytest.raises(openai.RateLimitError):
            await with_retries(step, 5, deadline=started + 1.0)
        return time.monotonic() - started

    assert asyncio.run(main()) < 0.5  # gave up at once instead of waiting 30 s
    assert len(calls) == 1


def test_retries_that_fit_before_the_deadline_are_made() -> None:
    request = httpx.Request("POST", "http://rank1.test/v1/completions")
    response = httpx.Response(429, headers={"Retry-After": "0.05"}, request=request)
    calls = []

    async def step() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise openai.RateLimitError("slow down", response=response, body=None)
        return "ok"

    assert asyncio.run(with_retries(step, 5, deadline=time.monotonic() + 5.0)) == "ok"
    assert len(calls) == 3


# ---------------------------------------------------------------------- as they arrive


def test_arerank_iter_yields_in_completion_order() -> None:
    passages = [irr(0), rel(1), irr(2)]
    table = {irr(0): 0.6, rel(1): 0.05, irr(2): 0.3}

    async def main(client: Rank1Client) -> list[int]:
        return [j.index async for j in client.arerank_iter(QUERY, passages)]

    with FakeRank1Server(delay_for=delays(table)) as server:
        client = Rank1Client(server.base_url, cache=None)
        assert asyncio.run(main(client)) == [1, 2, 0]


def test_arerank_iter_error_policy() -> None:
    bad = "\ud800 lone surrogate"  # fails alone, before any request

    async def collect(client: Rank1Client, policy: str) -> list:
        return [j async for j in client.arerank_iter(QUERY, [rel(0), bad], on_error=policy)]

    with FakeRank1Server() as server:
        client = Rank1Client(server.base_url, cache=None)
        with pytest.raises(JudgmentError) as caught:
            asyncio.run(collect(client, "raise"))
        assert caught.value.index == 1
        kept = asyncio.run(collect(client, "keep"))
        assert sorted(j.index for j in kept) == [0, 1]
        assert next(j for j in kept if j.index == 1).error
        assert [j.index for j in asyncio.run(collect(client, "drop"))] == [0]


def test_leaving_arerank_iter_early_cancels_the_rest() -> None:
    passages = [rel(0), slow(1), slow(2)]

    async def main(client: Rank1Client) -> int:
        async with __import__("contextlib").aclosing(
            client.arerank_iter(QUERY, passages)
        ) as judgments:
            async for judgment in judgments:
                return judgment.index
        return -1

    with FakeRank1Server(delay_for=delays({slow(1): 10.0, slow(2): 10.0})) as server:
        client = Rank1Client(server.base_url, cache=None)
        started = time.monotonic()
        assert asyncio.run(main(client)) == 0
        assert time.monotonic() - started < 2.0
        assert wait_for(lambda: server.disconnects == 2)


# ---------------------------------------------------------------------- early exit


def test_early_exit_starts_nothing_after_the_nth_relevant() -> None:
    # concurrency 3: p0, p1, p2 start at once; p0 (relevant) ends at 0.2 and p3 starts;
    # p2 (relevant, the 2nd) ends at 0.6: p1 and p3 are cancelled, nothing else starts.
    passages = [rel(0), irr(1), rel(2), irr(3), rel(4), rel(5), irr(6)]
    table = {rel(0): 0.2, irr(1): 3.0, rel(2): 0.6, irr(3): 3.0}
    with FakeRank1Server(delay_for=delays(table)) as server:
        with Rank1Client(server.base_url, concurrency=3, cache=None) as client:
            judgments = client.judge_all(QUERY, passages, stop_after_relevant=2)
        log = server.log
        nth = next(r for r in log if r.passage == rel(2))
        assert nth.ended is not None
        assert all(r.started < nth.ended for r in log)  # none started after it
        assert sorted(r.passage for r in log) == sorted([rel(0), irr(1), rel(2), irr(3)])
        assert wait_for(lambda: server.disconnects == 2)
    assert [j.index for j in judgments] == list(range(7))
    assert [j.index for j in judgments if j.score is not None] == [0, 2]
    for j in judgments[3:]:
        assert j.score is None and j.error and "stopped early after 2 relevant" in j.error
    assert judgments[1].error and "stopped early" in judgments[1].error


def test_early_exit_uses_the_threshold_in_force() -> None:
    passages = [rel(0), irr(1), irr(2), rel(3)]
    with FakeRank1Server() as server:
        with Rank1Client(server.base_url, concurrency=1, cache=None) as client:
            # every score is >= 0.0: stop after the first judgment of any kind
            out = client.rerank(QUERY, passages, stop_after_relevant=1, relevant_threshold=0.0)
            assert [j.score is not None for j in out] == [True, False, False, False]
            # no passage reaches 0.99: all are judged
            out = client.rerank(QUERY, passages, stop_after_relevant=1, relevant_threshold=0.99)
            assert all(j.score is not None for j in out)


# ---------------------------------------------------------------------- many queries


def test_rerank_many_order_and_policy() -> None:
    requests = [(QUERY, [irr(0), rel(1)]), ("cats sleep", [irr(2), rel(3), irr(4)]), (QUERY, [])]
    with FakeRank1Server() as server:
        with Rank1Client(server.base_url, cache=None) as client:
            out = client.judge_many(requests)
            single = [client.judge_all(q, p) if p else [] for q, p in requests]
    assert [[j.index for j in js] for js in out] == [[0, 1], [0, 1, 2], []]
    assert [[j.score for j in js] for js in out] == [[j.score for j in js] for js in single]


def test_rerank_many_shares_one_bound_across_queries() -> None:
    # 4 queries x 3 passages at 0.5 s each, concurrency 4: one rerank per query needs
    # 4 rounds; shared, the 12 go 4 at a time in 3 rounds, and never more than 4 at once.
    requests = [(QUERY, [rel(q * 10 + i) for i in range(3)]) for q in range(4)]
    with FakeRank1Server(delay=0.5) as server:
        with Rank1Client(server.base_url, concurrency=4, cache=None) as client:
            started = time.monotonic()
            out = client.rerank_many(requests)
            elapsed = time.monotonic() - started
        log = server.log
    assert all(j.ok for js in out for j in js)
    assert elapsed < 1.9  # 3 rounds of 0.5 s (4 rounds would be 2 s)
    events = sorted([(r.started, 1) for r in log] + [(r.ended, -1) for r in log])
    peak = now = 0
    for _, step in events:
        now += step
        peak = max(peak, now)
    assert peak <= 4
    # the next query started while the previous one's last passage was still reasoning
    first_of_q1 = next(r for r in log if r.passage == rel(10))
    last_of_q0 = next(r for r in log if r.passage == rel(2))
    assert first_of_q1.started < last_of_q0.ended


def test_rerank_many_stop_after_relevant_is_per_query() -> None:
    requests = [(QUERY, [rel(0), rel(1), rel(2)]), (QUERY, [irr(3), rel(4), rel(5)])]
    with FakeRank1Server() as server:
        with Rank1Client(server.base_url, concurrency=1, cache=None) as client:
            out = client.rerank_many(requests, stop_after_relevant=1)
    assert [[j.score is not None for j in js] for js in out] == [
        [True, False, False], [True, True, False]
    ]


def test_rerank_many_raise_policy_and_bad_input() -> None:
    with FakeRank1Server() as server:
        with Rank1Client(server.base_url, cache=None) as client:
            with pytest.raises(JudgmentError):
                client.rerank_many([(QUERY, [rel(0)]), (QUERY, ["\ud800"])])
            with pytest.raises(TypeError, match="request 1"):
                client.rerank_many([(QUERY, [rel(0)]), QUERY])  # type: ignore[list-item]
            with pytest.raises(ValueError, match="query must not be empty"):
                client.rerank_many([(QUERY, [rel(0)]), ("  ", [rel(1)])])
        assert server.requests <= 1  # the bad inputs raised before anything was sent


def test_rerank_and_rerank_many_return_best_first() -> None:
    """``rerank`` / ``rerank_many``: best first, unscored last in input order; the
    ``judge_*`` twins: the same judgments in input order."""
    requests = [(QUERY, [irr(0), rel(1), irr(2), rel(3)]), (QUERY, ["\ud800", rel(4)])]
    with FakeRank1Server() as server:
        with Rank1Client(server.base_url, cache=None, on_error="keep") as client:
            ranked = client.rerank_many(requests)
            in_order = client.judge_many(requests)
            single = client.rerank(*requests[0])
    assert [[j.index for j in js] for js in in_order] == [[0, 1, 2, 3], [0, 1]]
    def same(js):  # the first call's first judgment also counts the server's probes
        return [j.model_copy(update={"requests": 0}) for j in js]

    for best_first, judged in zip(ranked, in_order, strict=True):
        assert same(sorted(best_first, key=lambda j: j.index)) == same(judged)
        scores = [j.score for j in best_first if j.score is not None]
        assert scores == sorted(scores, reverse=True)
    assert [j.index for j in ranked[0]][:2] == [1, 3]  # the relevant ones first
    assert [(j.index, j.state.value) for j in ranked[1]] == [(1, "judged"), (0, "failed")]
    assert [j.index for j in single] == [j.index for j in ranked[0]]
