"""The two-step path's edge cases on vLLM (respx; the common path is tested against the
real vLLM, llama-server and rank1-server in tests/real): a chain vLLM says ended at end of
text takes the forced answer with no tail, and a tail that does not begin where the chain
ended sends the official one-step request instead. The server's ``/v1/models`` is vLLM's
recorded answer (``owned_by: vllm``, ``max_model_len`` 2048)."""

from __future__ import annotations

import httpx
import pytest
import respx

from rank1_integrations import Rank1Client
from rank1_integrations.protocol import STOP_STRINGS, THINK_END, VerdictSource

from .rank1_payloads import (
    BASE_URL,
    body_of,
    http_client,
    prompt_for,
    recorded_vllm,
    sigmoid_of,
    vllm_completion,
    vllm_forced,
)

QUERY = "what causes tides?"
PASSAGE = "The Moon's gravity pulls the oceans."
MODEL = "rank1-test"  # the recorded vLLM's served name
CHAIN = ["The", " passage", " names", " the", " cause", "."]


def make_client() -> Rank1Client:
    return Rank1Client(BASE_URL, model=MODEL, max_reasoning_tokens=32, cache=None,
                       retry_backoff=0.01, client=http_client(), two_step="on")


def chain_only(stop_reason: str | None) -> dict:
    """vLLM's answer to the chain's request: no logprobs asked, stopped at ``</think>``
    (``stop_reason`` the stop string) or at end of text (``stop_reason`` None)."""
    body = vllm_completion(reasoning=CHAIN, answer=None, stop_reason=stop_reason)
    body["choices"][0]["logprobs"] = None
    return body


def mock_server(respx_mock: respx.MockRouter, *answers: dict) -> respx.Route:
    models = recorded_vllm("vllm-demo-completions.json", "/v1/models")
    respx_mock.get(f"{BASE_URL}/models").mock(return_value=httpx.Response(200, json=models))
    respx_mock.post("http://rank1.test/tokenize").mock(return_value=httpx.Response(404))
    return respx_mock.post(f"{BASE_URL}/completions").mock(
        side_effect=[httpx.Response(200, json=a) for a in answers])


@respx.mock
async def test_a_chain_ended_by_end_of_text_takes_the_forced_answer(
    respx_mock: respx.MockRouter,
) -> None:
    top = {" true": -1.5, " false": -0.4}
    route = mock_server(respx_mock, chain_only(None), vllm_forced(top, " false"))
    judgment = await make_client().ajudge(QUERY, PASSAGE)

    assert route.call_count == 2  # the chain, then the forced answer: no tail
    chain, forced = (body_of(c.request) for c in route.calls)
    assert "logprobs" not in chain and chain["stop"] == [THINK_END]
    assert forced["max_tokens"] == 1 and forced["prompt"].endswith(THINK_END)
    assert judgment.source is VerdictSource.FORCED_ANSWER
    assert judgment.score == pytest.approx(sigmoid_of(-1.5, -0.4))
    assert judgment.requests == 5  # the probes (/v1/models, two /tokenize), chain, forced


@respx.mock
async def test_a_tail_that_does_not_begin_with_think_end_sends_the_one_step_request(
    respx_mock: respx.MockRouter,
) -> None:
    wrong_tail = vllm_completion(reasoning=[" Also", " this"], answer=" true")
    whole = vllm_completion(answer_top={" true": -0.2, " false": -1.9})
    route = mock_server(respx_mock, chain_only(THINK_END), wrong_tail, whole)
    judgment = await make_client().ajudge(QUERY, PASSAGE)

    assert route.call_count == 3
    chain, tail, one_step = (body_of(c.request) for c in route.calls)
    assert tail["prompt"] == prompt_for(QUERY, PASSAGE) + "".join(CHAIN)
    # the official request decides: the prompt alone, top-20 at every position
    assert one_step["prompt"] == prompt_for(QUERY, PASSAGE)
    assert one_step["logprobs"] == 20 and one_step["stop"] == list(STOP_STRINGS)
    assert one_step["max_tokens"] == 32
    assert judgment.source is VerdictSource.ANSWER_LOGPROBS
    assert judgment.score == pytest.approx(sigmoid_of(-0.2, -1.9))
    assert judgment.requests == 6  # the probes (/v1/models, two /tokenize) and three


@respx.mock
async def test_a_chain_answer_without_usage_sends_the_one_step_request(
    respx_mock: respx.MockRouter,
) -> None:
    """A host (or proxy) that leaves ``usage`` out: the chain's length, and so the budget
    its tail may take, is unknown; the official request decides instead of a guess."""
    chain = chain_only(THINK_END)
    del chain["usage"]
    whole = vllm_completion(answer_top={" true": -0.3, " false": -1.2})
    route = mock_server(respx_mock, chain, whole)
    judgment = await make_client().ajudge(QUERY, PASSAGE)

    assert route.call_count == 2
    one_step = body_of(route.calls[1].request)
    assert one_step["prompt"] == prompt_for(QUERY, PASSAGE) and one_step["max_tokens"] == 32
    assert judgment.source is VerdictSource.ANSWER_LOGPROBS
    assert judgment.score == pytest.approx(sigmoid_of(-0.3, -1.2))
