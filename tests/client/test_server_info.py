"""Server discovery in completions mode (respx, the shapes vLLM and llama.cpp's
llama-server answer): the served context from ``/v1/models`` or ``/props``, the prompt's
length and the answer token ids from ``/tokenize``; the reasoning budget fitted to the
context; probed once per client; never a failed judgment because a probe failed."""

from __future__ import annotations

import json

import httpx
import pytest
import respx

from rank1_integrations import JudgmentError, Rank1Client
from rank1_integrations.protocol import FORCED_ANSWER_MARGIN, VerdictSource
from rank1_integrations.transports.server_info import max_tokens_bound

from .rank1_payloads import (
    BASE_URL,
    FALSE_ID,
    TRUE_ID,
    body_of,
    http_client,
    llama_server_sse,
    prompt_for,
    vllm_completion,
    vllm_forced,
)

ROOT = BASE_URL.removesuffix("/v1")
MODEL = "jhu-clsp/rank1-7b"
QUERY, PASSAGE = "what causes tides?", "The Moon's gravity pulls the oceans."
#: The token count the mocked tokenizer gives a whole rank1 prompt.
PROMPT_TOKENS = 300


def make_client(**kwargs) -> Rank1Client:
    kwargs.setdefault("cache", None)
    kwargs.setdefault("two_step", "off")  # these mocks answer the one-step request
    kwargs.setdefault("retry_backoff", 0.01)
    kwargs.setdefault("client", http_client())
    return Rank1Client(BASE_URL, model=MODEL, **kwargs)


def vllm_models(max_model_len: int | None = 2048) -> dict:
    entry = {"id": MODEL, "object": "model", "owned_by": "vllm", "root": MODEL,
             "permission": []}
    if max_model_len is not None:
        entry["max_model_len"] = max_model_len
    return {"object": "list", "data": [entry]}


def llama_server_models(n_ctx: int) -> dict:
    return {"object": "list", "models": [{"name": "rank1.gguf", "model": "rank1.gguf"}],
            "data": [{"id": "rank1.gguf", "object": "model", "owned_by": "llamacpp",
                      "meta": {"vocab_type": 2, "n_vocab": 151936, "n_ctx": n_ctx,
                               "n_ctx_train": 32768, "n_embd": 3584}}]}


def _ids_of(text: str, answers: dict[str, list[int]]) -> list[int]:
    return answers.get(text) or list(range(PROMPT_TOKENS))


def vllm_tokenize(answers: dict[str, list[int]] | None = None):
    """vLLM's /tokenize: ``{model, prompt, add_special_tokens}`` -> ``{count, tokens, ...}``."""
    answers = {" true": [TRUE_ID], " false": [FALSE_ID]} if answers is None else answers

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        if "prompt" not in body:
            return httpx.Response(422, json={"detail": [{"loc": ["body", "prompt"]}]})
        ids = _ids_of(body["prompt"], answers)
        return httpx.Response(200, json={"count": len(ids), "max_model_len": 2048,
                                         "tokens": ids, "token_strs": None})
    return handler


def llama_server_tokenize(request: httpx.Request) -> httpx.Response:
    """llama-server's /tokenize: ``{content, add_special}`` -> ``{tokens}``; a body
    without ``content`` gets no tokens (as the real server answers)."""
    body = json.loads(request.content)
    if "content" not in body:
        return httpx.Response(200, json={"tokens": []})
    ids = _ids_of(body["content"], {" true": [TRUE_ID], " false": [FALSE_ID]})
    return httpx.Response(200, json={"tokens": ids})


def llama_server_round(respx_mock: respx.MockRouter) -> respx.Route:
    """/completions as llama-server streams it: the chain ends on the answer."""
    sse = httpx.Response(200, content=llama_server_sse(),
                         headers={"content-type": "text/event-stream"})
    return respx_mock.post(f"{BASE_URL}/completions").mock(side_effect=[sse] * 4)


def forced_round(respx_mock: respx.MockRouter) -> respx.Route:
    """/completions: the budget runs out, then the forced answer."""
    first = vllm_completion(reasoning=["The", " query", "."], answer=None, finish="length")
    forced = vllm_forced({" true": -0.2, " false": -1.8})
    return respx_mock.post(f"{BASE_URL}/completions").mock(
        side_effect=[httpx.Response(200, json=first), httpx.Response(200, json=forced)] * 4)


@respx.mock
async def test_vllm_context_and_answer_ids_are_used(respx_mock: respx.MockRouter) -> None:
    models = respx_mock.get(f"{BASE_URL}/models").respond(200, json=vllm_models(2048))
    tokenize = respx_mock.post(f"{ROOT}/tokenize").mock(side_effect=vllm_tokenize())
    route = forced_round(respx_mock)
    client = make_client()  # budget 2048: never fits a 2048-token context
    judgment = await client.ajudge(QUERY, PASSAGE)
    assert judgment.ok and judgment.source is VerdictSource.FORCED_ANSWER
    first, second = (body_of(c.request) for c in route.calls)
    assert first["max_tokens"] == 2048 - PROMPT_TOKENS - FORCED_ANSWER_MARGIN
    assert second["allowed_token_ids"] == second["logprob_token_ids"] == [TRUE_ID, FALSE_ID]
    assert client.transport.answer_token_ids == (TRUE_ID, FALSE_ID)
    sent = [json.loads(c.request.content) for c in tokenize.calls]
    assert sent[:2] == [{"model": MODEL, "prompt": " true", "add_special_tokens": False},
                        {"model": MODEL, "prompt": " false", "add_special_tokens": False}]
    assert sent[2] == {"model": MODEL, "prompt": prompt_for(QUERY, PASSAGE),
                       "add_special_tokens": True}
    # probed once per client: a second judgment only counts its own prompt
    assert (await client.ajudge(QUERY, "Tides follow the Moon.")).ok
    assert models.call_count == 1 and tokenize.call_count == 4


@respx.mock
async def test_llama_server_shapes(respx_mock: respx.MockRouter) -> None:
    respx_mock.get(f"{BASE_URL}/models").respond(200, json=llama_server_models(1024))
    tokenize = respx_mock.post(f"{ROOT}/tokenize").mock(side_effect=llama_server_tokenize)
    route = llama_server_round(respx_mock)
    client = make_client()
    judgment = await client.ajudge(QUERY, PASSAGE)
    assert judgment.ok and judgment.source is VerdictSource.ANSWER_LOGPROBS
    # found to be llama-server: streamed from the first request, so one request in all
    assert route.call_count == 1 and body_of(route.calls[0].request)["stream"] is True
    assert body_of(route.calls[0].request)["max_tokens"] == (
        1024 - PROMPT_TOKENS - FORCED_ANSWER_MARGIN)
    assert client.transport.answer_token_ids == (TRUE_ID, FALSE_ID)
    first = json.loads(tokenize.calls[0].request.content)
    assert first == {"content": " true", "add_special": False, "parse_special": True}


@respx.mock
async def test_props_gives_the_context_when_models_does_not(
    respx_mock: respx.MockRouter,
) -> None:
    respx_mock.get(f"{BASE_URL}/models").respond(200, json={
        "object": "list", "data": [{"id": MODEL, "object": "model"}]})
    respx_mock.get(f"{ROOT}/props").respond(200, json={
        "default_generation_settings": {"n_ctx": 900, "params": {}}, "total_slots": 4})
    respx_mock.post(f"{ROOT}/tokenize").mock(side_effect=llama_server_tokenize)
    route = llama_server_round(respx_mock)
    assert (await make_client().ajudge(QUERY, PASSAGE)).ok
    assert body_of(route.calls[0].request)["max_tokens"] == (
        900 - PROMPT_TOKENS - FORCED_ANSWER_MARGIN)


@respx.mock
async def test_no_tokenizer_uses_the_byte_bound(respx_mock: respx.MockRouter) -> None:
    respx_mock.get(f"{BASE_URL}/models").respond(200, json=vllm_models(1500))
    tokenize = respx_mock.post(f"{ROOT}/tokenize").respond(404, json={"detail": "Not Found"})
    route = forced_round(respx_mock)
    client = make_client()
    assert (await client.ajudge(QUERY, PASSAGE)).ok
    bound = max_tokens_bound(prompt_for(QUERY, PASSAGE))
    assert bound >= PROMPT_TOKENS // 2  # a real bound: the prompt's bytes, not a guess
    assert body_of(route.calls[0].request)["max_tokens"] == 1500 - bound - FORCED_ANSWER_MARGIN
    assert client.transport.answer_token_ids is None
    assert "allowed_token_ids" not in body_of(route.calls[1].request)
    assert tokenize.call_count == 2  # vLLM's shape, then llama-server's; never again


@respx.mock
async def test_no_room_is_a_clear_error_naming_both_numbers(
    respx_mock: respx.MockRouter,
) -> None:
    respx_mock.get(f"{BASE_URL}/models").respond(200, json=vllm_models(305))
    respx_mock.post(f"{ROOT}/tokenize").mock(side_effect=vllm_tokenize())
    route = respx_mock.post(f"{BASE_URL}/completions").respond(200, json=vllm_completion())
    with pytest.raises(JudgmentError, match="the prompt has 300 tokens and the context "
                                            "holds 305") as info:
        await make_client().ajudge(QUERY, PASSAGE)
    assert info.value.index == 0 and route.call_count == 0  # refused before sending


@respx.mock
async def test_a_prompt_that_fits_for_sure_is_not_counted(respx_mock: respx.MockRouter) -> None:
    respx_mock.get(f"{BASE_URL}/models").respond(200, json=vllm_models(16000))
    tokenize = respx_mock.post(f"{ROOT}/tokenize").mock(side_effect=vllm_tokenize())
    route = respx_mock.post(f"{BASE_URL}/completions").respond(200, json=vllm_completion())
    assert (await make_client().ajudge(QUERY, PASSAGE)).ok
    assert body_of(route.calls[0].request)["max_tokens"] == 2048
    assert tokenize.call_count == 2  # the two answer words only


@respx.mock
async def test_multi_token_answers_leave_the_ids_unset(respx_mock: respx.MockRouter) -> None:
    respx_mock.get(f"{BASE_URL}/models").respond(200, json=vllm_models(16000))
    respx_mock.post(f"{ROOT}/tokenize").mock(
        side_effect=vllm_tokenize({" true": [220, 1866], " false": [895]}))
    route = forced_round(respx_mock)
    client = make_client()
    assert (await client.ajudge(QUERY, PASSAGE)).ok
    assert client.transport.answer_token_ids is None
    assert "allowed_token_ids" not in body_of(route.calls[1].request)


@respx.mock
async def test_given_answer_ids_win(respx_mock: respx.MockRouter) -> None:
    respx_mock.get(f"{BASE_URL}/models").respond(200, json=vllm_models(16000))
    respx_mock.post(f"{ROOT}/tokenize").mock(side_effect=vllm_tokenize())
    route = forced_round(respx_mock)
    client = make_client(answer_token_ids=(1, 2))
    assert (await client.ajudge(QUERY, PASSAGE)).ok
    assert body_of(route.calls[1].request)["allowed_token_ids"] == [1, 2]
    assert client.transport.answer_token_ids == (1, 2)


@respx.mock
async def test_transient_probe_failures_are_probed_again(respx_mock: respx.MockRouter) -> None:
    models = respx_mock.get(f"{BASE_URL}/models").mock(side_effect=[
        httpx.Response(503, json={"error": {"message": "loading"}}),
        httpx.Response(200, json=vllm_models(2048)),
    ])
    respx_mock.post(f"{ROOT}/tokenize").mock(side_effect=vllm_tokenize())
    route = forced_round(respx_mock)
    client = make_client()
    assert (await client.ajudge(QUERY, PASSAGE)).ok  # unknown context: sent as asked
    assert body_of(route.calls[0].request)["max_tokens"] == 2048
    assert (await client.ajudge(QUERY, "Tides follow the Moon.")).ok
    assert body_of(route.calls[2].request)["max_tokens"] == (
        2048 - PROMPT_TOKENS - FORCED_ANSWER_MARGIN)
    assert models.call_count == 2


@respx.mock
async def test_a_host_without_a_model_list_is_asked_once(respx_mock: respx.MockRouter) -> None:
    models = respx_mock.get(f"{BASE_URL}/models").respond(404, json={"error": "no"})
    route = respx_mock.post(f"{BASE_URL}/completions").respond(200, json=vllm_completion())
    client = make_client()
    for passage in ("a", "b", "c"):
        assert (await client.ajudge(QUERY, passage)).ok
    assert models.call_count == 1 and route.call_count == 3
    assert body_of(route.calls[0].request)["max_tokens"] == 2048


@respx.mock
async def test_other_modes_do_not_probe(respx_mock: respx.MockRouter) -> None:
    models = respx_mock.get(f"{BASE_URL}/models").respond(200, json=vllm_models(100))
    respx_mock.post(f"{BASE_URL}/rerank").respond(200, json={"results": [{
        "index": 0, "relevance_score": 0.7, "relevant": True, "reasoning": "r",
        "source": "answer_logprobs", "reasoning_tokens": 3}]})
    assert (await make_client(mode="rerank").ajudge(QUERY, PASSAGE)).ok
    assert models.call_count == 0


@respx.mock
async def test_concurrent_first_judgments_share_one_probe(respx_mock: respx.MockRouter) -> None:
    models = respx_mock.get(f"{BASE_URL}/models").respond(200, json=vllm_models(16000))
    respx_mock.post(f"{ROOT}/tokenize").mock(side_effect=vllm_tokenize())
    respx_mock.post(f"{BASE_URL}/completions").respond(200, json=vllm_completion())
    judgments = await make_client().arerank(QUERY, [f"passage {i}" for i in range(8)])
    assert all(j.ok for j in judgments)
    assert models.call_count == 1


def test_max_tokens_bound_is_an_upper_bound() -> None:
    assert max_tokens_bound("") == 3
    assert max_tokens_bound("é<think>") == 2 + 7 + 3
