"""``Rank1Client(mode="rerank")``'s HTTP edge cases (respx): what it sends, and what it does
with answers the real server never gives (a foreign /rerank, a missing result, 429)."""

from __future__ import annotations

import json

import httpx
import pytest
import respx

from rank1_integrations import JudgmentError, Rank1Client
from rank1_integrations.protocol import VerdictSource

BASE = "http://rank1.test/v1"
URL = f"{BASE}/rerank"


def result(index: int, score: float, **extra) -> dict:
    return {"index": index, "relevance_score": score, "relevant": score >= 0.5,
            "reasoning": f"r{index}", "source": "answer_logprobs", "score_estimated": False,
            "truncated": False, "reasoning_tokens": 7, **extra}


def client(**kwargs) -> Rank1Client:
    kwargs.setdefault("retry_backoff", 0.01)
    return Rank1Client(BASE, mode="rerank", client=httpx.AsyncClient(), cache=None, **kwargs)


@respx.mock
async def test_streamed_only_when_someone_acts_on_each_verdict(
    respx_mock: respx.MockRouter,
) -> None:
    """A plain call asks for the whole answer (reading a stream costs client CPU per
    reasoning event, for nothing); an iterator, a callback or a budget asks for the
    stream."""
    route = respx_mock.post(URL).mock(return_value=httpx.Response(200, json={
        "results": [result(0, 0.9)]}))
    c = client()
    await c.arerank("q", ["a"])
    await c.ajudge_many([("q", ["a"])])
    await c.arerank("q", ["a"], on_judgment=lambda j: None)
    [j async for j in c.arerank_iter("q", ["a"])]
    await c.arerank("q", ["a"], deadline=60.0)
    await c.arerank("q", ["a"], stop_after_relevant=1)
    await c.ajudge_many([("q", ["a"])], on_judgment=lambda n, j: None)
    assert [json.loads(call.request.content).get("stream") for call in route.calls] == [
        None, None, True, True, True, True, True]


@respx.mock
async def test_one_request_per_query_in_input_order(respx_mock: respx.MockRouter) -> None:
    route = respx_mock.post(URL).mock(return_value=httpx.Response(200, json={
        "results": [result(1, 0.9, truncated=True), result(0, 0.2)]}))
    c = client(instruction="Relevant means on-topic.", max_reasoning_tokens=99,
               max_passage_chars=10)
    judgments = await c.ajudge_all("q", ["short", {"text": "a long passage here", "title": "T"}])
    assert route.call_count == 1
    sent = json.loads(route.calls[0].request.content)
    assert sent["query"] == "q" and sent["instruction"] == "Relevant means on-topic."
    assert sent["max_reasoning_tokens"] == 99 and sent["return_documents"] is False
    assert sent["documents"][0] == "short"
    assert sent["documents"][1]["title"] == "T" and len(sent["documents"][1]["text"]) <= 10
    assert [j.index for j in judgments] == [0, 1]
    assert [j.score for j in judgments] == [0.2, 0.9]
    assert judgments[1].truncated and judgments[1].relevant  # cut by the client, or the server
    assert judgments[0].source is VerdictSource.ANSWER_LOGPROBS
    assert judgments[0].reasoning == "r0" and judgments[0].reasoning_tokens == 7


@respx.mock
async def test_a_foreign_rerank_endpoint_is_refused(respx_mock: respx.MockRouter) -> None:
    respx_mock.post(URL).mock(return_value=httpx.Response(200, json={
        "results": [{"index": 0, "relevance_score": 0.7}]}))  # vLLM/Jina: no rank1 fields
    with pytest.raises(JudgmentError, match="not rank1-server's"):
        await client(max_retries=0).arerank("q", ["p"])


@respx.mock
async def test_a_missing_result_fails_that_call(respx_mock: respx.MockRouter) -> None:
    respx_mock.post(URL).mock(return_value=httpx.Response(200, json={
        "results": [result(0, 0.6)]}))
    with pytest.raises(JudgmentError, match="no result for document 1"):
        await client(max_retries=0).arerank("q", ["a", "b"])
    kept = await client(max_retries=0, on_error="keep").arerank("q", ["a", "b"])
    assert all(j.error and j.score is None for j in kept)
    # reported as they land (streamed, or a JSON answer to a stream): the verdict that
    # came stays (a fault in one passage never takes the others down)
    kept = await client(max_retries=0, on_error="keep").ajudge_all(
        "q", ["a", "b"], on_judgment=lambda j: None)
    assert kept[0].score == 0.6 and kept[0].error is None
    assert kept[1].error and kept[1].score is None


@respx.mock
async def test_queue_full_is_retried(respx_mock: respx.MockRouter) -> None:
    busy = httpx.Response(429, headers={"Retry-After": "0"}, json={"error": {
        "message": "busy", "type": "rate_limit_error", "param": None, "code": "queue_full"}})
    route = respx_mock.post(URL).mock(side_effect=[busy, httpx.Response(200, json={
        "results": [result(0, 0.8)]})])
    (j,) = await client(max_retries=2).arerank("q", ["p"])
    assert route.call_count == 2 and j.score == 0.8


def sse(*events: dict) -> httpx.Response:
    body = "".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n" for e in events)
    return httpx.Response(200, headers={"content-type": "text/event-stream"},
                          content=body.encode())


def streamed(index: int, score: float) -> dict:
    return {"type": "result", "result": result(index, score)}


DONE = {"type": "done", "id": "r", "model": "m", "ranking": [], "usage": {}}


@respx.mock
async def test_a_stream_cut_short_resends_only_the_missing_documents(
    respx_mock: respx.MockRouter,
) -> None:
    route = respx_mock.post(URL).mock(side_effect=[
        sse({"type": "reasoning", "index": 1, "delta": "hm"}, streamed(1, 0.9)),  # no done
        sse(streamed(1, 0.3), streamed(0, 0.2), DONE),
    ])
    landed: list[int] = []
    judgments = await client(max_retries=2).ajudge_all(
        "q", ["a", "b", "c"], on_judgment=lambda j: landed.append(j.index))
    assert route.call_count == 2
    assert [json.loads(c.request.content)["documents"] for c in route.calls] == [
        ["a", "b", "c"], ["a", "c"]]
    assert all(json.loads(c.request.content)["stream"] is True for c in route.calls)
    assert landed == [1, 2, 0]  # as they arrived; the second request's 1 is input 2
    assert [j.score for j in judgments] == [0.2, 0.9, 0.3]
    assert sum(j.requests for j in judgments) == 2


@respx.mock
async def test_an_error_event_is_retried_then_names_the_passages(
    respx_mock: respx.MockRouter,
) -> None:
    error = {"type": "error", "error": {"message": "engine failed", "type": "server_error",
                                        "param": None, "code": None}}
    route = respx_mock.post(URL).mock(side_effect=[
        sse(streamed(0, 0.8), error), sse(error)])
    kept = await client(max_retries=1, on_error="keep").ajudge_all(
        "q", ["a", "b"], on_judgment=lambda j: None)
    assert route.call_count == 2
    assert kept[0].score == 0.8 and kept[1].score is None
    assert "engine failed" in (kept[1].error or "")
