"""A call's usage totals reach each framework's tracer, through the real pipelines: the
LangChain ``Rank1Rerank`` run's outputs (``usage``) under a ContextualCompressionRetriever,
and LlamaIndex's ``ReRankEndEvent`` (``tags["rank1_usage"]``) under a query engine over a
VectorStoreIndex; rank1 is the loopback fake server, which counts one prompt token per
word."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from rank1_integrations import Rank1Client
from rank1_integrations.protocol import build_prompt
from rank1_integrations.testing import FakeRank1Server
from rank1_integrations.testing.fake_server import prompt_token_count

from .adapter_support import CORPUS, QUERY

pytest.importorskip("langchain_core")
pytest.importorskip("llama_index.core")

from langchain_classic.retrievers import ContextualCompressionRetriever  # noqa: E402
from langchain_core.callbacks import BaseCallbackHandler  # noqa: E402
from langchain_core.documents import Document  # noqa: E402
from langchain_core.embeddings import DeterministicFakeEmbedding  # noqa: E402
from langchain_core.vectorstores import InMemoryVectorStore  # noqa: E402
from llama_index.core import VectorStoreIndex  # noqa: E402
from llama_index.core.embeddings import MockEmbedding  # noqa: E402
from llama_index.core.instrumentation import get_dispatcher  # noqa: E402
from llama_index.core.instrumentation.event_handlers import BaseEventHandler  # noqa: E402
from llama_index.core.instrumentation.events import BaseEvent  # noqa: E402
from llama_index.core.instrumentation.events.rerank import ReRankEndEvent  # noqa: E402
from llama_index.core.llms import MockLLM  # noqa: E402
from llama_index.core.query_engine import RetrieverQueryEngine  # noqa: E402
from llama_index.core.schema import TextNode  # noqa: E402

from rank1_integrations import langchain as lc  # noqa: E402
from rank1_integrations import llama_index as li  # noqa: E402

#: What the fake server counts for the whole corpus: the judgments' first prompts.
CORPUS_PROMPT_TOKENS = sum(prompt_token_count(build_prompt(QUERY, text)) for _, text, _ in CORPUS)


#: The probes a new client sends to the fake server (counted in the first judgment).
PROBES = 4


def check_fresh(usage: dict[str, int]) -> None:
    """The totals of a call that judged the whole corpus, each passage in one request."""
    assert set(usage) == {"prompt_tokens", "reasoning_tokens", "requests", "cached"}
    assert usage["prompt_tokens"] == CORPUS_PROMPT_TOKENS
    # one request a passage, and a new client's server probes (the fake answers
    # /v1/models without a context: then /props, /tokenize in vLLM's and llama.cpp's
    # shapes, each a 404)
    assert usage["requests"] == len(CORPUS) + PROBES
    assert usage["cached"] == 0
    assert usage["reasoning_tokens"] >= len(CORPUS)  # every chain has tokens


# ---------------------------------------------------------------- LangChain


class RunOutputs(BaseCallbackHandler):
    def __init__(self) -> None:
        self.ends: list[Any] = []

    def on_chain_end(self, outputs: Any, **kwargs: Any) -> None:
        self.ends.append(outputs)


def lc_retriever(reranker: lc.Rank1Rerank) -> ContextualCompressionRetriever:
    store = InMemoryVectorStore(DeterministicFakeEmbedding(size=16))
    store.add_documents([Document(id=pid, page_content=text, metadata=dict(meta))
                         for pid, text, meta in CORPUS])
    return ContextualCompressionRetriever(
        base_compressor=reranker, base_retriever=store.as_retriever(search_kwargs={"k": 20})
    )


def rank1_run_usage(recorder: RunOutputs) -> list[dict[str, int]]:
    return [out["usage"] for out in recorder.ends if isinstance(out, dict) and "usage" in out]


def test_langchain_run_outputs_carry_usage(client: Rank1Client) -> None:
    recorder = RunOutputs()
    lc_retriever(lc.Rank1Rerank(client=client, top_n=2)).invoke(
        QUERY, config={"callbacks": [recorder]}
    )
    (usage,) = rank1_run_usage(recorder)
    check_fresh(usage)


async def test_langchain_async_and_cached_usage(server: FakeRank1Server) -> None:
    rank1 = Rank1Client(base_url=server.base_url, max_retries=0)  # cache on
    try:
        retriever = lc_retriever(lc.Rank1Rerank(client=rank1))
        recorder = RunOutputs()
        await retriever.ainvoke(QUERY, config={"callbacks": [recorder]})
        await retriever.ainvoke(QUERY, config={"callbacks": [recorder]})
        first, second = rank1_run_usage(recorder)
        check_fresh(first)
        assert second == {"prompt_tokens": 0, "reasoning_tokens": 0, "requests": 0,
                          "cached": len(CORPUS)}
    finally:
        await rank1.aclose()


# ---------------------------------------------------------------- LlamaIndex


class EndEvents(BaseEventHandler):
    events: list[BaseEvent] = []

    @classmethod
    def class_name(cls) -> str:
        return "EndEvents"

    def handle(self, event: BaseEvent, **kwargs: Any) -> None:
        if isinstance(event, ReRankEndEvent):
            self.events.append(event)


@pytest.fixture
def end_events() -> Iterator[EndEvents]:
    root = get_dispatcher()
    handler = EndEvents(events=[])
    root.add_event_handler(handler)
    yield handler
    root.event_handlers.remove(handler)


def li_engine(reranker: li.Rank1Rerank) -> RetrieverQueryEngine:
    nodes = [TextNode(id_=pid, text=text, metadata=dict(meta)) for pid, text, meta in CORPUS]
    index = VectorStoreIndex(nodes, embed_model=MockEmbedding(embed_dim=8))
    return RetrieverQueryEngine.from_args(
        index.as_retriever(similarity_top_k=len(CORPUS)), llm=MockLLM(),
        node_postprocessors=[reranker],
    )


def test_llama_index_end_event_tags_carry_usage(
    client: Rank1Client, end_events: EndEvents
) -> None:
    li_engine(li.Rank1Rerank(client=client, top_n=2)).query(QUERY)
    (event,) = end_events.events
    check_fresh(event.tags[li.USAGE_TAG])
    assert li.USAGE_TAG == "rank1_usage"


async def test_llama_index_async_and_cached_usage(
    server: FakeRank1Server, end_events: EndEvents
) -> None:
    rank1 = Rank1Client(base_url=server.base_url, max_retries=0)  # cache on
    try:
        engine = li_engine(li.Rank1Rerank(client=rank1))
        await engine.aquery(QUERY)
        await engine.aquery(QUERY)
        first, second = (e.tags["rank1_usage"] for e in end_events.events)
        check_fresh(first)
        assert second == {"prompt_tokens": 0, "reasoning_tokens": 0, "requests": 0,
                          "cached": len(CORPUS)}
    finally:
        await rank1.aclose()


# ---------------------------------------------------------------- OpenTelemetry


async def test_async_framework_calls_have_one_span_each(
    server: FakeRank1Server, span_exporter: Any
) -> None:
    """The async paths of both rerankers (``arerank_iter`` underneath) open one span
    ``rank1.rerank`` per call, as the sync ones do."""
    rank1 = Rank1Client(base_url=server.base_url, max_retries=0, cache=None)
    try:
        await lc_retriever(lc.Rank1Rerank(client=rank1)).ainvoke(QUERY)
        await li_engine(li.Rank1Rerank(client=rank1)).aquery(QUERY)
    finally:
        await rank1.aclose()
    spans = [s for s in span_exporter.get_finished_spans() if s.name.startswith("rank1.")]
    assert [s.name for s in spans] == ["rank1.rerank", "rank1.rerank"]
    assert all(s.attributes["rank1.judged"] == len(CORPUS) for s in spans)
    assert all(s.attributes["rank1.documents"] == len(CORPUS) for s in spans)
