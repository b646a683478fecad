"""The LlamaIndex postprocessor in real pipelines: a VectorStoreIndex with MockEmbedding and
a query engine with MockLLM (which answers with the prompt it was given, so the test sees
exactly what the LLM saw); rank1 is the loopback fake server (real HTTP)."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import pytest
from llama_index.core import VectorStoreIndex
from llama_index.core.callbacks import CallbackManager, CBEventType, EventPayload, LlamaDebugHandler
from llama_index.core.embeddings import MockEmbedding
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.instrumentation.event_handlers import BaseEventHandler
from llama_index.core.instrumentation.events import BaseEvent
from llama_index.core.instrumentation.events.rerank import ReRankEndEvent, ReRankStartEvent
from llama_index.core.instrumentation.span_handlers import SimpleSpanHandler
from llama_index.core.llms import MockLLM
from llama_index.core.query_engine import RetrieverQueryEngine
from llama_index.core.schema import MetadataMode, NodeWithScore, QueryBundle, TextNode

from rank1_integrations import Rank1Client
from rank1_integrations.llama_index import Rank1Rerank
from rank1_integrations.testing import FakeRank1Server

from .adapter_support import CORPUS, FAIL_MARKER, QUERY, expected_order

EXPECTED = expected_order([(pid, text) for pid, text, _ in CORPUS])
ADDED_KEYS = {"rank1_relevant", "rank1_reasoning", "rank1_error", "retrieval_score"}
REASONING_MARK = "I compare its words with the passage"  # in every reasoning of the fake


def corpus_nodes() -> list[TextNode]:
    return [TextNode(id_=pid, text=text, metadata=dict(meta)) for pid, text, meta in CORPUS]


def with_scores(nodes: list[TextNode]) -> list[NodeWithScore]:
    return [NodeWithScore(node=n, score=0.1 * (i + 1)) for i, n in enumerate(nodes)]


def engine_over(reranker: Rank1Rerank, **kwargs: Any) -> RetrieverQueryEngine:
    index = VectorStoreIndex(corpus_nodes(), embed_model=MockEmbedding(embed_dim=8))
    return RetrieverQueryEngine.from_args(
        index.as_retriever(similarity_top_k=len(CORPUS)), llm=MockLLM(),
        node_postprocessors=[reranker], **kwargs,
    )


def check_nodes(nodes: list[NodeWithScore], *, reasoning: bool = False) -> None:
    originals = {pid: (text, meta) for pid, text, meta in CORPUS}
    for nws in nodes:
        text, meta = originals[nws.node.node_id]
        assert nws.node.get_content() == text
        assert {k: nws.node.metadata[k] for k in meta} == meta
        assert type(nws.score) is float and 0.0 <= nws.score <= 1.0
        assert nws.node.metadata["rank1_relevant"] is (nws.score >= 0.5)
        assert ("rank1_reasoning" in nws.node.metadata) is reasoning
    scores = [n.score for n in nodes]
    assert scores == sorted(scores, reverse=True)


class EventRecorder(BaseEventHandler):
    events: list[BaseEvent] = []

    @classmethod
    def class_name(cls) -> str:
        return "EventRecorder"

    def handle(self, event: BaseEvent, **kwargs: Any) -> None:
        if isinstance(event, (ReRankStartEvent, ReRankEndEvent)):
            self.events.append(event)


@pytest.fixture
def recorded() -> Iterator[tuple[EventRecorder, SimpleSpanHandler]]:
    """An event handler and a span handler registered on the root dispatcher."""
    root = get_dispatcher()
    events, spans = EventRecorder(events=[]), SimpleSpanHandler()
    root.add_event_handler(events)
    root.add_span_handler(spans)
    yield events, spans
    root.event_handlers.remove(events)
    root.span_handlers.remove(spans)


def check_events(recorder: EventRecorder, spans: SimpleSpanHandler, method: str,
                 returned: list[NodeWithScore], model: str) -> None:
    start, end = recorder.events
    assert isinstance(start, ReRankStartEvent) and isinstance(end, ReRankEndEvent)
    assert start.model_name == model and len(start.nodes) == len(CORPUS)
    assert start.query is not None
    assert [n.node.node_id for n in end.nodes] == [n.node.node_id for n in returned]
    assert any(s.id_.startswith(f"Rank1Rerank.{method}-") for s in spans.completed_spans)


def test_query_engine_sync(client: Rank1Client, server: FakeRank1Server, recorded: Any) -> None:
    reranker = Rank1Rerank(client=client, top_n=3, keep_retrieval_score=True)
    before = server.requests
    response = engine_over(reranker).query(QUERY)
    assert [n.node.node_id for n in response.source_nodes] == EXPECTED[:3]
    check_nodes(response.source_nodes)
    assert all(isinstance(n.node.metadata["retrieval_score"], float)
               for n in response.source_nodes)
    assert server.requests - before == len(CORPUS)
    check_events(*recorded, "_postprocess_nodes", response.source_nodes, client.model)


async def test_query_engine_async_is_real_async(
    aclient: Rank1Client, recorded: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_sync(*args: object, **kwargs: object) -> None:
        raise AssertionError("the async path must not fall back to _postprocess_nodes")

    monkeypatch.setattr(Rank1Rerank, "_postprocess_nodes", no_sync)
    reranker = Rank1Rerank(client=aclient, include_reasoning=True)
    response = await engine_over(reranker).aquery(QUERY)
    assert [n.node.node_id for n in response.source_nodes] == EXPECTED
    check_nodes(response.source_nodes, reasoning=True)
    check_events(*recorded, "_apostprocess_nodes", response.source_nodes, aclient.model)


def test_reasoning_hidden_from_llm_and_embedder(client: Rank1Client) -> None:
    reranker = Rank1Rerank(client=client, top_n=2, include_reasoning=True,
                           keep_retrieval_score=True)
    response = engine_over(reranker).query(QUERY)
    prompt = str(response)  # MockLLM echoes its prompt
    texts = {pid: text for pid, text, _ in CORPUS}
    assert texts[EXPECTED[0]] in prompt and texts[EXPECTED[1]] in prompt
    assert texts[EXPECTED[2]] not in prompt
    assert "source: sea" in prompt  # the original metadata still reaches the LLM
    assert REASONING_MARK not in prompt and "rank1_" not in prompt
    for nws in response.source_nodes:
        assert REASONING_MARK in nws.node.metadata["rank1_reasoning"]
        for mode in (MetadataMode.LLM, MetadataMode.EMBED):
            content = nws.node.get_content(metadata_mode=mode)
            assert "rank1_" not in content and "retrieval_score" not in content


def test_reasoning_shown_to_llm_when_asked(client: Rank1Client) -> None:
    reranker = Rank1Rerank(client=client, top_n=2, include_reasoning=True,
                           show_reasoning_to_llm=True)
    prompt = str(engine_over(reranker).query(QUERY))
    assert REASONING_MARK in prompt and "rank1_relevant: True" in prompt
    node = engine_over(reranker).retrieve(QueryBundle(QUERY))[0].node
    assert "rank1_reasoning" not in node.get_content(metadata_mode=MetadataMode.EMBED)


def test_show_reasoning_needs_include_reasoning() -> None:
    with pytest.raises(ValueError, match="show_reasoning_to_llm=True needs include_reasoning"):
        Rank1Rerank(show_reasoning_to_llm=True)


def test_input_nodes_not_mutated(client: Rank1Client) -> None:
    nodes = with_scores(corpus_nodes())
    nodes[0].node.excluded_llm_metadata_keys.append("year")
    before = copy.deepcopy(nodes)
    out = Rank1Rerank(client=client, include_reasoning=True, keep_retrieval_score=True
                      ).postprocess_nodes(nodes, query_str=QUERY)
    assert [n.model_dump() for n in nodes] == [n.model_dump() for n in before]
    assert all(o.node is not n.node and o is not n for o in out for n in nodes)
    first = next(o for o in out if o.node.node_id == CORPUS[0][0])
    assert first.node.excluded_llm_metadata_keys[0] == "year"  # the node's own exclusions kept
    assert first.node.metadata["retrieval_score"] == pytest.approx(0.1)


def test_callback_manager_gets_reranking_event(client: Rank1Client) -> None:
    debug = LlamaDebugHandler()
    reranker = Rank1Rerank(client=client, top_n=2)
    response = engine_over(reranker, callback_manager=CallbackManager([debug])).query(QUERY)
    (start, end), = debug.get_event_pairs(CBEventType.RERANKING)
    assert start.payload[EventPayload.QUERY_STR] == QUERY
    assert start.payload[EventPayload.MODEL_NAME] == client.model
    assert start.payload[EventPayload.TOP_K] == 2
    assert [n.node.node_id for n in end.payload[EventPayload.NODES]] == [
        n.node.node_id for n in response.source_nodes]


def test_no_query_is_a_clear_error(client: Rank1Client) -> None:
    with pytest.raises(ValueError, match="Rank1Rerank needs the query"):
        Rank1Rerank(client=client).postprocess_nodes(with_scores(corpus_nodes()))


async def test_no_query_is_a_clear_error_async(aclient: Rank1Client) -> None:
    with pytest.raises(ValueError, match="Rank1Rerank needs the query"):
        await Rank1Rerank(client=aclient).apostprocess_nodes(with_scores(corpus_nodes()))


def test_empty_input_sends_nothing(client: Rank1Client, server: FakeRank1Server) -> None:
    before = server.requests
    assert Rank1Rerank(client=client).postprocess_nodes([], query_str=QUERY) == []
    assert server.requests == before


@pytest.mark.parametrize("threshold", [0.0, 1.0])
def test_threshold_bounds(client: Rank1Client, threshold: float) -> None:
    out = Rank1Rerank(client=client, score_threshold=threshold).postprocess_nodes(
        with_scores(corpus_nodes()), query_str=QUERY)
    assert [n.node.node_id for n in out] == (EXPECTED if threshold == 0.0 else [])


def test_threshold_equal_to_a_score_keeps_that_node(client: Rank1Client) -> None:
    scored = Rank1Rerank(client=client).postprocess_nodes(
        with_scores(corpus_nodes()), query_str=QUERY)
    kept = Rank1Rerank(client=client, score_threshold=scored[3].score).postprocess_nodes(
        with_scores(corpus_nodes()), query_str=QUERY)
    assert [n.node.node_id for n in kept] == EXPECTED[:4]


@pytest.mark.parametrize("top_n", [0, -1])
def test_top_n_below_one_rejected(top_n: int) -> None:
    with pytest.raises(ValueError, match="top_n must be a positive integer"):
        Rank1Rerank(top_n=top_n)


async def test_on_error_keep_puts_failed_last(failing_client: Rank1Client) -> None:
    nodes = corpus_nodes()
    nodes.insert(2, TextNode(id_="n-bad", text=f"{FAIL_MARKER} ocean", metadata={"k": "v"}))
    reranker = Rank1Rerank(client=failing_client, on_error="keep")
    out = await reranker.apostprocess_nodes(with_scores(nodes), query_str=QUERY)
    assert [n.node.node_id for n in out] == [*EXPECTED, "n-bad"]
    limited = Rank1Rerank(client=failing_client, on_error="keep", top_n=1)
    limited_out = await limited.apostprocess_nodes(with_scores(nodes), query_str=QUERY)
    assert [n.node.node_id for n in limited_out] == [EXPECTED[0]]  # top_n holds
    bad = out[-1]
    assert bad.node.metadata["rank1_judged"] is False
    assert bad.score is None and bad.node.metadata["k"] == "v"
    assert bad.node.metadata["rank1_relevant"] is None
    assert "passage 2" in bad.node.metadata["rank1_error"]
    assert "rank1_error" not in bad.node.get_content(metadata_mode=MetadataMode.LLM)


async def test_on_error_raise_is_the_default(failing_client: Rank1Client) -> None:
    nodes = [*corpus_nodes(), TextNode(id_="n-bad", text=FAIL_MARKER)]
    with pytest.raises(Exception, match=f"judgment of passage {len(CORPUS)} failed"):
        await Rank1Rerank(client=failing_client).apostprocess_nodes(
            with_scores(nodes), query_str=QUERY)


def test_reranker_built_from_settings(server: FakeRank1Server) -> None:
    reranker = Rank1Rerank(base_url=server.base_url, model="fake-rank1", top_n=1)
    try:
        out = reranker.postprocess_nodes(with_scores(corpus_nodes()), query_str=QUERY)
    finally:
        reranker.close()
    assert [n.node.node_id for n in out] == EXPECTED[:1]
    assert reranker.to_dict()["model"] == "fake-rank1"
