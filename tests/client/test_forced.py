"""The forced answer: when the reasoning did not end in an answer, one more request on the
official forced prompt gives the verdict, or the judgment fails visibly (never a 0.5)."""

from __future__ import annotations

import httpx
import pytest
import respx

from rank1_integrations import JudgmentError, NoVerdictError, Rank1Client
from rank1_integrations.protocol import VerdictSource

from .rank1_payloads import (
    BASE_URL,
    FALSE_ID,
    TRUE_ID,
    body_of,
    http_client,
    sigmoid_of,
    vllm_completion,
    vllm_forced,
)

QUERY = "what causes tides?"
PASSAGE = "The Moon's gravity pulls the oceans."
PROMPT = (
    "Determine if the following passage is relevant to the query. Answer only with "
    "'true' or 'false'.\nQuery: what causes tides?\nPassage: The Moon's gravity pulls the "
    "oceans.\n<think>"
)
CUT_REASONING = ["The", " query", " asks", " what", " causes", " tides", ".", " The", " passage",
                 " says", " gravity", "!", " But", " it", " does", " not"]


def make_client(**kwargs) -> Rank1Client:
    kwargs.setdefault("cache", None)
    kwargs.setdefault("retry_backoff", 0.01)
    kwargs.setdefault("client", http_client())
    return Rank1Client(BASE_URL, model="jhu-clsp/rank1-7b", max_reasoning_tokens=16, **kwargs)


def mock_two(respx_mock: respx.MockRouter, first: dict, second: dict) -> respx.Route:
    return respx_mock.post(f"{BASE_URL}/completions").mock(
        side_effect=[httpx.Response(200, json=first), httpx.Response(200, json=second)]
    )


@respx.mock
async def test_budget_spent_sends_the_official_forced_prompt(respx_mock: respx.MockRouter) -> None:
    first = vllm_completion(reasoning=CUT_REASONING, answer=None, finish="length")
    route = mock_two(respx_mock, first, vllm_forced({" true": -0.3, " false": -1.4, "\n": -6.0}))
    judgment = await make_client().ajudge(QUERY, PASSAGE)

    assert route.call_count == 2
    body = body_of(route.calls[1].request)
    # cleaned back to the last sentence end; one '</think>'; nothing after it
    assert body["prompt"] == (
        "Determine if the following passage is relevant to the query. Answer only with "
        "'true' or 'false'.\nQuery: what causes tides?\nPassage: The Moon's gravity pulls the "
        "oceans.\n<think>\nThe query asks what causes tides. The passage says gravity!\n</think>"
    )
    assert body["max_tokens"] == 1
    assert body["temperature"] == 0
    assert body["logprobs"] == 20
    assert body["skip_special_tokens"] is False
    assert "allowed_token_ids" not in body  # no ids known: nothing to restrict to
    assert judgment.source is VerdictSource.FORCED_ANSWER
    assert judgment.score == pytest.approx(sigmoid_of(-0.3, -1.4))
    assert judgment.relevant is True
    # the whole chain is kept, not only the one forced token
    assert judgment.reasoning == (
        "The query asks what causes tides. The passage says gravity! But it does not"
    )
    assert judgment.reasoning_tokens == 16


@respx.mock
async def test_forced_prompt_has_no_second_think_end(respx_mock: respx.MockRouter) -> None:
    # the model closed its reasoning but then wrote no answer before the budget ran out
    first = vllm_completion(reasoning=["It", " is", " relevant", ".", "\n", "</think>", "\n\n",
                                       "The"], answer=None, finish="length")
    route = mock_two(respx_mock, first, vllm_forced({" true": -0.1, " false": -2.0}))
    judgment = await make_client().ajudge(QUERY, PASSAGE)
    prompt = body_of(route.calls[1].request)["prompt"]
    assert prompt == PROMPT + "\nIt is relevant.\n</think>"
    assert prompt.count("</think>") == 1
    assert judgment.reasoning == "It is relevant."


@respx.mock
async def test_forced_answer_asks_for_exactly_the_answer_ids(
    respx_mock: respx.MockRouter,
) -> None:
    first = vllm_completion(reasoning=CUT_REASONING, answer=None, finish="length")
    route = mock_two(respx_mock, first, vllm_forced({" false": -0.2, " true": -1.7}, " false"))
    judgment = await make_client(answer_token_ids=(TRUE_ID, FALSE_ID)).ajudge(QUERY, PASSAGE)
    first_body, body = body_of(route.calls[0].request), body_of(route.calls[1].request)
    assert body["allowed_token_ids"] == [830, 895]
    assert body["logprob_token_ids"] == [830, 895]
    assert "allowed_token_ids" not in first_body
    assert judgment.score == pytest.approx(sigmoid_of(-1.7, -0.2))
    assert judgment.relevant is False


@respx.mock
async def test_cut_output_with_both_tokens_is_not_scored_there(
    respx_mock: respx.MockRouter,
) -> None:
    """FIX of the official code: an output cut at max_tokens whose last top-20 happens to
    hold both answer tokens is not scored at that arbitrary position."""
    first = vllm_completion(reasoning=CUT_REASONING, answer=None, finish="length",
                            last_top={" not": -0.5, " true": -1.0, " false": -1.1})
    route = mock_two(respx_mock, first, vllm_forced({" true": -2.0, " false": -0.3}, " false"))
    judgment = await make_client().ajudge(QUERY, PASSAGE)
    assert route.call_count == 2
    assert judgment.source is VerdictSource.FORCED_ANSWER
    assert judgment.score == pytest.approx(sigmoid_of(-2.0, -0.3))


@respx.mock
async def test_stop_on_eos_is_not_scored_at_the_eos_position(
    respx_mock: respx.MockRouter,
) -> None:
    """Generation that ended on end-of-text (no stop string matched) gave no answer: the
    last position is not the answer position even if its top-20 holds both tokens."""
    first = vllm_completion(reasoning=CUT_REASONING[:7] + ["<|endoftext|>"], answer=None,
                            finish="stop", stop_reason=None,
                            last_top={"<|endoftext|>": -0.2, " true": -2.5, " false": -2.6})
    route = mock_two(respx_mock, first, vllm_forced({" true": -0.4, " false": -1.2}))
    judgment = await make_client().ajudge(QUERY, PASSAGE)
    assert route.call_count == 2
    assert judgment.source is VerdictSource.FORCED_ANSWER
    assert judgment.score == pytest.approx(sigmoid_of(-0.4, -1.2))


NO_ANSWER = {"\n": -0.1, " The": -2.3, " It": -3.0}


@respx.mock
async def test_forced_answer_without_tokens_raises(respx_mock: respx.MockRouter) -> None:
    first = vllm_completion(reasoning=CUT_REASONING, answer=None, finish="length")
    route = mock_two(respx_mock, first, vllm_forced(NO_ANSWER, "\n"))
    with pytest.raises(JudgmentError) as info:
        await make_client().ajudge(QUERY, PASSAGE)
    assert isinstance(info.value.__cause__, NoVerdictError)
    assert info.value.index == 0
    assert route.call_count == 2  # a missing verdict is not retried


@respx.mock
async def test_forced_answer_without_tokens_is_kept_with_its_error(
    respx_mock: respx.MockRouter,
) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        body = body_of(request)
        if body["max_tokens"] == 1:
            ok = "good" in body["prompt"]
            return httpx.Response(200, json=vllm_forced(
                {" true": -0.2, " false": -1.0} if ok else NO_ANSWER))
        return httpx.Response(200, json=vllm_completion(
            reasoning=CUT_REASONING, answer=None, finish="length"))

    respx_mock.post(f"{BASE_URL}/completions").mock(side_effect=answer)
    judgments = await make_client(on_error="keep").ajudge_all(
        QUERY, ["good one", "bad one", "good two"]
    )
    assert [j.index for j in judgments] == [0, 1, 2]
    bad = judgments[1]
    assert bad.score is None and bad.relevant is None and bad.source is None
    assert not bad.ok
    assert "NoVerdictError" in bad.error and "passage 1" in bad.error
    assert [j.score for j in judgments[::2]] == [pytest.approx(sigmoid_of(-0.2, -1.0))] * 2
    assert all(j.score != 0.5 for j in judgments if j.score is not None)


def forced_server(failures: list[httpx.Response], counts: dict[str, int]):
    """Chain requests get a cut chain; forced requests get ``failures`` first, then an
    answer."""
    def answer(request: httpx.Request) -> httpx.Response:
        step = "forced" if body_of(request)["max_tokens"] == 1 else "chain"
        counts[step] = counts.get(step, 0) + 1
        if step == "chain":
            return httpx.Response(200, json=vllm_completion(
                reasoning=CUT_REASONING, answer=None, finish="length"))
        if failures:
            return failures.pop(0)
        return httpx.Response(200, json=vllm_forced({" true": -0.3, " false": -1.4}))
    return answer


@respx.mock
async def test_failed_forced_answer_is_retried_alone(respx_mock: respx.MockRouter) -> None:
    """The forced answer is its own step: a 503 on it is retried without generating the
    reasoning chain again, and the chain's tokens are counted once."""
    counts: dict[str, int] = {}
    failures = [httpx.Response(503, json={"error": "busy"}),
                httpx.Response(200, content=b'{"choices": [{"text": " tr',
                               headers={"content-type": "application/json"})]
    respx_mock.post(f"{BASE_URL}/completions").mock(side_effect=forced_server(failures, counts))
    judgment = await make_client(max_retries=2).ajudge(QUERY, PASSAGE)
    assert counts == {"chain": 1, "forced": 3}
    assert judgment.source is VerdictSource.FORCED_ANSWER
    assert judgment.score == pytest.approx(sigmoid_of(-0.3, -1.4))
    assert judgment.reasoning_tokens == 16


@respx.mock
async def test_each_step_has_its_own_tries(respx_mock: respx.MockRouter) -> None:
    counts: dict[str, int] = {}
    failures = [httpx.Response(500, json={})] * 3
    respx_mock.post(f"{BASE_URL}/completions").mock(side_effect=forced_server(failures, counts))
    with pytest.raises(JudgmentError) as info:
        await make_client(max_retries=2).ajudge(QUERY, PASSAGE)
    # the forced step had 1 + 2 tries and failed; the chain was not sent again
    assert counts == {"chain": 1, "forced": 3}
    assert info.value.__cause__.status_code == 500


@respx.mock
async def test_an_empty_chain_takes_the_forced_answer(respx_mock: respx.MockRouter) -> None:
    """A chain that ends before its first token (end of text at once) is no server fault,
    even though llama-cpp-python then sends ``logprobs: null``: the forced answer follows,
    on the first try."""
    first = {
        "id": "cmpl-0", "object": "text_completion", "created": 1764290002, "model": "m",
        "choices": [{"text": "", "index": 0, "logprobs": None, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 40, "completion_tokens": 0, "total_tokens": 40},
    }
    route = mock_two(respx_mock, first, vllm_forced({" true": -1.2, " false": -0.4}))
    judgment = await make_client(max_retries=0).ajudge(QUERY, PASSAGE)
    assert route.call_count == 2
    assert judgment.source is VerdictSource.FORCED_ANSWER
    assert judgment.score == pytest.approx(sigmoid_of(-1.2, -0.4))
    assert judgment.reasoning == "" and judgment.reasoning_tokens == 0
