"""Hosted-endpoint options of both rerankers in their real pipelines (loopback fake
server): ``title_key``, per-call ``instruction`` / ``max_reasoning_tokens``, rate-limit
settings, and serialisation without the API key (pickle after use; LlamaIndex's
``to_dict`` / ``from_dict``)."""

from __future__ import annotations

import json
import pickle
from typing import Any

import pytest
from langchain_classic.retrievers import ContextualCompressionRetriever
from langchain_core.documents import Document
from langchain_core.embeddings import DeterministicFakeEmbedding
from langchain_core.vectorstores import InMemoryVectorStore
from llama_index.core import VectorStoreIndex
from llama_index.core.embeddings import MockEmbedding
from llama_index.core.llms import MockLLM
from llama_index.core.query_engine import RetrieverQueryEngine
from llama_index.core.schema import TextNode

from rank1_integrations import Rank1Client
from rank1_integrations.langchain import Rank1Rerank as LangChainRerank
from rank1_integrations.llama_index import Rank1Rerank as LlamaIndexRerank
from rank1_integrations.testing import FakeRank1Server, overlap_score

from .adapter_support import CORPUS, QUERY

SECRET = "sk-test-secret-0123456789"
EXTRA = "Passages saying cats sleep most of the day count too."
CATS = CORPUS[0][1]


def documents() -> list[Document]:
    return [Document(id=pid, page_content=text, metadata=dict(meta)) for pid, text, meta in CORPUS]


def lc_retriever(reranker: LangChainRerank,
                 docs: list[Document] | None = None) -> ContextualCompressionRetriever:
    store = InMemoryVectorStore(DeterministicFakeEmbedding(size=16))
    store.add_documents(docs or documents())
    base = store.as_retriever(search_kwargs={"k": len(CORPUS)})
    return ContextualCompressionRetriever(base_compressor=reranker, base_retriever=base)


def li_engine(reranker: LlamaIndexRerank) -> RetrieverQueryEngine:
    nodes = [TextNode(id_=pid, text=text, metadata=dict(meta)) for pid, text, meta in CORPUS]
    index = VectorStoreIndex(nodes, embed_model=MockEmbedding(embed_dim=8))
    return RetrieverQueryEngine.from_args(
        index.as_retriever(similarity_top_k=len(CORPUS)), llm=MockLLM(),
        node_postprocessors=[reranker],
    )


def lc_scores(docs: Any) -> dict[str, float]:
    return {d.id: d.metadata["relevance_score"] for d in docs}


def li_scores(response: Any) -> dict[str, float]:
    return {n.node.node_id: n.score for n in response.source_nodes}


# ---------------------------------------------------------------- title_key


def test_title_key_reaches_rank1_through_the_retriever(client: Rank1Client) -> None:
    docs = documents()
    docs[0].metadata["headline"] = "What makes ocean tides rise"
    retriever = lc_retriever(LangChainRerank(client=client, title_key="headline"), docs)
    scores = lc_scores(retriever.invoke(QUERY))
    # rank1 reads f"{title} {text}": the title's words count for the cats passage
    assert scores["d-cats"] == pytest.approx(
        overlap_score(QUERY, f"What makes ocean tides rise {CATS}"))
    assert scores["d-cats"] > overlap_score(QUERY, CATS) + 0.5
    # documents without that key are judged on their text
    assert scores["d-one"] == pytest.approx(overlap_score(QUERY, "The ocean is deep."))
    untitled = lc_scores(lc_retriever(LangChainRerank(client=client), docs).invoke(QUERY))
    assert untitled["d-cats"] == pytest.approx(overlap_score(QUERY, CATS))


# ---------------------------------------------------------------- per-call options


def test_langchain_per_call_options_through_the_retriever(client: Rank1Client) -> None:
    reranker = LangChainRerank(client=client, include_reasoning=True)
    retriever = lc_retriever(reranker)
    plain = lc_scores(retriever.invoke(QUERY))
    with reranker.call_options(instruction=EXTRA, max_reasoning_tokens=3):
        docs = retriever.invoke(QUERY)
    assert lc_scores(docs)["d-cats"] == pytest.approx(overlap_score(f"{QUERY} {EXTRA}", CATS))
    # three reasoning tokens: the fake's chain is cut and the answer forced
    assert all(len(d.metadata["rank1_reasoning"].split()) <= 3 for d in docs)
    assert lc_scores(retriever.invoke(QUERY)) == plain  # outside the block: the instance's


async def test_langchain_per_call_options_async_and_direct(aclient: Rank1Client) -> None:
    reranker = LangChainRerank(client=aclient, instruction=EXTRA)
    retriever = lc_retriever(reranker)
    with reranker.call_options(instruction="Nothing else counts."):
        docs = await retriever.ainvoke(QUERY)
    assert lc_scores(docs)["d-cats"] == pytest.approx(
        overlap_score(f"{QUERY} Nothing else counts.", CATS))
    # the direct call's own keywords win over the instance's
    direct = await reranker.acompress_documents(documents(), QUERY, instruction="Tides.")
    assert lc_scores(direct)["d-cats"] == pytest.approx(overlap_score(f"{QUERY} Tides.", CATS))
    sync = reranker.compress_documents(documents(), QUERY)
    assert lc_scores(sync)["d-cats"] == pytest.approx(overlap_score(f"{QUERY} {EXTRA}", CATS))


def test_call_options_are_per_reranker(client: Rank1Client) -> None:
    mine, other = LangChainRerank(client=client), LangChainRerank(client=client)
    with mine.call_options(instruction=EXTRA):
        theirs = lc_scores(other.compress_documents(documents(), QUERY))
    assert theirs["d-cats"] == pytest.approx(overlap_score(QUERY, CATS))
    with pytest.raises(ValueError, match="max_reasoning_tokens"):
        with mine.call_options(max_reasoning_tokens=0):
            pass


def test_llama_index_per_call_options_through_the_query_engine(client: Rank1Client) -> None:
    reranker = LlamaIndexRerank(client=client, include_reasoning=True)
    engine = li_engine(reranker)
    with reranker.call_options(instruction=EXTRA, max_reasoning_tokens=3):
        response = engine.query(QUERY)
    assert li_scores(response)["d-cats"] == pytest.approx(overlap_score(f"{QUERY} {EXTRA}", CATS))
    assert all(len(n.node.metadata["rank1_reasoning"].split()) <= 3
               for n in response.source_nodes)
    assert li_scores(engine.query(QUERY))["d-cats"] == pytest.approx(overlap_score(QUERY, CATS))


async def test_llama_index_per_call_options_async(aclient: Rank1Client) -> None:
    reranker = LlamaIndexRerank(client=aclient)
    with reranker.call_options(instruction=EXTRA):
        response = await li_engine(reranker).aquery(QUERY)
    assert li_scores(response)["d-cats"] == pytest.approx(overlap_score(f"{QUERY} {EXTRA}", CATS))


# ---------------------------------------------------------------- settings


def test_rate_limit_settings_reach_the_reranker_client(server: FakeRank1Server) -> None:
    reranker = LangChainRerank(base_url=server.base_url, max_requests_per_minute=6000,
                               max_tokens_per_minute=10**7)
    try:
        assert len(reranker.compress_documents(documents(), QUERY)) == len(CORPUS)
        settings = reranker.rank1_client.settings
        assert (settings.max_requests_per_minute, settings.max_tokens_per_minute) == (
            6000, 10**7)
    finally:
        reranker.close()


# ---------------------------------------------------------------- serialisation


@pytest.fixture
def no_env_key(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    monkeypatch.delenv("RANK1_API_KEY", raising=False)
    return monkeypatch


def test_langchain_reranker_pickles_after_use_without_the_key(
    server: FakeRank1Server, no_env_key: pytest.MonkeyPatch
) -> None:
    reranker = LangChainRerank(base_url=server.base_url, api_key=SECRET, top_n=2,
                               title_key="source", max_requests_per_minute=6000)
    retriever = lc_retriever(reranker)
    before = [d.id for d in retriever.invoke(QUERY)]  # used: it holds a client and a loop
    data = pickle.dumps(reranker)
    assert SECRET.encode() not in data
    no_env_key.setenv("RANK1_API_KEY", "sk-from-env")
    copy = pickle.loads(data)
    try:
        assert copy.api_key is not None and copy.api_key.get_secret_value() == "sk-from-env"
        assert (copy.top_n, copy.title_key, copy.base_url) == (2, "source", server.base_url)
        assert copy.rank1_client.api_key == "sk-from-env"
        assert copy.rank1_client.max_requests_per_minute == 6000
        assert [d.id for d in lc_retriever(copy).invoke(QUERY)] == before
        # the whole retriever pickles too
        assert SECRET.encode() not in pickle.dumps(retriever)
    finally:
        copy.close()
        reranker.close()


def test_langchain_reranker_with_a_client_pickles_without_the_clients_key(
    server: FakeRank1Server, no_env_key: pytest.MonkeyPatch
) -> None:
    client = Rank1Client(base_url=server.base_url, api_key=SECRET)
    reranker = LangChainRerank(client=client)
    reranker.compress_documents(documents(), QUERY)
    data = pickle.dumps(reranker)
    assert SECRET.encode() not in data
    copy = pickle.loads(data)
    assert copy.rank1_client.api_key == "EMPTY" and copy.rank1_client is not client
    assert len(copy.compress_documents(documents(), QUERY)) == len(CORPUS)
    copy.rank1_client.close()
    client.close()


def test_llama_index_reranker_round_trips_to_dict(
    server: FakeRank1Server, no_env_key: pytest.MonkeyPatch
) -> None:
    reranker = LlamaIndexRerank(base_url=server.base_url, api_key=SECRET, top_n=2,
                                keep_retrieval_score=True, max_tokens_per_minute=10**7,
                                instruction=EXTRA)
    before = li_scores(li_engine(reranker).query(QUERY))  # after use
    data = reranker.to_dict()
    assert data["class_name"] == "Rank1Rerank"
    assert SECRET not in repr(data) and "api_key" not in data
    text = reranker.to_json()
    assert SECRET not in text and json.loads(text)["top_n"] == 2
    no_env_key.setenv("RANK1_API_KEY", "sk-from-env")
    for copy in (LlamaIndexRerank.from_dict(data), LlamaIndexRerank.from_json(text)):
        try:
            assert (copy.top_n, copy.keep_retrieval_score, copy.instruction) == (
                2, True, EXTRA)
            assert copy.max_tokens_per_minute == 10**7
            assert copy.rank1_client.api_key == "sk-from-env"
            assert li_scores(li_engine(copy).query(QUERY)) == before
        finally:
            copy.close()
    pickled = pickle.dumps(reranker)
    assert SECRET.encode() not in pickled
    copy = pickle.loads(pickled)
    assert copy.top_n == 2 and copy.rank1_client.api_key == "sk-from-env"
    copy.close()
    reranker.close()
