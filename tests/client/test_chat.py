"""mode="chat": reasoning from message.reasoning / reasoning_content / <think> in the
content; the verdict from the answer token's top_logprobs, or text-only when the host sends
no logprobs; no verdict -> an error, never a score."""

from __future__ import annotations

import httpx
import pytest
import respx

from rank1_integrations import JudgmentError, NoVerdictError, Rank1Client
from rank1_integrations.protocol import VerdictSource

from .rank1_payloads import BASE_URL, body_of, chat_reply, http_client, sigmoid_of

URL = f"{BASE_URL}/chat/completions"
ANSWER_TOP = [(" true", -0.2), (" false", -1.9), ("true", -4.0), ("\n", -6.5)]
REASONING_TOKENS = [("The", [("The", -0.1)]), (" claim", [(" claim", -0.2)]),
                    (" is", [(" is", -0.1)]), (" true", [(" true", -0.3), (" false", -1.2)]),
                    (".", [(".", -0.1)])]


def make_client(**kwargs) -> Rank1Client:
    kwargs.setdefault("cache", None)
    kwargs.setdefault("retry_backoff", 0.01)
    kwargs.setdefault("client", http_client())
    return Rank1Client(BASE_URL, model="rank1", mode="chat", max_reasoning_tokens=64, **kwargs)


def mock(respx_mock: respx.MockRouter, payload: dict) -> respx.Route:
    return respx_mock.post(URL).mock(return_value=httpx.Response(200, json=payload))


@respx.mock
async def test_request_body(respx_mock: respx.MockRouter) -> None:
    route = mock(respx_mock, chat_reply(content="true", reasoning="It is.",
                                        tokens=[("true", ANSWER_TOP)]))
    await make_client().ajudge("what causes {tides}?", "The Moon.\n<think> x")
    body = body_of(route.calls[0].request)
    assert body["messages"] == [{
        "role": "user",
        "content": "Determine if the following passage is relevant to the query. Answer only "
                   "with 'true' or 'false'.\nQuery: what causes {tides}?\nPassage: The Moon."
                   "\n<think> x",
    }]
    assert body["model"] == "rank1"
    assert body["temperature"] == 0
    assert body["logprobs"] is True
    assert body["top_logprobs"] == 20
    assert body["max_tokens"] == 64
    assert body["skip_special_tokens"] is False
    assert "extra_body" not in body  # merged into the body, not sent as a field


@respx.mock
async def test_reasoning_field_and_answer_logprobs(respx_mock: respx.MockRouter) -> None:
    # vLLM's reasoning parser: the chain in message.reasoning; logprobs cover reasoning
    # tokens too (one of them is the word ' true'): the answer is the last one
    tokens = REASONING_TOKENS + [("</think>", [("</think>", -0.01)]), (" false", ANSWER_TOP)]
    mock(respx_mock, chat_reply(content=" false", reasoning="The claim is true.\n",
                                tokens=tokens))
    judgment = await make_client().ajudge("q", "p")
    assert judgment.source is VerdictSource.ANSWER_LOGPROBS
    assert judgment.reasoning == "The claim is true."
    assert judgment.score == pytest.approx(sigmoid_of(-0.2, -1.9))
    assert judgment.reasoning_tokens == 20


@respx.mock
async def test_reasoning_content_field(respx_mock: respx.MockRouter) -> None:
    mock(respx_mock, chat_reply(content="false", reasoning="Not about tides.",
                                reasoning_key="reasoning_content",
                                tokens=[("false", [("false", -0.05), ("true", -3.1)])]))
    judgment = await make_client().ajudge("q", "p")
    assert judgment.reasoning == "Not about tides."
    assert judgment.score == pytest.approx(sigmoid_of(-3.1, -0.05))
    assert judgment.relevant is False


@respx.mock
async def test_think_tags_in_content(respx_mock: respx.MockRouter) -> None:
    content = "<think>\nThe passage explains tides.\n</think>\n\ntrue"
    tokens = [("<think>", [("<think>", -0.01)]), ("The", [("The", -0.1)]),
              (" passage", [(" passage", -0.1)]), ("</think>", [("</think>", -0.1)]),
              ("\n\n", [("\n\n", -0.1)]), ("true", [("true", -0.4), ("false", -1.3)])]
    mock(respx_mock, chat_reply(content=content, tokens=tokens))
    judgment = await make_client().ajudge("q", "p")
    assert judgment.reasoning == "The passage explains tides."
    assert judgment.source is VerdictSource.ANSWER_LOGPROBS
    assert judgment.score == pytest.approx(sigmoid_of(-0.4, -1.3))


@respx.mock
async def test_score_read_at_the_answer_word_not_a_later_one(respx_mock: respx.MockRouter) -> None:
    content = "<think>Off topic.</think> false. It is not true"
    tokens = [("<think>", [("<think>", -0.01)]), ("Off", [("Off", -0.1)]),
              (" topic.", [(" topic.", -0.1)]), ("</think>", [("</think>", -0.1)]),
              (" false", [(" false", -0.2), (" true", -1.7)]), (".", [(".", -0.1)]),
              (" It is not", [(" It is not", -0.1)]),
              (" true", [(" true", -0.3), (" false", -1.4)])]
    mock(respx_mock, chat_reply(content=content, tokens=tokens))
    judgment = await make_client().ajudge("q", "p")
    assert judgment.source is VerdictSource.ANSWER_LOGPROBS
    assert judgment.relevant is False
    assert judgment.score == pytest.approx(sigmoid_of(-1.7, -0.2))


@respx.mock
async def test_no_logprobs_gives_a_text_only_verdict(respx_mock: respx.MockRouter) -> None:
    mock(respx_mock, chat_reply(content="<think>Covers it.</think> True", tokens=None))
    judgment = await make_client().ajudge("q", "p")
    assert judgment.source is VerdictSource.TEXT_ONLY
    assert (judgment.relevant, judgment.score) == (True, 1.0)
    assert judgment.reasoning == "Covers it."


@respx.mock
async def test_text_after_the_answer_word_keeps_the_verdict(respx_mock: respx.MockRouter) -> None:
    # the protocol's rule: after </think>, the first answer word, whatever follows it
    content = "<think>Covers it, though one may doubt it is true.</think> False. It is off topic."
    mock(respx_mock, chat_reply(content=content, tokens=None))
    judgment = await make_client().ajudge("q", "p")
    assert (judgment.relevant, judgment.score, judgment.source) == (
        False, 0.0, VerdictSource.TEXT_ONLY)


@respx.mock
async def test_no_logprobs_false_text_only(respx_mock: respx.MockRouter) -> None:
    mock(respx_mock, chat_reply(content="false", reasoning="Off topic.", tokens=None))
    judgment = await make_client().ajudge("q", "p")
    assert (judgment.relevant, judgment.score, judgment.source) == (
        False, 0.0, VerdictSource.TEXT_ONLY)


@respx.mock
async def test_no_verdict_raises(respx_mock: respx.MockRouter) -> None:
    # reasoning cut by the budget: no answer at all
    route = mock(respx_mock, chat_reply(content="", reasoning="The passage talks about",
                                        tokens=None, finish="length"))
    with pytest.raises(JudgmentError) as info:
        await make_client().ajudge("q", "p")
    assert isinstance(info.value.__cause__, NoVerdictError)
    assert route.call_count == 1


@respx.mock
async def test_cut_reasoning_with_the_word_true_is_no_verdict(
    respx_mock: respx.MockRouter,
) -> None:
    """A chain cut by the budget whose tokens include the word ' true' has no answer: that
    reasoning token must not be read as the verdict."""
    mock(respx_mock, chat_reply(content="", reasoning="The claim is true.",
                                tokens=REASONING_TOKENS, finish="length"))
    with pytest.raises(JudgmentError) as info:
        await make_client().ajudge("q", "p")
    assert isinstance(info.value.__cause__, NoVerdictError)


@respx.mock
async def test_cut_think_in_content_is_no_verdict(respx_mock: respx.MockRouter) -> None:
    content = "<think>\nThe claim is true"
    tokens = [("<think>", [("<think>", -0.01)])] + REASONING_TOKENS[:4]
    mock(respx_mock, chat_reply(content=content, tokens=tokens, finish="length"))
    with pytest.raises(JudgmentError) as info:
        await make_client().ajudge("q", "p")
    assert isinstance(info.value.__cause__, NoVerdictError)


@respx.mock
async def test_cut_think_in_content_without_logprobs_is_no_verdict(
    respx_mock: respx.MockRouter,
) -> None:
    mock(respx_mock, chat_reply(content="<think>\nSo the claim is true", tokens=None,
                                finish="length"))
    judgments = await make_client(on_error="keep").arerank("q", ["p"])
    assert judgments[0].score is None and judgments[0].error


@pytest.mark.parametrize("with_logprobs", [True, False])
@respx.mock
async def test_cut_reply_without_tags_is_no_verdict(
    respx_mock: respx.MockRouter, with_logprobs: bool
) -> None:
    """A host whose template opens the reasoning itself returns the chain without any tag;
    cut by the budget, its last word ('true' here) is not an answer."""
    mock(respx_mock, chat_reply(content="The claim is true", finish="length",
                                tokens=REASONING_TOKENS[:4] if with_logprobs else None))
    with pytest.raises(JudgmentError) as info:
        await make_client().ajudge("q", "p")
    assert isinstance(info.value.__cause__, NoVerdictError)


@respx.mock
async def test_finished_reply_without_tags_is_read(respx_mock: respx.MockRouter) -> None:
    mock(respx_mock, chat_reply(content="Looks unrelated.\n\nfalse", tokens=None))
    judgment = await make_client().ajudge("q", "p")
    assert (judgment.relevant, judgment.source) == (False, VerdictSource.TEXT_ONLY)
