"""Hosted endpoints: ``max_requests_per_minute`` / ``max_tokens_per_minute`` make requests
wait for budget instead of drawing 429s (against the loopback fake server made to refuse
what goes over a budget, with the window shortened from 60 s); the per-call
``max_reasoning_tokens``; pickling a client."""

from __future__ import annotations

import asyncio
import pickle
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from rank1_integrations import Rank1Client, _rate_limit
from rank1_integrations._rate_limit import minute_budget
from rank1_integrations.testing import FakeRank1Server
from rank1_integrations.transports.sdk import token_estimate

WINDOW = 0.6  # seconds standing in for the minute
QUERY = "what makes ocean tides rise"
SECRET_KEY = "sk-very-secret-key"
PASSAGES = [f"Ocean tides rise, note {i}." for i in range(6)]


class Budgeted:
    """Makes ``server`` answer 429 to a completion that goes over ``limit`` per
    ``WINDOW`` (sliding), counting each request as ``cost(body)``; records arrivals."""

    def __init__(self, server: FakeRank1Server, limit: float,
                 cost: Callable[[dict[str, Any]], float]) -> None:
        self.limit, self.cost = limit, cost
        self.arrivals: deque[tuple[float, float]] = deque()
        self.refused = 0
        self._lock = threading.Lock()
        inner = server._server.completion

        def completion(body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
            now, cost_now = time.monotonic(), self.cost(body)
            with self._lock:
                recent = sum(c for t, c in self.arrivals if now - t < WINDOW)
                if recent + cost_now > self.limit:
                    self.refused += 1
                    return 429, {"error": {"message": "rate limit", "type": "rate_limit"}}
                self.arrivals.append((now, cost_now))
            return inner(body)

        server._server.completion = completion  # type: ignore[method-assign]


@pytest.fixture
def server() -> Iterator[FakeRank1Server]:
    with FakeRank1Server() as fake:
        yield fake


@pytest.fixture(autouse=True)
def short_window(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_rate_limit, "BUDGET_WINDOW", WINDOW)


def _client(server: FakeRank1Server, **options: Any) -> Rank1Client:
    return Rank1Client(base_url=server.base_url, model="fake-rank1", cache=None,
                       max_retries=0, on_error="keep", max_reasoning_tokens=64, **options)


def test_without_a_budget_the_fake_refuses_the_excess(server: FakeRank1Server) -> None:
    """The control: all at once, the budgeted fake answers some with 429 (so the test
    below would fail without the limiter)."""
    fake = Budgeted(server, 3, lambda body: 1)
    with _client(server) as client:
        judgments = client.rerank(QUERY, PASSAGES)
    assert fake.refused > 0
    assert any(j.error is not None and "429" in j.error for j in judgments)


@pytest.mark.slow
def test_requests_wait_for_the_request_budget(server: FakeRank1Server) -> None:
    fake = Budgeted(server, 3, lambda body: 1)
    with _client(server, max_requests_per_minute=3) as client:
        start = time.monotonic()
        judgments = client.rerank(QUERY, PASSAGES)
        elapsed = time.monotonic() - start
    assert fake.refused == 0
    assert [j.error for j in judgments] == [None] * len(PASSAGES)
    assert all(j.score is not None for j in judgments)
    # one request at a time, 2 per window drained after the first: they waited
    assert elapsed >= (len(PASSAGES) - 1) * WINDOW / 2 * 0.9


def test_requests_wait_for_the_token_budget(server: FakeRank1Server) -> None:
    body = {"model": "fake-rank1", "prompt": "x" * 900, "max_tokens": 64}
    budget = 3 * token_estimate(body)  # about three judgments per window
    fake = Budgeted(server, budget, token_estimate)
    with _client(server, max_tokens_per_minute=budget) as client:
        judgments = client.rerank(QUERY, PASSAGES)
    assert fake.refused == 0
    assert all(j.score is not None for j in judgments), [j.error for j in judgments]


def test_a_request_over_the_token_burst_fails_alone_and_says_why(
    server: FakeRank1Server,
) -> None:
    long = "Ocean tides rise. " * 200  # ~3,600 bytes: over half of 4,000
    with _client(server, max_tokens_per_minute=4000) as client:
        short, too_long = client.rerank(QUERY, ["Ocean tides rise.", long])
    assert short.score is not None
    assert too_long.score is None and "max_tokens_per_minute=4000" in (too_long.error or "")


def test_token_estimate_bounds_the_prompt_and_the_generation() -> None:
    prompt = "é" * 10  # 20 UTF-8 bytes, at most 20 tokens
    assert token_estimate({"prompt": prompt, "max_tokens": 7}) >= 20 + 7
    rerank = {"query": "q", "documents": ["a", "b"], "max_reasoning_tokens": 5}
    assert token_estimate(rerank) >= 2 * (5 + 1)


async def test_minute_budget_never_lets_more_than_the_budget_through_a_window() -> None:
    """Any window holds at most the budget (a bucket as big as the budget would let
    twice through in the window after a burst), and it keeps the rate close to it."""
    window, budget = 0.2, 5
    best = 0.0
    for _ in range(3):  # the rate's floor: the best of 3 runs (a loaded box only slows one)
        limiter = minute_budget(budget, 1, window=window)
        times = []
        for _ in range(16):
            await limiter.acquire(1)
            times.append(asyncio.get_running_loop().time())
        for i, t in enumerate(times):  # the ceiling holds in every run
            assert sum(1 for u in times[i:] if u - t < window * 0.98) <= budget
        best = max(best, (len(times) - 1) / (times[-1] - times[0]))
    assert best >= 0.9 * (budget - 1) / window  # (budget - burst) per window


async def test_budgets_are_per_event_loop(server: FakeRank1Server) -> None:
    client = _client(server, max_requests_per_minute=100)
    await client.arerank(QUERY, PASSAGES[:1])
    here = client._session._state().budgets
    assert here is not None
    assert here.requests_budget is not None and here.tokens_budget is None
    assert here.requests_budget.max_rate == 1
    await client.aclose()


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_bad_budgets_are_refused(bad: object) -> None:
    with pytest.raises(ValueError, match="max_requests_per_minute"):
        Rank1Client(max_requests_per_minute=bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_tokens_per_minute"):
        Rank1Client(max_tokens_per_minute=bad)  # type: ignore[arg-type]


def test_settings_hold_the_budgets() -> None:
    client = Rank1Client(max_requests_per_minute=60, max_tokens_per_minute=90_000)
    assert client.settings.max_requests_per_minute == 60
    assert client.settings.max_tokens_per_minute == 90_000


# ---------------------------------------------------------------- per-call budget


def test_per_call_max_reasoning_tokens_reaches_the_request_and_the_cache_key(
    server: FakeRank1Server,
) -> None:
    with Rank1Client(base_url=server.base_url, model="fake-rank1") as client:
        full = client.rerank(QUERY, PASSAGES[:1])[0]
        before = server.requests
        cut = client.rerank(QUERY, PASSAGES[:1], max_reasoning_tokens=3)[0]
        assert server.requests > before  # not the cached judgment of the full budget
        assert cut.reasoning_tokens is not None and cut.reasoning_tokens <= 3
        assert full.reasoning_tokens is not None and full.reasoning_tokens > 3
        one = client.judge(QUERY, PASSAGES[0], max_reasoning_tokens=3)
        assert one.reasoning == cut.reasoning  # the same call: the cache's
        with pytest.raises(ValueError, match="max_reasoning_tokens"):
            client.rerank(QUERY, PASSAGES[:1], max_reasoning_tokens=0)


# ---------------------------------------------------------------- pickling


def test_client_pickles_after_use_without_its_key(
    server: FakeRank1Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RANK1_API_KEY", raising=False)
    client = Rank1Client(base_url=server.base_url, model="fake-rank1",
                         api_key="sk-very-secret-key", max_requests_per_minute=600)
    first = client.rerank(QUERY, PASSAGES[:2])
    data = pickle.dumps(client)
    assert b"sk-very-secret-key" not in data
    monkeypatch.setenv("RANK1_API_KEY", "sk-from-env")
    copy = pickle.loads(data)
    try:
        assert copy.api_key == "sk-from-env"
        assert copy.max_requests_per_minute == 600 and copy.base_url == client.base_url
        assert [j.score for j in copy.rerank(QUERY, PASSAGES[:2])] == [j.score for j in first]
    finally:
        copy.close()
        client.close()


def test_client_on_an_injected_http_client_does_not_pickle() -> None:
    http = httpx.Client()
    try:
        with pytest.raises(TypeError, match="injected HTTP client"):
            pickle.dumps(Rank1Client(client=http))
    finally:
        http.close()


def test_a_copied_client_keeps_its_key_and_works(server: FakeRank1Server) -> None:
    import copy

    client = Rank1Client(base_url=server.base_url, model="fake-rank1", api_key=SECRET_KEY)
    client.rerank(QUERY, PASSAGES[:1])
    for twin in (copy.deepcopy(client), copy.copy(client)):
        assert twin.api_key == SECRET_KEY and twin._session is not client._session
        assert twin.rerank(QUERY, PASSAGES[:1])[0].score is not None
        twin.close()
    client.close()
