"""The probes (``/v1/models``, ``/props``, ``/tokenize``) as requests like any other:
counted in ``Judgment.requests`` and the usage totals, sent once per client, best-effort
(one try, a short timeout, never fatal); the forced answer's margin only what it needs;
chat mode's budget fitted to the served context as completions mode's is (issue 15,
fixes c, d, e, a). respx: the HTTP edge cases (a dropped connection) and the counts."""

from __future__ import annotations

import json

import httpx
import pytest
import respx

from rank1_integrations import Rank1Client
from rank1_integrations.judgment import total_usage
from rank1_integrations.protocol import FORCED_ANSWER_MARGIN, VerdictSource
from rank1_integrations.transports.sdk import PROBE_TIMEOUT

from .rank1_payloads import (
    BASE_URL,
    FALSE_ID,
    TRUE_ID,
    body_of,
    chat_reply,
    http_client,
    vllm_completion,
    vllm_forced,
)

ROOT = BASE_URL.removesuffix("/v1")
MODEL = "rank1"
QUERY = "what causes tides?"
PASSAGES = ["The Moon's gravity pulls the oceans.", "Tides follow the Moon.", "Cats sleep."]


def make_client(**kwargs) -> Rank1Client:
    kwargs.setdefault("cache", None)
    kwargs.setdefault("two_step", "off")  # these mocks answer the one-step request
    kwargs.setdefault("retry_backoff", 0.01)
    kwargs.setdefault("client", http_client())
    return Rank1Client(BASE_URL, model=MODEL, **kwargs)


def vllm_models(max_model_len: int) -> dict:
    return {"object": "list", "data": [{"id": MODEL, "object": "model", "owned_by": "vllm",
                                        "max_model_len": max_model_len}]}


def tokenizer(prompt_tokens: int, chat_tokens: int | None = None):
    """vLLM's /tokenize: the answer words are one token each, any prompt has
    ``prompt_tokens`` tokens, a chat message ``chat_tokens`` with its template."""

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        if "messages" in body:
            n = chat_tokens if chat_tokens is not None else prompt_tokens
            ids = list(range(n))
        else:
            ids = {" true": [TRUE_ID], " false": [FALSE_ID]}.get(
                body["prompt"], list(range(prompt_tokens)))
        return httpx.Response(200, json={"count": len(ids), "max_model_len": 2048,
                                         "tokens": ids, "token_strs": None})
    return handler


# --------------------------------------------------------------------------- (c) counted


@respx.mock
async def test_every_request_sent_is_counted_once(respx_mock: respx.MockRouter) -> None:
    respx_mock.get(f"{BASE_URL}/models").respond(200, json=vllm_models(16000))
    respx_mock.post(f"{ROOT}/tokenize").mock(side_effect=tokenizer(300))
    respx_mock.post(f"{BASE_URL}/completions").respond(200, json=vllm_completion())
    client = make_client()
    judgments = await client.ajudge_all(QUERY, PASSAGES)
    assert all(j.ok for j in judgments)
    sent = len(respx_mock.calls)  # /models, 2 x /tokenize (the answer words), 3 completions
    assert sent == 6
    assert total_usage(judgments)["requests"] == sent
    # the probes go to the judgment that sent them, once; the others count their own
    assert sorted(j.requests for j in judgments) == [1, 1, 4]
    # a second call probes nothing more
    again = await client.ajudge_all(QUERY, PASSAGES)
    assert [j.requests for j in again] == [1, 1, 1]
    assert len(respx_mock.calls) == sent + 3


@respx.mock
async def test_a_prompts_tokenize_is_counted_in_its_judgment(
    respx_mock: respx.MockRouter,
) -> None:
    respx_mock.get(f"{BASE_URL}/models").respond(200, json=vllm_models(2048))
    tokenize = respx_mock.post(f"{ROOT}/tokenize").mock(side_effect=tokenizer(300))
    respx_mock.post(f"{BASE_URL}/completions").respond(200, json=vllm_completion())
    client = make_client()
    first = await client.ajudge(QUERY, PASSAGES[0])
    second = await client.ajudge(QUERY, PASSAGES[1])
    # first: /models + 2 answer words + its prompt + the completion; second: its prompt
    # (the default budget of 2048 never fits a 2048 context) + the completion
    assert (first.requests, second.requests) == (5, 2)
    assert first.requests + second.requests == len(respx_mock.calls)
    assert tokenize.call_count == 4


# --------------------------------------------------------------------------- (d) best-effort


@respx.mock
async def test_a_dropped_probe_is_one_try_with_a_short_timeout(
    respx_mock: respx.MockRouter,
) -> None:
    models = respx_mock.get(f"{BASE_URL}/models").mock(
        side_effect=httpx.RemoteProtocolError("Server disconnected without sending a response"))
    route = respx_mock.post(f"{BASE_URL}/completions").respond(200, json=vllm_completion())
    client = make_client(max_retries=3, retry_backoff=5.0)  # a retry would take seconds
    judgment = await client.ajudge(QUERY, PASSAGES[0])
    assert judgment.ok and judgment.source is VerdictSource.ANSWER_LOGPROBS
    assert models.call_count == 1  # one try, despite max_retries=3
    assert judgment.requests == 2  # the failed probe was sent: counted
    timeout = models.calls[0].request.extensions["timeout"]
    assert timeout["read"] == PROBE_TIMEOUT and PROBE_TIMEOUT <= 5
    assert body_of(route.calls[0].request)["max_tokens"] == 2048  # unknown: sent as asked


@respx.mock
async def test_a_dropped_tokenize_is_one_try_and_never_fatal(
    respx_mock: respx.MockRouter,
) -> None:
    respx_mock.get(f"{BASE_URL}/models").respond(200, json=vllm_models(2048))
    tokenize = respx_mock.post(f"{ROOT}/tokenize").mock(
        side_effect=httpx.ConnectError("Connection refused"))
    respx_mock.post(f"{BASE_URL}/completions").respond(200, json=vllm_completion())
    client = make_client(max_retries=3, retry_backoff=5.0)
    judgment = await client.ajudge(QUERY, PASSAGES[0])
    assert judgment.ok
    assert tokenize.call_count == 1
    assert tokenize.calls[0].request.extensions["timeout"]["read"] == PROBE_TIMEOUT


# --------------------------------------------------------------------------- (e) the margin


@respx.mock
async def test_a_prompt_that_leaves_room_for_the_forced_answer_is_sent(
    respx_mock: respx.MockRouter,
) -> None:
    # the case seen on vLLM: a 2,018-token prompt on a 2,048 context was refused
    respx_mock.get(f"{BASE_URL}/models").respond(200, json=vllm_models(2048))
    respx_mock.post(f"{ROOT}/tokenize").mock(side_effect=tokenizer(2018))
    first = vllm_completion(reasoning=["The", " query"], answer=None, finish="length")
    route = respx_mock.post(f"{BASE_URL}/completions").mock(side_effect=[
        httpx.Response(200, json=first),
        httpx.Response(200, json=vllm_forced({" true": -0.2, " false": -1.8}))])
    judgment = await make_client().ajudge(QUERY, PASSAGES[0])
    assert judgment.ok and judgment.source is VerdictSource.FORCED_ANSWER
    assert body_of(route.calls[0].request)["max_tokens"] == 2048 - 2018 - FORCED_ANSWER_MARGIN
    # what the forced answer needs: "\n", "\n", "</think>", the answer; 4 more for
    # re-tokenising the chain
    assert FORCED_ANSWER_MARGIN == 8


# --------------------------------------------------------------------------- (a) chat fits


@respx.mock
async def test_chat_fits_max_tokens_to_the_served_context(
    respx_mock: respx.MockRouter,
) -> None:
    respx_mock.get(f"{BASE_URL}/models").respond(200, json=vllm_models(2048))
    tokenize = respx_mock.post(f"{ROOT}/tokenize").mock(side_effect=tokenizer(300, 320))
    route = respx_mock.post(f"{BASE_URL}/chat/completions").respond(
        200, json=chat_reply(content=" true", reasoning="The Moon.",
                             tokens=[(" true", [(" true", -0.2), (" false", -1.9)])]))
    client = make_client(mode="chat")  # default budget 2048: over the 2048 context
    judgment = await client.ajudge(QUERY, PASSAGES[0])
    assert judgment.ok
    assert body_of(route.calls[0].request)["max_tokens"] == 2048 - 320 - FORCED_ANSWER_MARGIN
    chat_counts = [json.loads(c.request.content) for c in tokenize.calls
                   if "messages" in json.loads(c.request.content)]
    assert chat_counts[0]["add_generation_prompt"] is True
    assert chat_counts[0]["messages"][0]["content"] == body_of(
        route.calls[0].request)["messages"][0]["content"]
    assert judgment.requests == len(respx_mock.calls)


@respx.mock
async def test_chat_without_a_chat_tokenizer_allows_for_the_template(
    respx_mock: respx.MockRouter,
) -> None:
    from rank1_integrations.transports.server_info import CHAT_TEMPLATE_TOKENS

    respx_mock.get(f"{BASE_URL}/models").respond(200, json=vllm_models(2048))

    def text_only(request: httpx.Request) -> httpx.Response:  # rank1-server's shape
        body = json.loads(request.content)
        if "prompt" not in body:
            return httpx.Response(422, json={"detail": [{"loc": ["body", "prompt"]}]})
        return tokenizer(300)(request)

    respx_mock.post(f"{ROOT}/tokenize").mock(side_effect=text_only)
    route = respx_mock.post(f"{BASE_URL}/chat/completions").respond(
        200, json=chat_reply(content=" true", reasoning="The Moon.",
                             tokens=[(" true", [(" true", -0.2), (" false", -1.9)])]))
    assert (await make_client(mode="chat").ajudge(QUERY, PASSAGES[0])).ok
    assert body_of(route.calls[0].request)["max_tokens"] == (
        2048 - 300 - CHAT_TEMPLATE_TOKENS - FORCED_ANSWER_MARGIN)


# --------------------------------------------------------------------------- (b) chat forced


def _cut_reply() -> dict:
    return chat_reply(content="\nThe passage talks about the Moon. It pulls",
                      tokens=[("\n", [("\n", -0.1)]), ("The", [("The", -0.1)])],
                      finish="length")


def _forced_reply() -> dict:
    return chat_reply(content=" true", tokens=[(" true", [(" true", -0.3), (" false", -1.4)])],
                      finish="length")


@respx.mock
async def test_chat_forces_the_answer_on_vllm(respx_mock: respx.MockRouter) -> None:
    respx_mock.get(f"{BASE_URL}/models").respond(200, json=vllm_models(16000))
    respx_mock.post(f"{ROOT}/tokenize").mock(side_effect=tokenizer(300))
    route = respx_mock.post(f"{BASE_URL}/chat/completions").mock(side_effect=[
        httpx.Response(200, json=_cut_reply()), httpx.Response(200, json=_forced_reply())])
    judgment = await make_client(mode="chat", max_reasoning_tokens=64).ajudge(
        QUERY, PASSAGES[0])
    assert judgment.ok and judgment.source is VerdictSource.FORCED_ANSWER
    from .rank1_payloads import sigmoid_of
    assert judgment.score == pytest.approx(sigmoid_of(-0.3, -1.4), abs=1e-12)
    assert judgment.reasoning == "The passage talks about the Moon. It pulls"
    first, forced = (body_of(c.request) for c in route.calls)
    assert forced["messages"][0] == first["messages"][0]
    # the chain closed as the completions path closes it: cut at its last sentence end
    assert forced["messages"][1] == {
        "role": "assistant", "content": "\nThe passage talks about the Moon.\n</think>"}
    assert forced["continue_final_message"] is True
    assert forced["add_generation_prompt"] is False
    assert forced["max_tokens"] == 1
    assert forced["allowed_token_ids"] == [TRUE_ID, FALSE_ID]
    assert judgment.requests == len(respx_mock.calls)


@respx.mock
async def test_chat_elsewhere_keeps_the_honest_no_verdict(respx_mock: respx.MockRouter) -> None:
    from rank1_integrations import JudgmentError

    respx_mock.get(f"{BASE_URL}/models").respond(200, json={
        "object": "list", "data": [{"id": MODEL, "object": "model", "owned_by": "llamacpp",
                                    "meta": {"n_ctx": 16000}}]})
    respx_mock.post(f"{ROOT}/tokenize").respond(404)
    route = respx_mock.post(f"{BASE_URL}/chat/completions").respond(200, json=_cut_reply())
    with pytest.raises(JudgmentError, match="no true/false answer"):
        await make_client(mode="chat", max_reasoning_tokens=64).ajudge(QUERY, PASSAGES[0])
    assert route.call_count == 1
