"""Concurrency is real and bounded: in-flight requests counted inside the mocked server."""

from __future__ import annotations

import asyncio
import threading
import time

import httpx
import openai
import pytest
import respx

from rank1_integrations import Rank1Client

from .rank1_payloads import BASE_URL, body_of, http_client, vllm_completion

URL = f"{BASE_URL}/completions"


class InFlight:
    """Counts requests being served at once (async and threaded side effects)."""

    def __init__(self, delay: float = 0.1) -> None:
        self.delay = delay
        self.now = 0
        self.peak = 0
        self.total = 0
        self.lock = threading.Lock()

    def _enter(self) -> None:
        with self.lock:
            self.now += 1
            self.total += 1
            self.peak = max(self.peak, self.now)

    def _leave(self) -> None:
        with self.lock:
            self.now -= 1

    async def async_answer(self, request: httpx.Request) -> httpx.Response:
        self._enter()
        try:
            await asyncio.sleep(self.delay)
        finally:
            self._leave()
        return httpx.Response(200, json=vllm_completion())

    def sync_answer(self, request: httpx.Request) -> httpx.Response:
        self._enter()
        try:
            time.sleep(self.delay)
        finally:
            self._leave()
        return httpx.Response(200, json=vllm_completion())


PASSAGES = [f"passage {i}" for i in range(24)]


@pytest.mark.parametrize("concurrency", [1, 4, 8])
@respx.mock
async def test_async_rerank_is_bounded_by_concurrency(
    respx_mock: respx.MockRouter, concurrency: int
) -> None:
    server = InFlight()
    respx_mock.post(URL).mock(side_effect=server.async_answer)
    client = Rank1Client(BASE_URL, concurrency=concurrency, cache=None,
                         client=http_client())
    passages = PASSAGES[: max(6, 3 * concurrency)]
    judgments = await client.arerank("q", passages)
    assert len(judgments) == len(passages) == server.total
    assert server.peak == concurrency


@respx.mock
async def test_concurrent_arerank_calls_share_the_bound(respx_mock: respx.MockRouter) -> None:
    server = InFlight()
    respx_mock.post(URL).mock(side_effect=server.async_answer)
    client = Rank1Client(BASE_URL, concurrency=3, cache=None, client=http_client())
    await asyncio.gather(*(client.arerank(f"q{i}", PASSAGES[:4]) for i in range(3)))
    assert server.total == 12
    assert server.peak == 3


@respx.mock
async def test_setting_concurrency_on_a_live_client_changes_the_bound(
    respx_mock: respx.MockRouter,
) -> None:
    """``client.concurrency = n`` is the setting (validated) and the bound of every loop
    the client already used: the semaphore, not only the worker count."""
    server = InFlight()
    respx_mock.post(URL).mock(side_effect=server.async_answer)
    client = Rank1Client(BASE_URL, concurrency=3, cache=None, client=http_client())
    await client.arerank("q", PASSAGES[:3])  # this loop's semaphore exists now
    for bound in (2, 5):
        client.concurrency = bound
        assert client.settings.concurrency == bound
        server.peak = 0
        await asyncio.gather(*(client.arerank(f"q{i}", PASSAGES[:4]) for i in range(3)))
        assert server.peak == bound
    with pytest.raises(ValueError, match="concurrency"):
        client.concurrency = 0
    assert client.concurrency == 5
    with pytest.raises(AttributeError, match="base_url is fixed"):
        client.base_url = "http://elsewhere.test/v1"  # type: ignore[misc]


@respx.mock
def test_sync_rerank_is_concurrent(respx_mock: respx.MockRouter) -> None:
    server = InFlight()
    respx_mock.post(URL).mock(side_effect=server.async_answer)
    with Rank1Client(BASE_URL, concurrency=6, cache=None, client=http_client()) as client:
        judgments = client.rerank("q", PASSAGES[:12])
    assert [j.index for j in judgments] == list(range(12))
    assert server.peak == 6


@pytest.mark.parametrize("concurrency", [4, 12])
@respx.mock
def test_injected_sync_openai_client_is_concurrent_up_to_the_bound(
    respx_mock: respx.MockRouter, concurrency: int
) -> None:
    """An injected synchronous openai.OpenAI runs in worker threads: still concurrent, and
    up to ``concurrency`` (not capped by asyncio's default pool of min(32, cpus + 4))."""
    server = InFlight()
    respx_mock.post(URL).mock(side_effect=server.sync_answer)
    sdk = openai.OpenAI(base_url=BASE_URL, api_key="x", max_retries=0,
                        http_client=httpx.Client(verify=False))
    with Rank1Client(concurrency=concurrency, cache=None, client=sdk) as client:
        judgments = client.rerank("q", PASSAGES[: 2 * concurrency])
    assert len(judgments) == 2 * concurrency
    assert server.peak == concurrency


@respx.mock
async def test_results_keep_input_order_when_replies_come_back_shuffled(
    respx_mock: respx.MockRouter,
) -> None:
    async def answer(request: httpx.Request) -> httpx.Response:
        prompt = body_of(request)["prompt"]
        n = int(prompt.split("\nPassage: passage ")[1].split("\n")[0])
        await asyncio.sleep(0.002 * ((n * 7) % 11))  # later passages often finish first
        top = {" true": -0.1 * (n + 1), " false": -1.0, "\n": -9.0}
        return httpx.Response(200, json=vllm_completion(answer_top=top))

    respx_mock.post(URL).mock(side_effect=answer)
    client = Rank1Client(BASE_URL, concurrency=8, cache=None, client=http_client())
    seen: list[int] = []
    judgments = await client.arerank("q", PASSAGES, on_judgment=lambda j: seen.append(j.index))
    assert [j.index for j in judgments] == list(range(len(PASSAGES)))
    scores = [j.score for j in judgments]
    assert scores == sorted(scores, reverse=True)  # passage n's score falls with n
    assert sorted(seen) == list(range(len(PASSAGES)))
    assert seen != list(range(len(PASSAGES)))  # completion order did differ


@respx.mock
def test_sync_judge_from_many_threads(respx_mock: respx.MockRouter) -> None:
    """Frameworks call the sync API from thread pools: one client, many threads."""
    from concurrent.futures import ThreadPoolExecutor

    server = InFlight()
    respx_mock.post(URL).mock(side_effect=server.async_answer)
    with Rank1Client(BASE_URL, concurrency=4, cache=None, client=http_client()) as client:
        with ThreadPoolExecutor(8) as pool:
            judgments = list(pool.map(lambda i: client.judge("q", f"p{i}"), range(8)))
    assert all(j.ok for j in judgments)
    assert server.total == 8
    assert server.peak == 4
