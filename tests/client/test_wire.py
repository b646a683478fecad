"""The /v1/rerank wire model both sides use: a server judgment written as a result item
reads back as the same judgment; another host's item is refused."""

from __future__ import annotations

import pytest

from rank1_integrations.errors import Rank1Error
from rank1_integrations.judgment import Judgment
from rank1_integrations.protocol import VerdictSource
from rank1_integrations.wire import (
    COHERE_CHUNK_TOKENS,
    CohereMeta,
    CohereV1RerankRequest,
    CohereV2RerankRequest,
    RerankDocument,
    RerankRequest,
    RerankResponse,
    RerankResult,
)


def judgment(**fields) -> Judgment:
    base = dict(index=3, relevant=False, score=0.25, reasoning="because", reasoning_tokens=11,
                prompt_tokens=57, source=VerdictSource.FORCED_ANSWER, score_estimated=False,
                truncated=True)
    return Judgment(**{**base, **fields})


def test_result_item_round_trip() -> None:
    j = judgment()
    item = RerankResult.from_judgment(j, reasoning_budget=64)
    wire = item.wire()
    assert wire == {
        "index": 3, "relevance_score": 0.25, "relevant": False, "reasoning": "because",
        "source": "forced_answer", "score_estimated": False, "truncated": True,
        "reasoning_tokens": 11, "prompt_tokens": 57, "reasoning_budget": 64,
    }
    assert RerankResult.model_validate(wire).to_judgment(3) == j


def test_document_is_written_only_when_given() -> None:
    j = judgment()
    plain = RerankResult.from_judgment(j, reasoning_budget=1, document=RerankDocument(text="t"))
    assert plain.wire()["document"] == {"text": "t"}
    assert "document" not in RerankResult.from_judgment(j, reasoning_budget=1).wire()
    titled = RerankResult.from_judgment(
        j, reasoning_budget=1, document=RerankDocument(text="t", title="T")).wire()
    assert titled["document"] == {"text": "t", "title": "T"}


def test_client_cut_and_missing_fields() -> None:
    item = RerankResult.model_validate(
        {"index": 0, "relevance_score": 0.75, "source": "answer_logprobs"})
    got = item.to_judgment(5, truncated=True)
    assert (got.index, got.relevant, got.score, got.truncated) == (5, True, 0.75, True)
    assert got.reasoning == "" and got.reasoning_tokens == 0 and not got.score_estimated


def test_foreign_result_is_refused() -> None:
    item = RerankResult.model_validate({"index": 0, "relevance_score": 0.7,
                                        "document": {"text": "x"}})
    with pytest.raises(Rank1Error, match="not rank1-server's"):
        item.to_judgment(0)


def test_request_and_response_shapes() -> None:
    body = RerankRequest(query="q", documents=["a", RerankDocument(text="b", title="T")],
                         return_documents=False, max_reasoning_tokens=8).model_dump(
                             exclude_none=True)
    assert body == {"query": "q", "documents": ["a", {"text": "b", "title": "T"}],
                    "return_documents": False, "max_reasoning_tokens": 8}
    with pytest.raises(ValueError, match="blank"):
        RerankRequest(query="  ", documents=[])
    response = RerankResponse.model_validate({"results": [
        {"index": 1, "relevance_score": 0.5, "source": "text_only"}], "usage": {"total_tokens": 3}})
    assert response.results[0].to_judgment(1).source is VerdictSource.TEXT_ONLY


def test_cohere_v1_documents_and_rank_fields() -> None:
    plain = CohereV1RerankRequest(query="q", documents=["a", {"text": "b", "title": "T"}])
    assert plain.passages() == [("a", None), ("b", "T")]
    assert plain.returned_document(1) == {"text": "b", "title": "T"}
    assert plain.returned_document(0) == {"text": "a"} and plain.max_passage_tokens() is None
    fields = CohereV1RerankRequest(
        query="q", documents=[{"title": "T", "body": "B", "id": 7}, "s"],
        rank_fields=["title", "body"], max_chunks_per_doc=2)
    assert fields.passages() == [("title: T\nbody: B", None), ("s", None)]
    assert fields.returned_document(0) == {"title": "T", "body": "B", "id": 7}  # as given
    assert fields.max_passage_tokens() == 2 * COHERE_CHUNK_TOKENS
    one = CohereV1RerankRequest(query="q", documents=[{"body": "B"}], rank_fields=["body"])
    assert one.passages() == [("B", None)]
    with pytest.raises(ValueError, match=r"documents.1 has no field 'text'"):
        CohereV1RerankRequest(query="q", documents=["a", {"body": "B"}])
    with pytest.raises(ValueError, match=r"documents.0 has a non-text field 'n'"):
        CohereV1RerankRequest(query="q", documents=[{"n": 3}], rank_fields=["n"])


def test_cohere_v2_request_and_meta() -> None:
    with pytest.raises(ValueError, match="blank"):
        CohereV2RerankRequest(query=" ", documents=["a"])
    with pytest.raises(ValueError, match="top_n"):
        CohereV2RerankRequest(query="q", documents=["a"], top_n=0)
    meta = CohereMeta.of("2", documents=101, input_tokens=5, output_tokens=7).model_dump()
    assert meta == {"api_version": {"version": "2"}, "billed_units": {"search_units": 2},
                    "tokens": {"input_tokens": 5, "output_tokens": 7}}
    assert CohereMeta.of("1", 0, 0, 0).billed_units == {"search_units": 1}
