"""``Rank1Client(mode="rerank")`` on rank1-server's streamed ``/v1/rerank``: one request
per call, each verdict handed on as its ``result`` event arrives (``arerank_iter``, the
rerankers' per-verdict callbacks), the same judgments as the whole JSON answer, and an
iterator left early freeing the server's slots.

Servers: rank1-server on the shipped demo model (``start_server``; its chains end on an
answer) and on a generated slow model (random weights, a few ms per token, one slot) so
that each document's verdict lands well after the previous one. What the server did is
read from its ``/metrics``; what the client received from a tee on its HTTP transport.
Against other servers nothing changes: one request per document, pinned by
``test_servers.test_demo_model_one_request_per_judgment``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.documents import Document
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.instrumentation.event_handlers import BaseEventHandler
from llama_index.core.instrumentation.events import BaseEvent
from llama_index.core.schema import NodeWithScore, TextNode
from prometheus_client.parser import text_string_to_metric_families
from rank1_server.models import write_random_model
from rank1_server.testing import running_server

from rank1_integrations import Judgment, Rank1Client
from rank1_integrations.langchain import Rank1Rerank as LangChainRerank
from rank1_integrations.llama_index import Rank1JudgmentEvent
from rank1_integrations.llama_index import Rank1Rerank as LlamaIndexRerank

from .conftest import MODEL_NAME
from .test_servers import QUERY, _corpus

#: The slow server's reasoning budget: random weights never close a chain, so every
#: document reasons this long, then takes the forced answer.
SLOW_BUDGET = 120
SLOW_DOCS = ["the moon pulls the sea", "tides rise twice a day", "bananas are yellow"]


def metric(root: str, name: str, **labels: str) -> float:
    """Sample ``name`` (with ``labels``) of rank1-server's ``/metrics`` (0 if absent)."""
    text = httpx.get(f"{root}/metrics", timeout=10).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return 0.0


def rerank_requests(root: str) -> float:
    return metric(root, "rank1_requests_total", endpoint="/v1/rerank", status="200")


def verdicts(root: str) -> float:
    """Judgments the server has made so far (one ``rank1_judgment_seconds`` each)."""
    return metric(root, "rank1_judgment_seconds_count")


async def wait_for(root: str, name: str, want: float, timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while (value := metric(root, name)) != want:
        assert loop.time() < end, f"{name} is {value}, never {want}"
        await asyncio.sleep(0.05)


class Tee(httpx.AsyncBaseTransport):
    """A real HTTP transport that keeps a copy of each ``/rerank`` response body as the
    client reads it (``body``): what the client had received at any moment."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.body = bytearray()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        if not request.url.path.endswith("/rerank"):
            return response
        tee, inner = self, response.stream
        assert isinstance(inner, httpx.AsyncByteStream)

        class Copy(httpx.AsyncByteStream):
            async def __aiter__(self) -> AsyncIterator[bytes]:
                async for chunk in inner:
                    tee.body += chunk
                    yield chunk

            async def aclose(self) -> None:
                await inner.aclose()

        return httpx.Response(response.status_code, headers=response.headers, stream=Copy(),
                              extensions=response.extensions)

    def events(self) -> list[dict[str, Any]]:
        """The SSE events received so far (their data)."""
        return [json.loads(line[5:]) for line in self.body.decode().splitlines()
                if line.startswith("data:")]

    def result_order(self) -> list[int]:
        return [e["result"]["index"] for e in self.events() if e["type"] == "result"]

    async def aclose(self) -> None:
        await self.inner.aclose()


@contextlib.asynccontextmanager
async def teed_client(base_url: str, budget: int, **kwargs: Any) -> AsyncIterator[
        tuple[Rank1Client, Tee]]:
    tee = Tee()
    async with httpx.AsyncClient(transport=tee, timeout=120) as http:
        client = Rank1Client(base_url, model=MODEL_NAME, mode="rerank",
                             max_reasoning_tokens=budget, cache=None, client=http, **kwargs)
        yield client, tee


@pytest.fixture(scope="module")
def slow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    path = write_random_model(tmp_path_factory.mktemp("slow") / "random-slow.gguf",
                              n_layer=4, n_embd=256)
    with running_server(path, parallel=1, n_ctx=2048, max_reasoning_tokens=SLOW_BUDGET,
                        model_name=MODEL_NAME) as url:
        yield url


def _passages() -> list[str]:
    corpus = _corpus()
    return [corpus[i] for i in ["bees-2", "volcano-1", "bees-1", "chess-1", "bees-3"]
            if i in corpus] or list(corpus.values())[:5]


def _same(streamed: list[Judgment], plain: list[Judgment]) -> None:
    """The same judgments: every field but ``requests`` (where the one request is
    counted), the score to float noise (the second request reuses the first's cached
    prompt cells, so llama.cpp's batch shapes differ)."""
    assert [j.index for j in streamed] == [j.index for j in plain]
    for s, p in zip(streamed, plain, strict=True):
        assert s.model_dump(exclude={"score", "requests"}) == p.model_dump(
            exclude={"score", "requests"})
        assert s.score == pytest.approx(p.score, abs=1e-6)
    assert sum(j.requests for j in streamed) == sum(j.requests for j in plain) == 1


async def test_arerank_iter_one_request_in_stream_order_equal_to_the_whole_answer(
    start_server,
) -> None:
    server = start_server("rank1-server", "demo")
    root = server.base_url.removesuffix("/v1")
    passages = _passages()
    before = rerank_requests(root)
    async with teed_client(server.base_url, server.budget, concurrency=2) as (client, tee):
        got = [j async for j in client.arerank_iter(QUERY, passages)]
        assert rerank_requests(root) - before == 1  # one request for the whole call
        # yielded in the order the stream delivered the verdicts
        assert [j.index for j in got] == tee.result_order()
        assert sorted(j.index for j in got) == list(range(len(passages)))
        assert all(j.error is None for j in got)
        # the whole JSON answer to the same request
        client.transport.streams = False  # type: ignore[attr-defined]
        plain = await client.ajudge_all(QUERY, passages)
        assert rerank_requests(root) - before == 2
    _same(sorted(got, key=lambda j: j.index), plain)
    assert {j.source.value for j in plain if j.source} == {"answer_logprobs"}


async def test_arerank_iter_yields_each_verdict_before_the_stream_ends(slow_server: str) -> None:
    root = slow_server.removesuffix("/v1")
    start = verdicts(root)
    async with teed_client(slow_server, SLOW_BUDGET) as (client, tee):
        seen: list[tuple[int, int, bool]] = []  # (index, server verdicts, stream ended)
        async for j in client.arerank_iter(QUERY, SLOW_DOCS):
            ended = any(e["type"] == "done" for e in tee.events())
            seen.append((j.index, int(verdicts(root) - start), ended))
    assert [s[0] for s in seen] == [0, 1, 2]  # one slot: input order is completion order
    # the first verdict came while the server was still judging the others
    assert seen[0][1] < len(SLOW_DOCS) and not seen[0][2]


async def test_leaving_arerank_iter_early_frees_the_slots(slow_server: str) -> None:
    root = slow_server.removesuffix("/v1")
    cancelled = metric(root, "rank1_cancelled_requests_total")
    start = verdicts(root)
    docs = SLOW_DOCS * 2
    async with teed_client(slow_server, SLOW_BUDGET) as (client, _):
        async with contextlib.aclosing(client.arerank_iter(QUERY, docs)) as judgments:
            async for first in judgments:
                assert first.index == 0
                break  # the next documents are reasoning or queued
        await wait_for(root, "rank1_busy_slots", 0, timeout=5.0)
        await wait_for(root, "rank1_queue_depth", 0, timeout=5.0)
        assert metric(root, "rank1_cancelled_requests_total") > cancelled
        await asyncio.sleep(1.0)  # nothing more is judged for the closed stream
        assert verdicts(root) - start < len(docs)
        assert metric(root, "rank1_busy_slots") == 0


# ---------------------------------------------------------------- the rerankers' callbacks


class Texts(BaseCallbackHandler):
    """LangChain's per-verdict text lines, with the server's verdicts at each."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.lines: list[tuple[str, float]] = []

    def on_text(self, text: str, **kwargs: Any) -> None:
        self.lines.append((text, verdicts(self.root)))


@pytest.mark.parametrize("use_async", [False, True])
async def test_langchain_callback_lines_arrive_as_the_stream_delivers(
    slow_server: str, use_async: bool
) -> None:
    root = slow_server.removesuffix("/v1")
    client = Rank1Client(slow_server, model=MODEL_NAME, mode="rerank",
                         max_reasoning_tokens=SLOW_BUDGET, cache=None)
    reranker = LangChainRerank(client=client, top_n=3)
    recorder = Texts(root)
    docs = [Document(page_content=t) for t in SLOW_DOCS]
    start = verdicts(root)
    try:
        if use_async:
            out = await reranker.acompress_documents(docs, QUERY, callbacks=[recorder])
        else:
            out = await asyncio.to_thread(
                reranker.compress_documents, docs, QUERY, callbacks=[recorder])
    finally:
        await client.aclose()
        client.close()
    assert len(out) == 3 and len(recorder.lines) == 3
    # the first line came when the server had judged only the first document
    assert recorder.lines[0][1] - start < len(SLOW_DOCS)
    assert recorder.lines[-1][1] - start == len(SLOW_DOCS)


class Events(BaseEventHandler):
    root: str
    seen: list[tuple[BaseEvent, float]] = []

    @classmethod
    def class_name(cls) -> str:
        return "StreamEvents"

    def handle(self, event: BaseEvent, **kwargs: Any) -> None:
        if isinstance(event, Rank1JudgmentEvent):
            self.seen.append((event, verdicts(self.root)))


async def test_llama_index_verdict_events_arrive_as_the_stream_delivers(slow_server: str) -> None:
    root = slow_server.removesuffix("/v1")
    handler = Events(root=root, seen=[])
    dispatcher = get_dispatcher()
    dispatcher.add_event_handler(handler)
    client = Rank1Client(slow_server, model=MODEL_NAME, mode="rerank",
                         max_reasoning_tokens=SLOW_BUDGET, cache=None)
    start = verdicts(root)
    try:
        nodes = [NodeWithScore(node=TextNode(text=t, id_=f"n{i}"), score=0.0)
                 for i, t in enumerate(SLOW_DOCS)]
        out = await LlamaIndexRerank(client=client, top_n=3).apostprocess_nodes(
            nodes, query_str=QUERY)
    finally:
        dispatcher.event_handlers.remove(handler)
        await client.aclose()
    assert len(out) == 3 and len(handler.seen) == 3
    assert handler.seen[0][1] - start < len(SLOW_DOCS)
    assert handler.seen[-1][1] - start == len(SLOW_DOCS)


# ---------------------------------------------------------------- budgets and sync clients


async def test_stop_after_relevant_closes_the_stream(slow_server: str) -> None:
    """Every verdict counts as relevant (threshold 0): after the first, the stream is
    closed, the server cancels the rest, and they come back not judged."""
    root = slow_server.removesuffix("/v1")
    cancelled = metric(root, "rank1_cancelled_requests_total")
    before = rerank_requests(root)
    async with teed_client(slow_server, SLOW_BUDGET) as (client, _):
        got = await client.ajudge_all(QUERY, SLOW_DOCS * 2, stop_after_relevant=1,
                                      relevant_threshold=0.0)
    assert [j.state.value for j in got] == ["judged"] + ["stopped_early"] * 5
    assert rerank_requests(root) - before == 1
    await wait_for(root, "rank1_busy_slots", 0, timeout=5.0)
    assert metric(root, "rank1_cancelled_requests_total") > cancelled


async def test_a_deadline_keeps_the_verdicts_that_landed(slow_server: str) -> None:
    """Verdicts streamed before the deadline are kept (a whole answer would have lost
    them all); the rest come back not judged, and the server stops."""
    async with teed_client(slow_server, SLOW_BUDGET) as (client, _):
        got = await client.ajudge_all(QUERY, SLOW_DOCS * 4, deadline=1.5)
    states = [j.state.value for j in got]
    judged = states.count("judged")
    assert judged >= 1 and states == ["judged"] * judged + ["deadline"] * (len(got) - judged)
    assert all(j.score is not None for j in got[:judged])
    await wait_for(slow_server.removesuffix("/v1"), "rank1_busy_slots", 0, timeout=5.0)


def test_a_sync_injected_client_streams_too(start_server) -> None:
    """An injected ``httpx.Client`` (the SDK's sync client, its calls in worker threads):
    the same single streamed request and the same judgments."""
    server = start_server("rank1-server", "demo")
    root = server.base_url.removesuffix("/v1")
    passages = _passages()
    seen: list[int] = []
    kinds: list[str] = []

    def kind(response: httpx.Response) -> None:
        if response.url.path.endswith("/rerank"):
            kinds.append(response.headers["content-type"].split(";")[0])

    with httpx.Client(timeout=120, event_hooks={"response": [kind]}) as http:
        client = Rank1Client(server.base_url, model=MODEL_NAME, mode="rerank",
                             max_reasoning_tokens=server.budget, cache=None, client=http)
        before = rerank_requests(root)
        got = client.judge_all(QUERY, passages, on_judgment=lambda j: seen.append(j.index))
        assert rerank_requests(root) - before == 1
        client.transport.streams = False  # type: ignore[attr-defined]
        plain = client.judge_all(QUERY, passages)
        client.close()
    assert sorted(seen) == list(range(len(passages)))
    assert kinds == ["text/event-stream", "application/json"]
    _same(got, plain)


@pytest.mark.parametrize("concurrency", [1, 8])
def test_a_sync_injected_client_frees_the_slots_at_its_deadline(
    slow_server: str, concurrency: int
) -> None:
    """A sync injected client reads each event in a worker thread that blocks until the
    next one: past the deadline the stream is aborted from the event loop at once (not
    queued behind that thread, even with one worker), so the server frees its slot now."""
    root = slow_server.removesuffix("/v1")
    cancelled = metric(root, "rank1_cancelled_requests_total")
    with httpx.Client(timeout=120) as http:
        client = Rank1Client(slow_server, model=MODEL_NAME, mode="rerank",
                             max_reasoning_tokens=SLOW_BUDGET, cache=None, client=http,
                             concurrency=concurrency)
        got = client.judge_all(QUERY, SLOW_DOCS * 4, deadline=1.0)
        asyncio.run(wait_for(root, "rank1_busy_slots", 0, timeout=3.0))
        asyncio.run(wait_for(root, "rank1_queue_depth", 0, timeout=3.0))
        client.close()
    assert "deadline" in [j.state.value for j in got]
    assert metric(root, "rank1_cancelled_requests_total") > cancelled
