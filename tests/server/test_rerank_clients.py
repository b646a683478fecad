"""The rerank APIs of rank1-server through the real clients that speak them, against a
real server on loopback running the hand-wired demo model (P(true) follows the
query/passage word overlap, so every score is known): the cohere SDK (``ClientV2`` on
``/v2/rerank``, ``Client`` on ``/v1/rerank``), litellm (its Cohere provider on a custom
base, its ``hosted_vllm`` provider on ``/rerank``), LangChain's ``CohereRerank`` in a
``ContextualCompressionRetriever`` and LlamaIndex's ``CohereRerank`` in a
``VectorStoreIndex`` query engine; and each API's errors as each client's typed
exception."""

from __future__ import annotations

import asyncio
import os
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import cohere
import httpx
import pytest
from rank1_server.testing import running_server

from .rerank_support import EXPECTED, KEY, NO_RETRY, ORDER, QUERY, TEXTS

# litellm reads its model price list from the network unless told otherwise
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")


@pytest.fixture(scope="module")
def root(demo_model: Path) -> Iterator[str]:
    """The demo model behind an API key; yields the server's root URL (no /v1)."""
    with running_server(demo_model, parallel=4, n_ctx=2048, max_reasoning_tokens=64,
                        max_queue=16, api_key=KEY, model_name="rank1-demo") as url:
        yield url.removesuffix("/v1")


def _scores_match(results: list[tuple[int, float]], top_n: int) -> None:
    assert [i for i, _ in results] == ORDER[:top_n]
    for i, score in results:
        assert score == pytest.approx(EXPECTED[i], abs=2e-3)


def _hits(root: str, path: str) -> float:
    """How many 200 answers ``path`` gave (the server's request counter)."""
    text = httpx.get(f"{root}/metrics").text
    m = re.search(rf'^rank1_requests_total{{endpoint="{path}",status="200"}} ([0-9.]+)$',
                  text, re.M)
    return float(m.group(1)) if m else 0.0


def test_order_is_not_input_order() -> None:
    assert ORDER[:2] == [1, 2] and ORDER != sorted(ORDER)  # the tests below can fail


# ---------------------------------------------------------------------------- cohere SDK

def test_cohere_client_v2(root: str) -> None:
    co = cohere.ClientV2(api_key=KEY, base_url=root)
    before = _hits(root, "/v2/rerank")
    out = co.rerank(model="rank1-demo", query=QUERY, documents=TEXTS, top_n=3,
                    request_options=NO_RETRY)
    assert _hits(root, "/v2/rerank") == before + 1
    _scores_match([(r.index, r.relevance_score) for r in out.results], 3)
    assert out.id and out.meta is not None
    assert out.meta.api_version is not None and out.meta.api_version.version == "2"
    assert out.meta.billed_units is not None and out.meta.billed_units.search_units == 1
    assert out.meta.tokens is not None and (out.meta.tokens.input_tokens or 0) > 0
    # rank1's own fields ride along as extra keys the SDK keeps
    best = out.results[0]
    extra = best.model_extra or {}
    assert extra["relevant"] is True and extra["source"] == "answer_logprobs"
    assert isinstance(extra["reasoning"], str) and extra["reasoning"]
    assert "document" not in extra


def test_cohere_sdk_user_reads_the_reasoning_as_attributes(root: str) -> None:
    """What the README tells a cohere SDK user: rank1's keys are attributes of each result
    (the SDK's models keep unknown keys)."""
    co = cohere.ClientV2(api_key=KEY, base_url=root)
    out = co.rerank(model="rank1-demo", query=QUERY, documents=TEXTS, request_options=NO_RETRY)
    assert [r.index for r in out.results] == ORDER
    for r in out.results:
        fields = r.model_dump()
        assert set(fields) >= {"index", "relevance_score", "relevant", "reasoning", "source",
                               "truncated"}
        assert "document" not in fields  # never null: the key is not written at all
        assert r.relevant == (EXPECTED[r.index] > 0.5)  # type: ignore[attr-defined]
        assert isinstance(r.reasoning, str) and r.reasoning  # type: ignore[attr-defined]


def test_rank1_options_through_the_sdk_extra_body(root: str) -> None:
    """rank1's own options reach /v2/rerank through the SDK's extra body parameters."""
    co = cohere.ClientV2(api_key=KEY, base_url=root)
    out = co.rerank(model="m", query=QUERY, documents=TEXTS[1:2], request_options={
        "max_retries": 0, "additional_body_parameters": {"max_reasoning_tokens": 3}})
    r = out.results[0]
    # a 3-token budget cannot reach the demo chain's answer: the forced answer decides
    assert r.reasoning_tokens == 3 and r.source == "forced_answer"  # type: ignore[attr-defined]


def test_max_tokens_per_doc_cuts_the_passage(root: str) -> None:
    co = cohere.ClientV2(api_key=KEY, base_url=root)
    whole = co.rerank(model="m", query=QUERY, documents=TEXTS[1:2], request_options=NO_RETRY)
    cut = co.rerank(model="m", query=QUERY, documents=TEXTS[1:2], max_tokens_per_doc=2,
                    request_options=NO_RETRY)
    assert (whole.results[0].model_extra or {})["truncated"] is False
    assert (cut.results[0].model_extra or {})["truncated"] is True
    # two tokens of the passage leave less overlap with the query: a lower score
    assert cut.results[0].relevance_score < whole.results[0].relevance_score


def test_cohere_client_v1_documents_and_rank_fields(root: str) -> None:
    co = cohere.Client(api_key=KEY, base_url=root)
    out = co.rerank(model="rank1-demo", query=QUERY, documents=TEXTS, top_n=2,
                    return_documents=True, request_options=NO_RETRY)
    _scores_match([(r.index, r.relevance_score) for r in out.results], 2)
    assert [r.document.text for r in out.results if r.document] == [TEXTS[i] for i in ORDER[:2]]
    assert out.meta is not None and out.meta.api_version is not None
    assert out.meta.api_version.version == "1"
    bare = co.rerank(query=QUERY, documents=TEXTS, return_documents=False,
                     request_options=NO_RETRY)
    assert all(r.document is None for r in bare.results)
    # structured documents: judged on the rank_fields, given back whole
    objects = [{"body": t, "id": f"doc-{i}"} for i, t in enumerate(TEXTS)]
    out = co.rerank(query=QUERY, documents=objects,  # type: ignore[arg-type]
                    rank_fields=["body"], return_documents=True, request_options=NO_RETRY)
    assert [r.index for r in out.results] == ORDER
    for r in out.results:
        assert r.relevance_score == pytest.approx(EXPECTED[r.index], abs=2e-3)
        assert r.document is not None
        assert r.document.model_dump(exclude_none=True) == objects[r.index]


# ---------------------------------------------------------------------------- litellm

@pytest.mark.parametrize("base,path", [("", "/v2/rerank"), ("/v1/rerank", "/v1/rerank")])
def test_litellm_cohere_provider_on_a_custom_base(root: str, base: str, path: str) -> None:
    """litellm's Cohere provider calls v2 on a bare base, v1 on a base ending /v1/rerank."""
    import litellm

    before = _hits(root, path)
    out = litellm.rerank(model="cohere/rank1-demo", query=QUERY, documents=TEXTS, top_n=3,
                         api_base=root + base, api_key=KEY)
    assert _hits(root, path) == before + 1
    results = out.results or []
    _scores_match([(r["index"], r["relevance_score"]) for r in results], 3)


def test_litellm_hosted_vllm_provider(root: str) -> None:
    import litellm

    before = _hits(root, "/rerank")
    out = litellm.rerank(model="hosted_vllm/rank1-demo", query=QUERY, documents=TEXTS,
                         top_n=2, api_base=root, api_key=KEY)
    assert _hits(root, "/rerank") == before + 1
    results = out.results or []
    _scores_match([(r["index"], r["relevance_score"]) for r in results], 2)
    for r in results:
        document = r.get("document")
        assert document is None or document.get("text") == TEXTS[r["index"]]


# ---------------------------------------------------------------------------- frameworks

def test_langchain_cohere_rerank_in_a_compression_retriever(root: str) -> None:
    from langchain_classic.retrievers import ContextualCompressionRetriever
    from langchain_cohere import CohereRerank
    from langchain_core.documents import Document
    from langchain_core.embeddings import DeterministicFakeEmbedding
    from langchain_core.vectorstores import InMemoryVectorStore

    store = InMemoryVectorStore(DeterministicFakeEmbedding(size=16))
    store.add_documents([Document(page_content=t, metadata={"i": i})
                         for i, t in enumerate(TEXTS)])
    retriever = ContextualCompressionRetriever(
        base_compressor=CohereRerank(model="rank1-demo", base_url=root, cohere_api_key=KEY,
                                     top_n=2),
        base_retriever=store.as_retriever(search_kwargs={"k": len(TEXTS)}),
    )
    before = _hits(root, "/v2/rerank")
    docs = retriever.invoke(QUERY)
    assert _hits(root, "/v2/rerank") == before + 1
    assert [d.metadata["i"] for d in docs] == ORDER[:2]
    for d in docs:
        assert d.metadata["relevance_score"] == pytest.approx(EXPECTED[d.metadata["i"]],
                                                              abs=2e-3)


def test_llama_index_cohere_rerank_in_a_query_engine(root: str) -> None:
    from llama_index.core import VectorStoreIndex
    from llama_index.core.embeddings import MockEmbedding
    from llama_index.core.llms import MockLLM
    from llama_index.core.schema import TextNode
    from llama_index.postprocessor.cohere_rerank import CohereRerank

    nodes = [TextNode(text=t, id_=f"n{i}") for i, t in enumerate(TEXTS)]
    index = VectorStoreIndex(nodes, embed_model=MockEmbedding(embed_dim=8))
    engine = index.as_query_engine(
        similarity_top_k=len(TEXTS), llm=MockLLM(),
        node_postprocessors=[CohereRerank(top_n=2, model="rank1-demo", api_key=KEY,
                                          base_url=root)],
    )
    before = _hits(root, "/v2/rerank")
    response = engine.query(QUERY)
    assert _hits(root, "/v2/rerank") == before + 1
    got = [int(n.node.node_id[1:]) for n in response.source_nodes]
    assert got == ORDER[:2]
    for n in response.source_nodes:
        assert n.score == pytest.approx(EXPECTED[int(n.node.node_id[1:])], abs=2e-3)
    assert TEXTS[ORDER[0]] in str(response)  # MockLLM echoes the context it was given


# ---------------------------------------------------------------------------- errors

def test_401_without_the_key_is_unauthorized(root: str) -> None:
    for path in ("/v2/rerank", "/v1/rerank"):
        r = httpx.post(f"{root}{path}", json={"query": QUERY, "documents": TEXTS})
        assert r.status_code == 401 and "API key" in r.json()["message"]
    # /v1/rerank writes OpenAI's error object too (rank1's client reads it); /rerank only it
    r = httpx.post(f"{root}/v1/rerank", json={"query": QUERY, "documents": TEXTS})
    assert r.json()["error"]["code"] == "invalid_api_key"
    r = httpx.post(f"{root}/rerank", json={"query": QUERY, "documents": TEXTS})
    assert r.status_code == 401 and set(r.json()) == {"error"}
    assert r.json()["error"]["code"] == "invalid_api_key"
    with pytest.raises(cohere.UnauthorizedError) as v2:
        cohere.ClientV2(api_key="wrong", base_url=root).rerank(
            model="m", query=QUERY, documents=TEXTS, request_options=NO_RETRY)
    assert "API key" in v2.value.body["message"]
    with pytest.raises(cohere.UnauthorizedError):
        cohere.Client(api_key="wrong", base_url=root).rerank(
            query=QUERY, documents=TEXTS, request_options=NO_RETRY)


def test_400_bad_request_names_the_culprit(root: str) -> None:
    co = cohere.ClientV2(api_key=KEY, base_url=root)
    with pytest.raises(cohere.BadRequestError) as bad:
        co.rerank(model="m", query=QUERY, documents=TEXTS, top_n=0, request_options=NO_RETRY)
    assert bad.value.status_code == 400 and bad.value.body["param"] == "top_n"
    with pytest.raises(cohere.BadRequestError) as blank:
        co.rerank(model="m", query="  ", documents=TEXTS, request_options=NO_RETRY)
    assert "blank" in blank.value.body["message"]
    # a query that leaves no room for a passage: 400 on both Cohere paths
    with pytest.raises(cohere.BadRequestError) as long_v1:
        cohere.Client(api_key=KEY, base_url=root).rerank(
            query="bees " * 2500, documents=TEXTS, request_options=NO_RETRY)
    assert long_v1.value.body["code"] == "context_length_exceeded"
    assert long_v1.value.body["error"]["code"] == "context_length_exceeded"  # OpenAI's too
    # v1 keeps FastAPI's / Jina's 422 for a body its schema refuses, naming the document
    with pytest.raises(cohere.UnprocessableEntityError) as missing:
        cohere.Client(api_key=KEY, base_url=root).rerank(
            query=QUERY, documents=[{"body": "x"}], rank_fields=["title"],  # type: ignore[list-item]
            request_options=NO_RETRY)
    assert "documents.0 has no field 'title'" in missing.value.body["message"]


def test_413_too_many_documents(root: str) -> None:
    with pytest.raises(cohere.core.ApiError) as big:
        cohere.ClientV2(api_key=KEY, base_url=root).rerank(
            model="m", query=QUERY, documents=["a"] * 17, request_options=NO_RETRY)
    assert big.value.status_code == 413 and big.value.body["param"] == "documents"


async def test_429_with_retry_after_when_the_queue_is_full(slow_model: Path) -> None:
    with running_server(slow_model, parallel=1, n_ctx=4096, max_queue=1, api_key=KEY) as url:
        headers = {"Authorization": f"Bearer {KEY}"}
        long = {"query": "q", "documents": ["a"], "max_reasoning_tokens": 3900}
        async with httpx.AsyncClient(base_url=url, headers=headers, timeout=120) as http:
            running = asyncio.ensure_future(http.post("/rerank", json=long))
            waiting = asyncio.ensure_future(http.post("/rerank", json=long))
            root = url.removesuffix("/v1")
            deadline = time.monotonic() + 30
            while httpx.get(f"{root}/health").json().get("queue_depth") != 1:
                assert time.monotonic() < deadline, "the queue never filled"
                await asyncio.sleep(0.02)
            co = cohere.AsyncClientV2(api_key=KEY, base_url=root)
            with pytest.raises(cohere.TooManyRequestsError) as busy:
                await co.rerank(model="m", query="q", documents=["a"],
                                request_options=NO_RETRY)
            assert busy.value.headers is not None and busy.value.headers["retry-after"] == "1"
            assert "busy" in busy.value.body["message"]
            running.cancel()
            waiting.cancel()
            await asyncio.gather(running, waiting, return_exceptions=True)


def test_503_when_the_model_is_not_loaded(tmp_path: Path) -> None:
    import uvicorn
    from rank1_server.app import ServerConfig, create_app

    from rank1_integrations._spawn import free_port

    app = create_app(ServerConfig(model_path=str(tmp_path / "missing.gguf"), api_key=KEY))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="critical", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    root = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{root}/health").json().get("status") == "error":
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the server never reported its load error"
            time.sleep(0.05)
        with pytest.raises(cohere.ServiceUnavailableError) as down:
            cohere.ClientV2(api_key=KEY, base_url=root).rerank(
                model="m", query=QUERY, documents=TEXTS, request_options=NO_RETRY)
        assert "failed to load" in down.value.body["message"]
    finally:
        server.should_exit = True
        thread.join(timeout=30)
