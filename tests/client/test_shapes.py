"""The client reads the answer in each server's response shape (respx-mocked HTTP)."""

from __future__ import annotations

import httpx
import pytest
import respx

from rank1_integrations import JudgmentError, Rank1Client
from rank1_integrations.errors import BadResponseError
from rank1_integrations.protocol import VerdictSource

from .rank1_payloads import (
    BASE_URL,
    FALSE_ID,
    TRUE_ID,
    body_of,
    http_client,
    llama_cpp_python_completion,
    llama_server_completion,
    llama_server_sse,
    prompt_for,
    sigmoid_of,
    sse_response,
    vllm_completion,
    vllm_forced,
)


def make_client(**kwargs) -> Rank1Client:
    kwargs.setdefault("cache", None)
    kwargs.setdefault("retry_backoff", 0.01)
    # the openai SDK here sends through httpx2 unless given a (legacy) httpx client, and
    # respx intercepts httpx: every respx test injects one
    kwargs.setdefault("client", http_client())
    return Rank1Client(BASE_URL, api_key="sk-test", model="jhu-clsp/rank1-7b", **kwargs)


@respx.mock(assert_all_mocked=True)
async def test_vllm_answer_read_at_the_kept_stop_token(respx_mock: respx.MockRouter) -> None:
    route = respx_mock.post(f"{BASE_URL}/completions").mock(
        return_value=httpx.Response(200, json=vllm_completion())
    )
    judgment = await make_client().ajudge("what causes tides?", "The Moon pulls the sea.")
    assert route.call_count == 1
    assert judgment.source is VerdictSource.ANSWER_LOGPROBS
    assert judgment.score == pytest.approx(sigmoid_of(-0.1, -2.4))
    assert type(judgment.score) is float
    assert judgment.relevant is True
    assert judgment.score_estimated is False
    assert judgment.reasoning == "The query asks about tides. The passage is true to it."
    assert judgment.reasoning_tokens == 16
    assert judgment.truncated is False
    assert judgment.error is None


@respx.mock
async def test_vllm_false_answer_with_minus_inf(respx_mock: respx.MockRouter) -> None:
    payload = vllm_completion(answer=" false", answer_top={" false": -0.001, " true": -9999.0,
                                                           "\n": -8.0})
    respx_mock.post(f"{BASE_URL}/completions").mock(return_value=httpx.Response(200, json=payload))
    judgment = await make_client().ajudge("q", "p")
    assert judgment.score == 0.0
    assert judgment.relevant is False
    assert judgment.score_estimated is False
    assert judgment.source is VerdictSource.ANSWER_LOGPROBS


@respx.mock
async def test_llama_cpp_python_exact_answer_wins_over_a_variant(
    respx_mock: respx.MockRouter,
) -> None:
    # llama-cpp-python: one key per string. ' False' is listed as more probable than the
    # exact ' false': the exact tokens are read, the variant does not override it
    top = {" true": -0.2, " False": -0.9, " false": -1.6, "\n": -4.0}
    respx_mock.post(f"{BASE_URL}/completions").mock(
        return_value=httpx.Response(200, json=llama_cpp_python_completion(top))
    )
    judgment = await make_client().ajudge("q", "p")
    assert judgment.score == pytest.approx(sigmoid_of(-0.2, -1.6))
    assert judgment.score_estimated is False
    assert judgment.source is VerdictSource.ANSWER_LOGPROBS
    assert judgment.reasoning == "The passage covers it."


@respx.mock
async def test_llama_cpp_python_variant_stands_in_for_an_absent_answer(
    respx_mock: respx.MockRouter,
) -> None:
    top = {" true": -0.2, " False": -1.6, "\n": -4.0}  # no exact ' false' in the top-k
    respx_mock.post(f"{BASE_URL}/completions").mock(
        return_value=httpx.Response(200, json=llama_cpp_python_completion(top))
    )
    judgment = await make_client().ajudge("q", "p")
    assert judgment.score == pytest.approx(sigmoid_of(-0.2, -1.6))
    assert judgment.score_estimated is True


@respx.mock
async def test_llama_server_switches_to_streaming(respx_mock: respx.MockRouter) -> None:
    """llama-server's non-streaming reply lacks the stop tokens' logprobs: the client asks
    again streaming (SSE), where '</think>' has empty text and ' true' keeps its top-k."""
    bodies: list[dict] = []

    def answer(request: httpx.Request) -> httpx.Response:
        body = body_of(request)
        bodies.append(body)
        if body.get("stream"):
            return sse_response(llama_server_sse())
        return httpx.Response(200, json=llama_server_completion())

    respx_mock.post(f"{BASE_URL}/completions").mock(side_effect=answer)
    client = make_client()
    judgment = await client.ajudge("q", "p")
    assert [bool(b.get("stream")) for b in bodies] == [False, True]
    assert bodies[1]["prompt"] == bodies[0]["prompt"] == prompt_for("q", "p")
    assert judgment.source is VerdictSource.ANSWER_LOGPROBS
    assert judgment.score == pytest.approx(sigmoid_of(-0.2, -1.9))
    assert judgment.reasoning == "The passage covers tides."
    # from then on the client streams straight away
    await client.ajudge("q2", "p2")
    assert [bool(b.get("stream")) for b in bodies] == [False, True, True]


@respx.mock
async def test_llama_server_streaming_with_answer_ids(respx_mock: respx.MockRouter) -> None:
    respx_mock.post(f"{BASE_URL}/completions").mock(
        side_effect=lambda request: sse_response(llama_server_sse())
        if body_of(request).get("stream")
        else httpx.Response(200, json=llama_server_completion())
    )
    judgment = await make_client(answer_token_ids=(TRUE_ID, FALSE_ID)).ajudge("q", "p")
    assert judgment.score == pytest.approx(sigmoid_of(-0.2, -1.9))


@respx.mock
async def test_token_id_keys_with_answer_ids(respx_mock: respx.MockRouter) -> None:
    """vLLM with return_tokens_as_token_ids: keys are 'token_id:N'."""
    payload = vllm_completion(
        reasoning=["token_id:785", "token_id:3239", "token_id:13"],
        answer="token_id:830",
        answer_top={"token_id:830": -0.4, "token_id:895": -1.2, "token_id:198": -5.0},
        stop_reason="</think> true",
    )
    respx_mock.post(f"{BASE_URL}/completions").mock(return_value=httpx.Response(200, json=payload))
    judgment = await make_client(answer_token_ids=(TRUE_ID, FALSE_ID)).ajudge("q", "p")
    assert judgment.source is VerdictSource.ANSWER_LOGPROBS
    assert judgment.score == pytest.approx(sigmoid_of(-0.4, -1.2))


@respx.mock
async def test_missing_false_is_estimated_from_below(respx_mock: respx.MockRouter) -> None:
    payload = vllm_completion(answer_top={" true": -0.01, " yes": -5.0, "\n": -6.0})
    respx_mock.post(f"{BASE_URL}/completions").mock(return_value=httpx.Response(200, json=payload))
    judgment = await make_client().ajudge("q", "p")
    assert judgment.score_estimated is True
    # ' false' bounded by the smallest listed logprob: a lower bound on P(true)
    assert judgment.score == pytest.approx(sigmoid_of(-0.01, -6.0))
    assert judgment.relevant is True
    assert judgment.source is VerdictSource.ANSWER_LOGPROBS


@respx.mock
async def test_missing_true_is_estimated_from_above(respx_mock: respx.MockRouter) -> None:
    payload = vllm_completion(answer=" false",
                              answer_top={" false": -0.02, " no": -4.5, " False": -7.0})
    respx_mock.post(f"{BASE_URL}/completions").mock(return_value=httpx.Response(200, json=payload))
    judgment = await make_client().ajudge("q", "p")
    assert judgment.score_estimated is True
    # ' False' is a variant of ' false' (-0.02 wins); ' true' bounded by the floor -7.0
    assert judgment.score == pytest.approx(sigmoid_of(-7.0, -0.02))
    assert judgment.relevant is False


@respx.mock
async def test_neither_answer_token_goes_to_the_forced_answer(
    respx_mock: respx.MockRouter,
) -> None:
    first = vllm_completion(answer_top={"\n": -0.1, " The": -2.0})
    forced = vllm_forced({" true": -0.7, " false": -0.9})
    route = respx_mock.post(f"{BASE_URL}/completions").mock(
        side_effect=[httpx.Response(200, json=first), httpx.Response(200, json=forced)]
    )
    judgment = await make_client().ajudge("q", "p")
    assert route.call_count == 2
    assert body_of(route.calls[1].request)["max_tokens"] == 1
    assert judgment.source is VerdictSource.FORCED_ANSWER
    assert judgment.score == pytest.approx(sigmoid_of(-0.7, -0.9))


@respx.mock
async def test_no_logprobs_at_all_gives_text_only_when_allowed(
    respx_mock: respx.MockRouter,
) -> None:
    payload = vllm_completion(answer=" false")
    payload["choices"][0]["logprobs"] = None
    route = respx_mock.post(f"{BASE_URL}/completions").mock(
        return_value=httpx.Response(200, json=payload)
    )
    judgment = await make_client(allow_text_only=True).ajudge("q", "p")
    assert route.call_count == 1  # opted in: no retry
    assert judgment.source is VerdictSource.TEXT_ONLY
    assert (judgment.relevant, judgment.score) == (False, 0.0)


@respx.mock
async def test_no_logprobs_is_retried_then_fails_by_default(
    respx_mock: respx.MockRouter,
) -> None:
    """A mix of calibrated and 0/1 scores silently ruins a ranking: without the opt-in a
    response that lacks the logprobs asked for is retried like a 5xx, then fails."""
    payload = vllm_completion(answer=" false")
    payload["choices"][0]["logprobs"] = None
    route = respx_mock.post(f"{BASE_URL}/completions").mock(
        return_value=httpx.Response(200, json=payload)
    )
    judgments = await make_client(max_retries=2, on_error="keep").arerank("q", ["p"])
    assert route.call_count == 3
    assert judgments[0].score is None and judgments[0].source is None
    assert "BadResponseError" in judgments[0].error and "allow_text_only" in judgments[0].error
    with pytest.raises(JudgmentError) as info:
        await make_client(max_retries=0).ajudge("q", "p")
    assert isinstance(info.value.__cause__, BadResponseError)


@respx.mock
async def test_no_logprobs_once_is_retried_and_then_calibrated(
    respx_mock: respx.MockRouter,
) -> None:
    bare = vllm_completion(answer=" false")
    bare["choices"][0]["logprobs"] = None
    route = respx_mock.post(f"{BASE_URL}/completions").mock(side_effect=[
        httpx.Response(200, json=bare), httpx.Response(200, json=vllm_completion())])
    judgment = await make_client().ajudge("q", "p")
    assert route.call_count == 2
    assert judgment.source is VerdictSource.ANSWER_LOGPROBS


@respx.mock
async def test_forced_answer_without_logprobs_is_text_only_when_allowed(
    respx_mock: respx.MockRouter,
) -> None:
    first = vllm_completion(answer=None, finish="length")
    first["choices"][0]["logprobs"] = None
    forced = vllm_forced({" true": -0.1})
    forced["choices"][0]["logprobs"] = None
    respx_mock.post(f"{BASE_URL}/completions").mock(side_effect=[
        httpx.Response(200, json=first), httpx.Response(200, json=forced)])
    judgment = await make_client(allow_text_only=True).ajudge("q", "p")
    assert judgment.source is VerdictSource.TEXT_ONLY
    assert (judgment.relevant, judgment.score) == (True, 1.0)


@respx.mock
async def test_llama_server_streams_even_if_a_reasoning_position_lists_both_answers(
    respx_mock: respx.MockRouter,
) -> None:
    """The non-streaming reply's last kept position is a reasoning token; that its top-k
    happens to list ' true' and ' false' must not make it the answer position."""
    bodies: list[dict] = []
    plain = llama_server_completion()
    last = plain["choices"][0]["logprobs"]["content"][-1]
    last["top_logprobs"] += [
        {"id": TRUE_ID, "token": " true", "bytes": [32, 116, 114, 117, 101], "logprob": -4.0},
        {"id": FALSE_ID, "token": " false", "bytes": [32, 102, 97, 108, 115, 101],
         "logprob": -4.2},
    ]

    def answer(request: httpx.Request) -> httpx.Response:
        bodies.append(body_of(request))
        if bodies[-1].get("stream"):
            return sse_response(llama_server_sse())
        return httpx.Response(200, json=plain)

    respx_mock.post(f"{BASE_URL}/completions").mock(side_effect=answer)
    judgment = await make_client().ajudge("q", "p")
    assert [bool(b.get("stream")) for b in bodies] == [False, True]
    assert judgment.score == pytest.approx(sigmoid_of(-0.2, -1.9))
