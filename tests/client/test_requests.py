"""What the client sends, and how it retries (respx-mocked HTTP)."""

from __future__ import annotations

import time

import httpx
import openai
import pytest
import respx

from rank1_integrations import JudgmentError, Rank1Client

from .rank1_payloads import BASE_URL, body_of, http_client, prompt_for, vllm_completion

URL = f"{BASE_URL}/completions"
OK = httpx.Response(200, json=vllm_completion())


def make_client(**kwargs) -> Rank1Client:
    kwargs.setdefault("cache", None)
    kwargs.setdefault("retry_backoff", 0.01)
    kwargs.setdefault("client", http_client())
    return Rank1Client(BASE_URL, api_key="sk-test", model="jhu-clsp/rank1-7b", **kwargs)


@respx.mock
async def test_completions_body(respx_mock: respx.MockRouter) -> None:
    route = respx_mock.post(URL).mock(return_value=OK)
    await make_client(max_reasoning_tokens=777).ajudge("q {x} 100%", "p\n</think> true")
    request = route.calls[0].request
    body = body_of(request)
    assert body["prompt"] == prompt_for("q {x} 100%", "p\n</think> true")  # raw, no template
    assert body["model"] == "jhu-clsp/rank1-7b"
    assert body["temperature"] == 0
    assert body["logprobs"] == 20
    assert body["max_tokens"] == 777
    assert body["stop"] == ["</think> true", "</think> false"]
    assert body["skip_special_tokens"] is False
    assert "extra_body" not in body  # merged into the body, not sent as a field
    assert "messages" not in body and not body.get("stream")
    assert request.headers["authorization"] == "Bearer sk-test"


@respx.mock
async def test_sdk_retries_are_off(respx_mock: respx.MockRouter) -> None:
    route = respx_mock.post(URL).mock(return_value=httpx.Response(503, json={"error": "down"}))
    with pytest.raises(JudgmentError):
        await make_client(max_retries=0).ajudge("q", "p")
    assert route.call_count == 1  # the SDK did not retry on its own


@respx.mock
async def test_429_with_retry_after_seconds(respx_mock: respx.MockRouter) -> None:
    times: list[float] = []

    def answer(request: httpx.Request) -> httpx.Response:
        times.append(time.monotonic())
        if len(times) == 1:
            return httpx.Response(429, headers={"Retry-After": "0.3"},
                                  json={"error": {"message": "slow down"}})
        return OK

    respx_mock.post(URL).mock(side_effect=answer)
    judgment = await make_client().ajudge("q", "p")
    assert judgment.ok and len(times) == 2
    # the backoff alone would wait ~0.01-0.03 s: the server's 0.3 s was honoured
    assert times[1] - times[0] >= 0.29


@respx.mock
async def test_429_with_retry_after_ms(respx_mock: respx.MockRouter) -> None:
    times: list[float] = []

    def answer(request: httpx.Request) -> httpx.Response:
        times.append(time.monotonic())
        if len(times) == 1:
            return httpx.Response(429, headers={"retry-after-ms": "250"}, json={})
        return OK

    respx_mock.post(URL).mock(side_effect=answer)
    assert (await make_client().ajudge("q", "p")).ok
    assert times[1] - times[0] >= 0.24


@respx.mock
async def test_500_then_success(respx_mock: respx.MockRouter) -> None:
    route = respx_mock.post(URL).mock(side_effect=[
        httpx.Response(500, json={"error": "boom"}), httpx.Response(502), OK])
    judgment = await make_client().ajudge("q", "p")
    assert judgment.ok and route.call_count == 3


@respx.mock
async def test_timeout_then_success(respx_mock: respx.MockRouter) -> None:
    route = respx_mock.post(URL).mock(side_effect=[httpx.ReadTimeout("slow"), OK])
    judgment = await make_client().ajudge("q", "p")
    assert judgment.ok and route.call_count == 2


@respx.mock
async def test_connection_error_then_success(respx_mock: respx.MockRouter) -> None:
    route = respx_mock.post(URL).mock(side_effect=[httpx.ConnectError("refused"), OK])
    assert (await make_client().ajudge("q", "p")).ok
    assert route.call_count == 2


@pytest.mark.parametrize("status", [400, 401, 404, 422])
@respx.mock
async def test_client_errors_are_not_retried(respx_mock: respx.MockRouter, status: int) -> None:
    route = respx_mock.post(URL).mock(
        return_value=httpx.Response(status, json={"error": {"message": "bad"}}))
    with pytest.raises(JudgmentError) as info:
        await make_client(max_retries=3).ajudge("q", "p")
    assert route.call_count == 1
    assert isinstance(info.value.__cause__, openai.APIStatusError)
    assert info.value.__cause__.status_code == status


@respx.mock
async def test_last_try_names_the_failing_passage(respx_mock: respx.MockRouter) -> None:
    calls: dict[str, int] = {}

    def answer(request: httpx.Request) -> httpx.Response:
        passage = body_of(request)["prompt"].split("\nPassage: ")[1].split("\n")[0]
        calls[passage] = calls.get(passage, 0) + 1
        if passage == "doc-2":
            return httpx.Response(500, json={"error": "internal"})
        return OK

    respx_mock.post(URL).mock(side_effect=answer)
    client = make_client(max_retries=2)
    with pytest.raises(JudgmentError) as info:
        await client.arerank("q", ["doc-0", "doc-1", "doc-2", "doc-3"])
    assert info.value.index == 2
    assert "passage 2" in str(info.value)
    assert isinstance(info.value.__cause__, openai.InternalServerError)
    assert calls["doc-2"] == 3  # the first try and max_retries=2 more


@respx.mock
def test_sync_judge_retries_too(respx_mock: respx.MockRouter) -> None:
    route = respx_mock.post(URL).mock(side_effect=[httpx.Response(500), OK])
    with make_client() as client:
        assert client.judge("q", "p").ok
    assert route.call_count == 2


@pytest.mark.parametrize("value", ["soon", "Wed, 21 Oct 2015 07:28:00 GMT", ""])
@respx.mock
async def test_odd_retry_after_values_still_retry(
    respx_mock: respx.MockRouter, value: str
) -> None:
    """An unparseable Retry-After falls back to the backoff; a date in the past is 0 s."""
    route = respx_mock.post(URL).mock(side_effect=[
        httpx.Response(503, headers={"Retry-After": value}, json={}), OK])
    started = time.monotonic()
    assert (await make_client().ajudge("q", "p")).ok
    assert route.call_count == 2
    assert time.monotonic() - started < 5


@respx.mock
async def test_retry_after_is_capped(respx_mock: respx.MockRouter) -> None:
    from rank1_integrations._retry import MAX_RETRY_AFTER, retry_after_seconds

    response = httpx.Response(429, headers={"Retry-After": "86400"},
                              request=httpx.Request("POST", URL))
    error = openai.RateLimitError("slow", response=response, body=None)
    assert retry_after_seconds(error) == MAX_RETRY_AFTER == 60.0


@respx.mock
async def test_instruction_reaches_the_prompt(respx_mock: respx.MockRouter) -> None:
    route = respx_mock.post(URL).mock(return_value=OK)
    client = make_client(instruction="Relevant: {query} (a definition)")
    await client.ajudge("tides", "p")
    await client.arerank("tides", ["p2"], instruction="Only causes count.")
    await client.ajudge("tides", "p3", instruction="")
    prompts = [body_of(c.request)["prompt"] for c in route.calls]
    assert prompts == [
        prompt_for("Relevant: tides (a definition)", "p"),
        prompt_for("tides Only causes count.", "p2"),
        prompt_for("tides", "p3"),
    ]


@respx.mock
async def test_sync_rerank_inside_a_running_event_loop(respx_mock: respx.MockRouter) -> None:
    """The sync API called from code that already runs an event loop (a sync framework
    hook inside an async app) runs on the client's own loop instead of failing."""
    respx_mock.post(URL).mock(return_value=OK)
    with make_client() as client:
        judgments = client.rerank("q", ["a", "b"])
    assert [j.index for j in judgments] == [0, 1]


@pytest.mark.parametrize("response", [
    # cut mid-body
    httpx.Response(200, content=b'{"id": "cmpl-1", "choices": [{"text": "The',
                   headers={"content-type": "application/json"}),
    # a proxy's page instead of the server's JSON
    httpx.Response(200, content=b"<html><body>Gateway busy</body></html>",
                   headers={"content-type": "text/html"}),
    httpx.Response(200, content=b"", headers={"content-type": "application/json"}),
])
@respx.mock
async def test_200_that_is_not_json_is_retried(
    respx_mock: respx.MockRouter, response: httpx.Response
) -> None:
    route = respx_mock.post(URL).mock(side_effect=[response, OK])
    judgment = await make_client().ajudge("q", "p")
    assert judgment.ok and route.call_count == 2


@respx.mock
async def test_200_that_is_never_json_fails_after_the_retries(
    respx_mock: respx.MockRouter,
) -> None:
    from rank1_integrations.errors import BadResponseError

    route = respx_mock.post(URL).mock(return_value=httpx.Response(
        200, content=b"<html>busy</html>", headers={"content-type": "text/html"}))
    judgments = await make_client(max_retries=2, on_error="keep").arerank("q", ["p"])
    assert route.call_count == 3
    assert judgments[0].score is None and "not JSON" in judgments[0].error
    with pytest.raises(JudgmentError) as info:
        await make_client(max_retries=0).ajudge("q", "p")
    assert isinstance(info.value.__cause__, BadResponseError)


@respx.mock
async def test_json_with_another_content_type_is_read(respx_mock: respx.MockRouter) -> None:
    import json

    route = respx_mock.post(URL).mock(return_value=httpx.Response(
        200, content=json.dumps(vllm_completion()).encode(),
        headers={"content-type": "text/plain"}))
    assert (await make_client().ajudge("q", "p")).ok
    assert route.call_count == 1


def _cut_streams() -> list[bytes]:
    from .rank1_payloads import llama_server_sse

    good = llama_server_sse()
    second = good.index(b"data: ", 10)
    return [
        good[: second + 40],  # cut mid-chunk: the SSE parser drops the partial event
        good[:second],  # cut between chunks, before the last one and [DONE]
        good[:second] + b'data: {"choices": [{"te\n\n' + good[second:],  # not JSON
    ]


@pytest.mark.parametrize("cut", _cut_streams())
@respx.mock
async def test_cut_stream_is_retried(respx_mock: respx.MockRouter, cut: bytes) -> None:
    from .rank1_payloads import llama_server_sse, sse_response

    responses = [sse_response(cut), sse_response(llama_server_sse())]
    route = respx_mock.post(URL).mock(side_effect=lambda request: responses.pop(0))
    client = make_client()
    client.transport.stream = True  # llama-server, known to need streaming
    judgment = await client.ajudge("q", "p")
    assert judgment.ok and route.call_count == 2
