"""Greedy on every server, yet every judgment on a strict host.

The client sends OpenAI's own sampling fields at their greedy values and, in the body's
extras, each server's own penalty/sampler fields at neutral values. A strict host refuses
fields outside OpenAI's API with a 400 (OpenAI: "Unrecognized request argument supplied: X";
pydantic with ``extra="forbid"``: "extra_forbidden"); the client then sends without the
field, and never again to that host.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
import respx

from rank1_integrations import JudgmentError, Rank1Client
from rank1_integrations.protocol import VerdictSource

from .rank1_payloads import (
    BASE_URL,
    FALSE_ID,
    TRUE_ID,
    LoopbackServer,
    body_of,
    chat_reply,
    http_client,
    sigmoid_of,
    vllm_completion,
    vllm_forced,
)

URL = f"{BASE_URL}/completions"

#: The request fields of OpenAI's legacy completions and chat completions APIs.
OPENAI_COMPLETIONS = {
    "model", "prompt", "best_of", "echo", "frequency_penalty", "logit_bias", "logprobs",
    "max_tokens", "n", "presence_penalty", "seed", "stop", "stream", "stream_options",
    "suffix", "temperature", "top_p", "user",
}
OPENAI_CHAT = {
    "messages", "model", "frequency_penalty", "logit_bias", "logprobs", "top_logprobs",
    "max_tokens", "max_completion_tokens", "n", "presence_penalty", "seed", "stop",
    "stream", "stream_options", "temperature", "top_p", "user", "response_format",
}
#: What neutralises each server's defaults (see transports/completions.py GREEDY*).
NEUTRAL = {
    "temperature": 0, "top_p": 1.0, "presence_penalty": 0.0, "frequency_penalty": 0.0,
    "repetition_penalty": 1.0, "repeat_penalty": 1.0, "dry_multiplier": 0.0,
    "xtc_probability": 0.0, "typical_p": 1.0,
}
CUT = ["The", " query", " asks", " about", " tides", ".", " The", " passage"]


def make_client(**kwargs: Any) -> Rank1Client:
    kwargs.setdefault("cache", None)
    kwargs.setdefault("retry_backoff", 0.01)
    kwargs.setdefault("client", http_client())
    return Rank1Client(BASE_URL, model="rank1", **kwargs)


def openai_refusal(unknown: list[str]) -> httpx.Response:
    """OpenAI's answer to unknown fields."""
    if len(unknown) == 1:
        message = f"Unrecognized request argument supplied: {unknown[0]}"
    else:
        message = f"Unrecognized request arguments supplied: {', '.join(sorted(unknown))}"
    return httpx.Response(400, json={"error": {
        "message": message, "type": "invalid_request_error", "param": None, "code": None}})


def pydantic_refusal(unknown: list[str], status: int = 400) -> httpx.Response:
    """A FastAPI/pydantic host with ``extra="forbid"`` (vLLM's handler turns the 422 into a
    400 whose message is the validation error's text)."""
    detail = [{"type": "extra_forbidden", "loc": ["body", name],
               "msg": "Extra inputs are not permitted", "input": None} for name in unknown]
    if status == 422:
        return httpx.Response(422, json={"detail": detail})
    return httpx.Response(400, json={"object": "error", "message": str(detail),
                                     "type": "BadRequestError", "param": None, "code": 400})


def strict(allowed: set[str], answer: Any, refuse: Any = openai_refusal) -> Any:
    """A respx side effect: refuse unknown fields, else ``answer(body)``."""
    def handle(request: httpx.Request) -> httpx.Response:
        body = body_of(request)
        unknown = [k for k in body if k not in allowed]
        if unknown:
            return refuse(unknown)
        return answer(body)
    return handle


@respx.mock
async def test_every_server_gets_neutral_sampling(respx_mock: respx.MockRouter) -> None:
    """llama-cpp-python's server defaults to repeat_penalty 1.1, vLLM takes penalties from
    the model's generation config, llama-server's flags or GGUF metadata may turn on XTC,
    DRY or typical sampling: each is set to neutral, in the chain and the forced request."""
    route = respx_mock.post(URL).mock(side_effect=[
        httpx.Response(200, json=vllm_completion(reasoning=CUT, answer=None, finish="length")),
        httpx.Response(200, json=vllm_forced({" true": -0.3, " false": -1.4})),
    ])
    await make_client().ajudge("q", "p")
    for call in route.calls:
        body = body_of(call.request)
        assert {k: body[k] for k in NEUTRAL} == NEUTRAL
        assert body["skip_special_tokens"] is False


@respx.mock
async def test_chat_gets_neutral_sampling(respx_mock: respx.MockRouter) -> None:
    route = respx_mock.post(f"{BASE_URL}/chat/completions").mock(
        return_value=httpx.Response(200, json=chat_reply(
            content="true", reasoning="It is.", tokens=[("true", [(" true", -0.1)])])))
    await make_client(mode="chat").ajudge("q", "p")
    body = body_of(route.calls[0].request)
    assert {k: body[k] for k in NEUTRAL} == NEUTRAL


@pytest.mark.parametrize("refuse", [openai_refusal, pydantic_refusal,
                                    lambda unknown: pydantic_refusal(unknown, 422)])
@respx.mock
async def test_strict_host_gets_every_judgment(respx_mock: respx.MockRouter, refuse: Any) -> None:
    route = respx_mock.post(URL).mock(side_effect=strict(
        OPENAI_COMPLETIONS, lambda body: httpx.Response(200, json=vllm_completion()), refuse))
    client = make_client(concurrency=1)
    judgments = await client.arerank("q", [f"p{i}" for i in range(5)])
    assert all(j.ok and j.source is VerdictSource.ANSWER_LOGPROBS for j in judgments)
    assert [j.score for j in judgments] == [pytest.approx(sigmoid_of(-0.1, -2.4))] * 5
    # refused once, all fields at a time; the client remembers: 5 judgments, 6 requests
    assert route.call_count == 6
    for call in route.calls[1:]:
        assert set(body_of(call.request)) <= OPENAI_COMPLETIONS
    # OpenAI's own greedy fields still reach it
    last = body_of(route.calls[-1].request)
    assert (last["temperature"], last["top_p"]) == (0, 1.0)


@respx.mock
async def test_host_that_names_one_field_at_a_time(respx_mock: respx.MockRouter) -> None:
    """A host that names only the first unknown field gets one fewer each time."""
    def refuse(unknown: list[str]) -> httpx.Response:
        return openai_refusal(sorted(unknown)[:1])

    route = respx_mock.post(URL).mock(side_effect=strict(
        OPENAI_COMPLETIONS, lambda body: httpx.Response(200, json=vllm_completion()), refuse))
    client = make_client()
    assert (await client.ajudge("q", "p")).ok
    extras = {"skip_special_tokens", "repetition_penalty", "repeat_penalty",
              "dry_multiplier", "xtc_probability", "typical_p", "preserved_tokens"}
    assert route.call_count == len(extras) + 1
    assert (await client.ajudge("q", "p2")).ok
    assert route.call_count == len(extras) + 2  # remembered
    assert client.max_retries == 3  # none of this used the retry budget


@respx.mock
async def test_strict_host_forced_answer_drops_the_id_fields(
    respx_mock: respx.MockRouter,
) -> None:
    def answer(body: dict) -> httpx.Response:
        if body["max_tokens"] == 1:
            return httpx.Response(200, json=vllm_forced({" false": -0.2, " true": -1.7}, " false"))
        return httpx.Response(200, json=vllm_completion(reasoning=CUT, answer=None,
                                                        finish="length"))

    route = respx_mock.post(URL).mock(side_effect=strict(OPENAI_COMPLETIONS, answer))
    judgment = await make_client(answer_token_ids=(TRUE_ID, FALSE_ID)).ajudge("q", "p")
    assert judgment.source is VerdictSource.FORCED_ANSWER
    assert judgment.score == pytest.approx(sigmoid_of(-1.7, -0.2))
    # chain: refused + sent; forced: refused (the id fields are new) + sent
    assert route.call_count == 4
    assert "allowed_token_ids" in body_of(route.calls[2].request)
    assert set(body_of(route.calls[3].request)) <= OPENAI_COMPLETIONS


@respx.mock
async def test_strict_chat_host(respx_mock: respx.MockRouter) -> None:
    reply = chat_reply(content="true", reasoning="It is.", tokens=[("true", [(" true", -0.1),
                                                                             (" false", -2.0)])])
    route = respx_mock.post(f"{BASE_URL}/chat/completions").mock(side_effect=strict(
        OPENAI_CHAT, lambda body: httpx.Response(200, json=reply)))
    judgment = await make_client(mode="chat").ajudge("q", "p")
    assert judgment.ok and route.call_count == 2
    assert set(body_of(route.calls[1].request)) <= OPENAI_CHAT


@pytest.mark.parametrize("error", [
    # a bad value, not an unknown field: dropping the field would hide a wrong setting
    {"error": {"message": "allowed_token_ids contains out-of-vocab token id 99999999"}},
    # unknown, but not one of ours
    {"error": {"message": "Unrecognized request argument supplied: foo"}},
    # one of ours named, but not refused as unknown
    {"error": {"message": "repeat_penalty must be positive"}},
])
@respx.mock
async def test_other_400s_still_fail_at_once(respx_mock: respx.MockRouter, error: dict) -> None:
    route = respx_mock.post(URL).mock(return_value=httpx.Response(400, json=error))
    client = make_client()
    with pytest.raises(JudgmentError):
        await client.ajudge("q", "p")
    assert route.call_count == 1
    assert client._sdk.rejected == frozenset()


class StrictServer(LoopbackServer):
    """A loopback OpenAI-style strict host, for the SDK's default HTTP stack (aiohttp),
    streamed requests included."""

    def __init__(self) -> None:
        super().__init__()
        self.bodies: list[dict[str, Any]] = []

    def answer(self, handler: Any) -> None:
        body = json.loads(handler.rfile.read(int(handler.headers["Content-Length"])))
        self.bodies.append(body)
        unknown = sorted(k for k in body if k not in OPENAI_COMPLETIONS)
        if unknown:
            status, data = 400, openai_refusal(unknown).content
            ctype = "application/json"
        elif body.get("stream"):
            status, ctype = 200, "text/event-stream"
            data = (f"data: {json.dumps(vllm_completion())}\n\n"
                    "data: [DONE]\n\n").encode()
        else:
            status, ctype = 200, "application/json"
            data = json.dumps(vllm_completion()).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", ctype)
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)


async def test_strict_loopback_host_over_the_default_stack() -> None:
    with StrictServer() as server:
        client = Rank1Client(server.base_url, model="rank1", cache=None, retry_backoff=0.01,
                             concurrency=1)
        try:
            judgments = await client.arerank("q", ["a", "b", "c"])
            # the streaming path (llama-server's) is refused and recovers the same way
            client.transport.stream = True  # type: ignore[attr-defined]
            client._sdk.rejected = frozenset()
            streamed = await client.ajudge("q", "d")
        finally:
            await client.aclose()
    assert all(j.ok for j in judgments) and streamed.ok
    assert sum(1 for b in server.bodies if set(b) - OPENAI_COMPLETIONS) == 2
