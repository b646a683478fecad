"""Interactive budgets in both frameworks' real pipelines (ContextualCompressionRetriever;
VectorStoreIndex + query engine) on the fake server with controlled delays: a deadline,
the early exit, and verdicts reported as they arrive."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from langchain_core.callbacks import BaseCallbackHandler
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.instrumentation.event_handlers import BaseEventHandler
from llama_index.core.instrumentation.events import BaseEvent
from llama_index.core.instrumentation.events.rerank import ReRankEndEvent, ReRankStartEvent

from rank1_integrations import DeadlineExceeded, Rank1Client
from rank1_integrations.langchain import Rank1Rerank as LangChainRerank
from rank1_integrations.llama_index import Rank1JudgmentEvent
from rank1_integrations.llama_index import Rank1Rerank as LlamaIndexRerank
from rank1_integrations.testing import FakeRank1Server, overlap_score

from .adapter_support import CORPUS, QUERY
from .test_langchain import retriever_over
from .test_llama_index import engine_over

TEXT = {pid: text for pid, text, _ in CORPUS}
SCORE = {pid: overlap_score(QUERY, text) for pid, text, _ in CORPUS}
SLOW = "d-full"  # the best document: a deadline that cuts it off costs the top spot


def by_score(ids: list[str]) -> list[str]:
    return sorted(ids, key=lambda pid: -SCORE[pid])


@pytest.fixture(scope="module")
def slow_server() -> Iterator[FakeRank1Server]:
    """The fake server, 10 s for SLOW's passage, 0.05 s for the others."""
    with FakeRank1Server(
        delay_for=lambda passage: 10.0 if passage == TEXT[SLOW] else 0.05
    ) as server:
        yield server


@pytest.fixture
def slow_client(slow_server: FakeRank1Server) -> Iterator[Rank1Client]:
    client = Rank1Client(slow_server.base_url, cache=None, max_retries=0)
    yield client
    client.close()


def first_stage_langchain() -> list[str]:
    retriever, _ = retriever_over(LangChainRerank(client=Rank1Client("http://127.0.0.1:9/v1")))
    return [d.id for d in retriever.base_retriever.invoke(QUERY)]


# ---------------------------------------------------------------------- LangChain


def test_langchain_deadline_in_the_retriever(slow_client: Rank1Client) -> None:
    retriever, _ = retriever_over(LangChainRerank(client=slow_client, deadline=1.0))
    started = time.monotonic()
    docs = retriever.invoke(QUERY)
    assert time.monotonic() - started < 2.5
    others = by_score([pid for pid in TEXT if pid != SLOW])
    assert [d.id for d in docs] == [*others, SLOW]  # judged by score, then the unjudged
    assert [d.metadata["rank1_judged"] for d in docs] == [True] * len(others) + [False]
    late = docs[-1]
    assert late.metadata["relevance_score"] is None
    assert "deadline of 1 s passed" in late.metadata["rank1_error"]


def test_langchain_deadline_respects_top_n_and_can_raise(slow_client: Rank1Client) -> None:
    retriever, _ = retriever_over(
        LangChainRerank(client=slow_client, deadline=0.5, top_n=len(CORPUS) - 1)
    )
    docs = retriever.invoke(QUERY)
    assert len(docs) == len(CORPUS) - 1 and all(d.metadata["rank1_judged"] for d in docs)
    raising, _ = retriever_over(
        LangChainRerank(client=slow_client, deadline=0.5, on_deadline="raise")
    )
    with pytest.raises(DeadlineExceeded):
        raising.invoke(QUERY)


async def test_langchain_stop_after_relevant_async(server: FakeRank1Server) -> None:
    client = Rank1Client(server.base_url, cache=None, concurrency=1)
    try:
        reranker = LangChainRerank(client=client, stop_after_relevant=1, score_threshold=0.8)
        retriever, _ = retriever_over(reranker)
        before = server.requests
        docs = await retriever.ainvoke(QUERY)
    finally:
        await client.aclose()
    order = first_stage_langchain()
    cut = next(i for i, pid in enumerate(order) if SCORE[pid] >= 0.8) + 1
    judged, rest = order[:cut], order[cut:]
    assert server.requests - before == cut  # nothing judged after the first relevant one
    kept = [pid for pid in by_score(judged) if SCORE[pid] >= 0.8]
    assert [d.id for d in docs] == kept + rest
    assert all("stopped early" in d.metadata["rank1_error"] for d in docs[len(kept):])


class Texts(BaseCallbackHandler):
    def __init__(self) -> None:
        self.texts: list[tuple[float, str]] = []
        self.ended: float | None = None

    def on_text(self, text: str, **kwargs: Any) -> None:
        self.texts.append((time.monotonic(), text))

    def on_chain_end(self, outputs: dict[str, Any], **kwargs: Any) -> None:
        if "judgments" in outputs:
            self.ended = time.monotonic()


@pytest.mark.parametrize("use_async", [False, True])
async def test_langchain_on_text_as_each_verdict_arrives(
    slow_server: FakeRank1Server, use_async: bool
) -> None:
    client = Rank1Client(slow_server.base_url, cache=None)
    recorder = Texts()
    reranker = LangChainRerank(client=client, deadline=1.0)
    docs = [d for d in retriever_over(reranker)[0].base_retriever.invoke(QUERY)]
    try:
        if use_async:
            await reranker.acompress_documents(docs, QUERY, callbacks=[recorder])
        else:
            reranker.compress_documents(docs, QUERY, callbacks=[recorder])
    finally:
        await client.aclose()
        client.close()
    assert len(recorder.texts) == len(CORPUS) and recorder.ended is not None
    first, last = recorder.texts[0], recorder.texts[-1]
    assert recorder.ended - first[0] > 0.5  # the fast verdicts came before the deadline
    assert "not judged" in last[1]


# ---------------------------------------------------------------------- LlamaIndex


class Events(BaseEventHandler):
    events: list[BaseEvent] = []

    @classmethod
    def class_name(cls) -> str:
        return "Events"

    def handle(self, event: BaseEvent, **kwargs: Any) -> None:
        if isinstance(event, (ReRankStartEvent, ReRankEndEvent, Rank1JudgmentEvent)):
            self.events.append(event)


@pytest.fixture
def events() -> Iterator[Events]:
    root = get_dispatcher()
    handler = Events(events=[])
    root.add_event_handler(handler)
    yield handler
    root.event_handlers.remove(handler)


def check_judgment_events(recorded: Events) -> list[Rank1JudgmentEvent]:
    start, *middle, end = recorded.events
    assert isinstance(start, ReRankStartEvent) and isinstance(end, ReRankEndEvent)
    assert all(isinstance(e, Rank1JudgmentEvent) for e in middle)
    assert len(middle) == len(CORPUS)
    assert {e.span_id for e in middle} == {start.span_id} and start.span_id is not None
    return middle  # type: ignore[return-value]


def test_llama_index_deadline_in_the_query_engine(slow_client: Rank1Client, events: Events) -> None:
    started = time.monotonic()
    response = engine_over(LlamaIndexRerank(client=slow_client, deadline=1.0, top_n=3)).query(QUERY)
    assert time.monotonic() - started < 2.5
    others = by_score([pid for pid in TEXT if pid != SLOW])
    assert [n.node.node_id for n in response.source_nodes] == others[:3]
    judged = check_judgment_events(events)
    assert [e.judged for e in judged].count(False) == 1
    assert judged[-1].index is not None and not judged[-1].judged
    assert "deadline" in (judged[-1].error or "")


async def test_llama_index_stop_after_relevant_async(
    server: FakeRank1Server, events: Events
) -> None:
    client = Rank1Client(server.base_url, cache=None, concurrency=1)
    try:
        engine = engine_over(LlamaIndexRerank(client=client, stop_after_relevant=2))
        before = server.requests
        response = await engine.aquery(QUERY)
    finally:
        await client.aclose()
    nodes = response.source_nodes
    judged = [n for n in nodes if n.node.metadata["rank1_judged"]]
    rest = [n for n in nodes if not n.node.metadata["rank1_judged"]]
    assert server.requests - before == len(judged)
    assert sum(1 for n in judged if n.score >= 0.5) == 2  # stopped at the 2nd relevant
    assert len(judged) + len(rest) == len(CORPUS)
    assert all("stopped early" in n.node.metadata["rank1_error"] for n in rest)
    assert [e.judged for e in check_judgment_events(events)].count(True) == len(judged)


async def test_langchain_per_call_budget_overrides_the_instance(slow_client: Rank1Client) -> None:
    reranker = LangChainRerank(client=slow_client, stop_after_relevant=1)
    docs = retriever_over(reranker)[0].base_retriever.invoke(QUERY)
    started = time.monotonic()
    out = await reranker.acompress_documents(
        docs, QUERY, deadline=1.0, stop_after_relevant=len(CORPUS)
    )
    assert time.monotonic() - started < 2.5
    assert [d.metadata["rank1_judged"] for d in out].count(False) == 1  # only the slow one
    assert out[-1].id == SLOW and "deadline" in out[-1].metadata["rank1_error"]
    with pytest.raises(ValueError, match="deadline"):
        reranker.compress_documents(docs, QUERY, deadline=-1.0)
    await slow_client.aclose()


def test_llama_index_per_call_deadline_through_call_options(
    slow_client: Rank1Client, events: Events
) -> None:
    """A query engine hands the reranker only nodes and the query: ``call_options`` carries
    a per-call deadline there, for the calls inside the ``with`` block only."""
    reranker = LlamaIndexRerank(client=slow_client, top_n=len(CORPUS))
    engine = engine_over(reranker)
    started = time.monotonic()
    with reranker.call_options(deadline=1.0):
        response = engine.query(QUERY)
    assert time.monotonic() - started < 2.5
    unjudged = [n for n in response.source_nodes if not n.node.metadata["rank1_judged"]]
    assert [n.node.node_id for n in unjudged] == [SLOW]
    assert "deadline" in unjudged[0].node.metadata["rank1_error"]
    assert reranker._call_options()["deadline"] is None  # outside the block: the instance's
