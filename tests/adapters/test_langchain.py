"""The LangChain compressor in real pipelines: ContextualCompressionRetriever over an
InMemoryVectorStore with a deterministic fake embedding, and an LCEL chain; rank1 is the
loopback fake server (real HTTP)."""

from __future__ import annotations

import copy
import logging
from typing import Any
from uuid import UUID

import pytest
from langchain_classic.retrievers import ContextualCompressionRetriever
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.documents import Document
from langchain_core.embeddings import DeterministicFakeEmbedding
from langchain_core.language_models.fake_chat_models import ParrotFakeChatModel
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnablePassthrough
from langchain_core.vectorstores import InMemoryVectorStore

from rank1_integrations import JudgmentError, Rank1Client
from rank1_integrations.langchain import Rank1Rerank
from rank1_integrations.testing import FakeRank1Server, overlap_score

from .adapter_support import CORPUS, FAIL_MARKER, QUERY, expected_order

EXPECTED = expected_order([(pid, text) for pid, text, _ in CORPUS])


def corpus_documents() -> list[Document]:
    return [Document(id=pid, page_content=text, metadata=dict(meta)) for pid, text, meta in CORPUS]


def retriever_over(reranker: Rank1Rerank) -> tuple[ContextualCompressionRetriever, Any]:
    store = InMemoryVectorStore(DeterministicFakeEmbedding(size=16))
    store.add_documents(corpus_documents())
    base = store.as_retriever(search_kwargs={"k": len(CORPUS)})
    return ContextualCompressionRetriever(base_compressor=reranker, base_retriever=base), store


def check_documents(docs: list[Document], *, reasoning: bool = False) -> None:
    """Ids, every original metadata key, and the added keys with the right types."""
    originals = {pid: (text, meta) for pid, text, meta in CORPUS}
    for doc in docs:
        text, meta = originals[doc.id]
        assert doc.page_content == text
        assert {k: doc.metadata[k] for k in meta} == meta
        score = doc.metadata["relevance_score"]
        assert type(score) is float and 0.0 <= score <= 1.0
        assert doc.metadata["rank1_relevant"] is (score >= 0.5)
        assert ("rank1_reasoning" in doc.metadata) is reasoning
        assert "rank1_error" not in doc.metadata
    scores = [d.metadata["relevance_score"] for d in docs]
    assert scores == sorted(scores, reverse=True)


def test_retriever_sync_orders_by_rank1(client: Rank1Client, server: FakeRank1Server) -> None:
    retriever, store = retriever_over(Rank1Rerank(client=client))
    before = server.requests
    docs = retriever.invoke(QUERY)
    assert [d.id for d in docs] == EXPECTED
    check_documents(docs)
    assert server.requests - before == len(CORPUS)
    # the store's own documents are untouched
    stored = store.get_by_ids([pid for pid, _, _ in CORPUS])
    assert all(set(d.metadata) == {"source", "year"} for d in stored)


async def test_retriever_async_is_real_async(
    aclient: Rank1Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_sync(*args: object, **kwargs: object) -> None:
        raise AssertionError("the async path must not fall back to compress_documents")

    monkeypatch.setattr(Rank1Rerank, "compress_documents", no_sync)
    retriever, _ = retriever_over(Rank1Rerank(client=aclient, top_n=3, include_reasoning=True))
    docs = await retriever.ainvoke(QUERY)
    assert [d.id for d in docs] == EXPECTED[:3]
    check_documents(docs, reasoning=True)
    assert docs[0].metadata["rank1_reasoning"].startswith("The query asks about")


def test_inputs_not_mutated_and_copies_returned(client: Rank1Client) -> None:
    docs = corpus_documents()
    before = copy.deepcopy(docs)
    out = Rank1Rerank(client=client, include_reasoning=True).compress_documents(docs, QUERY)
    assert docs == before
    assert all(o is not d for o in out for d in docs)
    assert all(o.metadata is not d.metadata for o in out for d in docs)


def test_reranker_built_from_settings(server: FakeRank1Server) -> None:
    reranker = Rank1Rerank(base_url=server.base_url, mode="chat", top_n=2)
    before = server.requests
    try:
        docs = reranker.compress_documents(corpus_documents(), QUERY)
    finally:
        reranker.close()
    assert reranker.rank1_client.mode == "chat"
    assert [d.id for d in docs] == EXPECTED[:2]
    assert server.requests - before == len(CORPUS)


def test_instruction_reaches_the_prompt(client: Rank1Client) -> None:
    extra = "Passages saying cats sleep most of the day count too."
    docs = Rank1Rerank(client=client, instruction=extra).compress_documents(
        corpus_documents(), QUERY)
    scores = {d.id: d.metadata["relevance_score"] for d in docs}
    # the fake scores the query slot, which now holds the query and the instruction
    cats_text = CORPUS[0][1]
    assert scores["d-cats"] == pytest.approx(overlap_score(f"{QUERY} {extra}", cats_text))
    assert scores["d-cats"] > overlap_score(QUERY, cats_text) + 0.1


def test_lcel_chain_feeds_the_reranked_context_to_the_model(client: Rank1Client) -> None:
    retriever, _ = retriever_over(Rank1Rerank(client=client, top_n=2, include_reasoning=True))

    def context(docs: list[Document]) -> str:
        return "\n".join(d.page_content for d in docs)

    prompt = ChatPromptTemplate.from_template("Context:\n{context}\nQuestion: {question}")
    chain = (
        {"context": retriever | context, "question": RunnablePassthrough()}
        | prompt | ParrotFakeChatModel() | StrOutputParser()
    )
    seen = chain.invoke(QUERY)  # the parrot model answers with what it was given
    texts = {pid: text for pid, text, _ in CORPUS}
    assert seen == (f"Context:\n{texts[EXPECTED[0]]}\n{texts[EXPECTED[1]]}\n"
                    f"Question: {QUERY}")


@pytest.mark.parametrize("threshold", [0.0, 1.0])
def test_threshold_bounds(client: Rank1Client, threshold: float) -> None:
    docs = Rank1Rerank(client=client, score_threshold=threshold).compress_documents(
        corpus_documents(), QUERY)
    # 0 keeps every judged document; the fake never says P(true) = 1 exactly
    assert [d.id for d in docs] == (EXPECTED if threshold == 0.0 else [])


def test_threshold_equal_to_a_score_keeps_that_document(client: Rank1Client) -> None:
    scored = Rank1Rerank(client=client).compress_documents(corpus_documents(), QUERY)
    middle = scored[2].metadata["relevance_score"]
    kept = Rank1Rerank(client=client, score_threshold=middle, top_n=10).compress_documents(
        corpus_documents(), QUERY)
    assert [d.id for d in kept] == EXPECTED[:3]


@pytest.mark.parametrize("top_n", [0, -2])
def test_top_n_below_one_rejected(top_n: int) -> None:
    with pytest.raises(ValueError, match="top_n must be a positive integer"):
        Rank1Rerank(top_n=top_n)


def test_ties_keep_input_order(client: Rank1Client) -> None:
    docs = [Document(id=f"same-{i}", page_content="ocean tides rise") for i in range(4)]
    out = Rank1Rerank(client=client).compress_documents(docs, QUERY)
    assert [d.id for d in out] == ["same-0", "same-1", "same-2", "same-3"]


def test_empty_input_sends_nothing(client: Rank1Client, server: FakeRank1Server) -> None:
    before = server.requests
    assert Rank1Rerank(client=client).compress_documents([], QUERY) == []
    assert server.requests == before


async def test_empty_input_async_sends_nothing(
    aclient: Rank1Client, server: FakeRank1Server
) -> None:
    before = server.requests
    assert await Rank1Rerank(client=aclient).acompress_documents([], QUERY) == []
    assert server.requests == before


def test_empty_query_rejected(client: Rank1Client, server: FakeRank1Server) -> None:
    before = server.requests
    with pytest.raises(ValueError, match="query must not be empty"):
        Rank1Rerank(client=client).compress_documents(corpus_documents(), "  ")
    assert server.requests == before


def with_failure() -> list[Document]:
    docs = corpus_documents()
    docs.insert(1, Document(id="d-bad", page_content=f"{FAIL_MARKER} ocean tides rise",
                            metadata={"source": "broken"}))
    return docs


async def test_on_error_keep_puts_failed_last(failing_client: Rank1Client) -> None:
    reranker = Rank1Rerank(client=failing_client, on_error="keep")
    docs = await reranker.acompress_documents(with_failure(), QUERY)
    assert [d.id for d in docs] == [*EXPECTED, "d-bad"]
    assert [d.metadata["rank1_judged"] for d in docs] == [True] * len(EXPECTED) + [False]
    limited = Rank1Rerank(client=failing_client, on_error="keep", top_n=2)
    assert [d.id for d in await limited.acompress_documents(with_failure(), QUERY)] == (
        EXPECTED[:2]  # the whole output respects top_n
    )
    bad = docs[-1]
    assert bad.metadata["source"] == "broken"
    assert bad.metadata["relevance_score"] is None and bad.metadata["rank1_relevant"] is None
    assert "500" in bad.metadata["rank1_error"] and "passage 1" in bad.metadata["rank1_error"]


async def test_on_error_drop_logs_the_dropped(
    failing_client: Rank1Client, caplog: pytest.LogCaptureFixture
) -> None:
    reranker = Rank1Rerank(client=failing_client, on_error="drop")
    with caplog.at_level(logging.WARNING, logger="rank1_integrations"):
        docs = await reranker.acompress_documents(with_failure(), QUERY)
    assert [d.id for d in docs] == EXPECTED
    assert "dropped 1 failed judgment(s), passages [1]" in caplog.text


class Recorder(BaseCallbackHandler):
    """Keeps the chain runs and texts it is told about."""

    def __init__(self) -> None:
        self.starts: list[tuple[str | None, dict[str, Any], UUID | None]] = []
        self.ends: list[Any] = []
        self.errors: list[BaseException] = []
        self.texts: list[str] = []

    def on_chain_start(self, serialized: Any, inputs: Any, *, parent_run_id: UUID | None = None,
                       **kwargs: Any) -> None:
        self.starts.append((kwargs.get("name"), inputs, parent_run_id))

    def on_chain_end(self, outputs: Any, **kwargs: Any) -> None:
        self.ends.append(outputs)

    def on_chain_error(self, error: BaseException, **kwargs: Any) -> None:
        self.errors.append(error)

    def on_text(self, text: str, **kwargs: Any) -> None:
        self.texts.append(text)


def test_callbacks_report_a_child_run(client: Rank1Client) -> None:
    retriever, _ = retriever_over(Rank1Rerank(client=client, top_n=1))
    recorder = Recorder()
    retriever.invoke(QUERY, config={"callbacks": [recorder]})
    (name, inputs, parent), = recorder.starts
    assert name == "Rank1Rerank" and parent is not None  # nested under the retriever run
    assert inputs == {"query": QUERY, "documents": len(CORPUS)}
    (outputs,) = recorder.ends
    assert len(outputs["judgments"]) == len(CORPUS)
    assert len(recorder.texts) == len(CORPUS)
    assert any("relevant (score" in t for t in recorder.texts)


async def test_callbacks_report_errors(failing_client: Rank1Client) -> None:
    recorder = Recorder()
    reranker = Rank1Rerank(client=failing_client)  # on_error: the client's "raise"
    with pytest.raises(JudgmentError, match="passage 1"):
        await reranker.acompress_documents(with_failure(), QUERY, callbacks=[recorder])
    assert len(recorder.errors) == 1 and isinstance(recorder.errors[0], JudgmentError)
    assert recorder.ends == []
