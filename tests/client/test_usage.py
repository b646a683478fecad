"""Usage on every judgment: ``prompt_tokens`` (the server's count for the first request),
``requests`` (every HTTP request the judgment took: forced answer, retries and resends
included) and ``cached``, in each transport; ``total_usage`` sums a call's."""

from __future__ import annotations

import httpx
import pytest
import respx

from rank1_integrations import Rank1Client
from rank1_integrations.judgment import Judgment, total_usage
from rank1_integrations.protocol import VerdictSource
from rank1_integrations.transports.sdk import counting_requests

from .rank1_payloads import (
    BASE_URL,
    body_of,
    chat_reply,
    http_client,
    vllm_completion,
    vllm_forced,
)

QUERY = "what causes tides?"
PASSAGE = "The Moon's gravity pulls the oceans."
CUT = ["The", " query", " asks", " what", " causes", " tides", ".", " The", " passage"]


def make_client(**kwargs) -> Rank1Client:
    kwargs.setdefault("cache", None)
    kwargs.setdefault("retry_backoff", 0.01)
    kwargs.setdefault("client", http_client())
    return Rank1Client(BASE_URL, model="jhu-clsp/rank1-7b", max_reasoning_tokens=16,
                       answer_token_ids=(830, 895), **kwargs)


def ok(payload: dict) -> httpx.Response:
    return httpx.Response(200, json=payload)


#: The first judgment of a completions or chat client also sends the server probe,
#: ``GET /v1/models`` (these hosts answer 404: no model list, nothing more is asked).
PROBE = 1


@pytest.fixture
def respx_mock():
    with respx.mock(assert_all_called=False) as mock:
        mock.get(f"{BASE_URL}/models").respond(404, json={"error": "no"})
        yield mock


async def test_one_request_judgment(respx_mock: respx.MockRouter) -> None:
    respx_mock.post(f"{BASE_URL}/completions").mock(return_value=ok(vllm_completion()))
    judgment = await make_client().ajudge(QUERY, PASSAGE)
    assert judgment.source == VerdictSource.ANSWER_LOGPROBS
    assert (judgment.prompt_tokens, judgment.requests, judgment.cached) == (61, 1 + PROBE, False)


async def test_forced_answer_counts_two_requests_and_the_first_prompt(
    respx_mock: respx.MockRouter,
) -> None:
    first = vllm_completion(reasoning=CUT, answer=None, finish="length")
    respx_mock.post(f"{BASE_URL}/completions").mock(side_effect=[
        ok(first), ok(vllm_forced({" true": -0.3, " false": -1.4})),
    ])
    judgment = await make_client().ajudge(QUERY, PASSAGE)
    assert judgment.source == VerdictSource.FORCED_ANSWER
    # the forced answer's own prompt (90 tokens) is not the judgment's prompt
    assert (judgment.prompt_tokens, judgment.requests) == (61, 2 + PROBE)


async def test_retries_are_counted(respx_mock: respx.MockRouter) -> None:
    route = respx_mock.post(f"{BASE_URL}/completions").mock(side_effect=[
        httpx.Response(503, json={"error": {"message": "busy"}}),
        httpx.Response(500, json={"error": {"message": "oops"}}),
        ok(vllm_completion()),
    ])
    judgment = await make_client(max_retries=3).ajudge(QUERY, PASSAGE)
    assert route.call_count == 3
    assert judgment.requests == 3 + PROBE


async def test_a_resend_without_a_refused_field_is_counted(respx_mock: respx.MockRouter) -> None:
    refusal = httpx.Response(400, json={"error": {
        "message": "Unrecognized request argument supplied: repeat_penalty"}})
    route = respx_mock.post(f"{BASE_URL}/completions").mock(
        side_effect=[refusal, ok(vllm_completion())]
    )
    judgment = await make_client().ajudge(QUERY, PASSAGE)
    assert route.call_count == 2
    assert judgment.requests == 2 + PROBE


async def test_each_concurrent_judgment_counts_its_own(respx_mock: respx.MockRouter) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        prompt = body_of(request)["prompt"]
        if prompt.endswith("</think>"):  # the forced answer
            return ok(vllm_forced({" true": -0.3, " false": -1.4}))
        if "second" in prompt:
            return ok(vllm_completion(reasoning=CUT, answer=None, finish="length"))
        return ok(vllm_completion())

    respx_mock.post(f"{BASE_URL}/completions").mock(side_effect=answer)
    judgments = await make_client(concurrency=4).ajudge_all(
        QUERY, ["first passage", "second passage", "third passage"]
    )
    # the probe goes to the judgment that sent it (the first to be fitted)
    assert [j.requests for j in judgments] == [1 + PROBE, 2, 1]
    assert total_usage(judgments) == {
        "prompt_tokens": 3 * 61, "reasoning_tokens": sum(j.reasoning_tokens for j in judgments),
        "requests": 4 + PROBE, "cached": 0,
    }


async def test_chat_usage(respx_mock: respx.MockRouter) -> None:
    reply = chat_reply(content=" true", reasoning="The passage covers tides.",
                       tokens=[(" true", [(" true", -0.2), (" false", -1.8)])])
    respx_mock.post(f"{BASE_URL}/chat/completions").mock(return_value=ok(reply))
    judgment = await make_client(mode="chat").ajudge(QUERY, PASSAGE)
    assert (judgment.prompt_tokens, judgment.reasoning_tokens, judgment.requests) == (
        70, 20, 1 + PROBE)


async def test_rerank_counts_the_shared_request_once(respx_mock: respx.MockRouter) -> None:
    results = [
        {"index": i, "relevance_score": s, "relevant": s >= 0.5, "reasoning": "r",
         "source": "answer_logprobs", "reasoning_tokens": 10 + i, "prompt_tokens": 50 + i}
        for i, s in enumerate((0.9, 0.2, 0.6))
    ]
    route = respx_mock.post(f"{BASE_URL}/rerank").mock(
        return_value=ok({"results": results})
    )
    judgments = await make_client(mode="rerank").ajudge_all(QUERY, ["a", "b", "c"])
    assert route.call_count == 1
    assert [j.prompt_tokens for j in judgments] == [50, 51, 52]
    assert [j.requests for j in judgments] == [1, 0, 0]
    assert total_usage(judgments)["requests"] == 1


async def test_cache_hit_sends_nothing_and_says_so(respx_mock: respx.MockRouter) -> None:
    respx_mock.post(f"{BASE_URL}/completions").mock(return_value=ok(vllm_completion()))
    client = make_client(cache=True)
    first = await client.arerank(QUERY, [PASSAGE])
    again = await client.arerank(QUERY, [PASSAGE, PASSAGE])
    assert [(j.cached, j.requests) for j in first] == [(False, 1 + PROBE)]
    assert [(j.cached, j.requests) for j in again] == [(True, 0), (True, 0)]
    # the stored judgment keeps the tokens it cost when it was made ...
    assert again[0].prompt_tokens == 61
    # ... but a call's totals count only what that call spent
    assert total_usage(again) == {
        "prompt_tokens": 0, "reasoning_tokens": 0, "requests": 0, "cached": 2,
    }


def test_total_usage_of_nothing() -> None:
    assert total_usage([]) == {"prompt_tokens": 0, "reasoning_tokens": 0, "requests": 0,
                               "cached": 0}


def test_new_fields_default_for_judgments_stored_before_them() -> None:
    old = Judgment.model_validate({"index": 0, "relevant": True, "score": 0.8,
                                   "source": "answer_logprobs", "reasoning_tokens": 5})
    assert (old.prompt_tokens, old.requests, old.cached) == (0, 0, False)


def test_counting_outside_a_judgment_is_harmless() -> None:
    with counting_requests() as outer:
        with counting_requests() as inner:
            pass
    assert (outer.n, inner.n) == (0, 0)


@pytest.mark.parametrize("value", [None, "12", -3, True])
async def test_a_bad_prompt_count_reads_as_unknown(respx_mock: respx.MockRouter, value) -> None:
    payload = vllm_completion()
    payload["usage"]["prompt_tokens"] = value
    respx_mock.post(f"{BASE_URL}/completions").mock(return_value=ok(payload))
    judgment = await make_client().ajudge(QUERY, PASSAGE)
    assert judgment.prompt_tokens == 0 and judgment.ok
