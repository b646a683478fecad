"""End to end over real loopback HTTP (no respx): Rank1Client against FakeRank1Server,
through the SDK's default HTTP stack, in completions and chat modes."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterator

import pytest

from rank1_integrations import JudgmentError, NoVerdictError, Rank1Client
from rank1_integrations.protocol import VerdictSource
from rank1_integrations.testing import FakeRank1Server, overlap_score

QUERY = "what causes ocean tides"
PASSAGES = [
    "Ocean tides are caused by the gravity of the Moon and the Sun.",
    "A recipe for lemon cake with butter and sugar.",
    {"text": "The Moon's pull causes tides in the ocean.", "title": "Tides"},
    "Stock markets fell on Tuesday.",
]


def text_of(passage: str | dict) -> str:
    return passage if isinstance(passage, str) else f"{passage['title']} {passage['text']}"


@pytest.fixture(scope="module")
def server() -> Iterator[FakeRank1Server]:
    with FakeRank1Server() as fake:
        yield fake


@pytest.mark.parametrize("mode", ["completions", "chat"])
def test_sync_rerank(server: FakeRank1Server, mode: str) -> None:
    with Rank1Client(server.base_url, mode=mode, cache=None) as client:
        judgments = client.rerank(QUERY, PASSAGES)
        in_order = client.judge_all(QUERY, PASSAGES)
    # rerank: best first (score descending, ties in input order), each with its index
    expected = [overlap_score(QUERY, text_of(p)) for p in PASSAGES]
    assert [j.index for j in judgments] == sorted(range(4), key=lambda i: -expected[i])
    assert [j.index for j in judgments] == [2, 0, 1, 3]
    assert [j.index for j in in_order] == [0, 1, 2, 3]
    # the same judgments; the first call's first one also counts the server's probes
    assert [j.model_copy(update={"requests": 0}) for j in sorted(
        judgments, key=lambda j: j.index)] == [
        j.model_copy(update={"requests": 0}) for j in in_order]
    for judgment, passage in zip(in_order, PASSAGES, strict=True):
        assert judgment.source is VerdictSource.ANSWER_LOGPROBS
        assert judgment.score == pytest.approx(overlap_score(QUERY, text_of(passage)), abs=1e-9)
        assert judgment.relevant is (judgment.score >= 0.5)
        assert judgment.reasoning.startswith("The query asks about")
    assert [j.relevant for j in in_order] == [True, False, True, False]


@pytest.mark.parametrize("mode", ["completions", "chat"])
async def test_async_rerank_and_judge(server: FakeRank1Server, mode: str) -> None:
    async with Rank1Client(server.base_url, mode=mode, cache=None, concurrency=2) as client:
        judgments, single = await asyncio.gather(
            client.ajudge_all(QUERY, PASSAGES), client.ajudge(QUERY, PASSAGES[1])
        )
    assert [round(j.score, 9) for j in judgments] == [
        round(overlap_score(QUERY, text_of(p)), 9) for p in PASSAGES
    ]
    assert single.score == pytest.approx(judgments[1].score)


def test_sync_judge_with_title(server: FakeRank1Server) -> None:
    with Rank1Client(server.base_url, cache=None) as client:
        judgment = client.judge(QUERY, "pull of the Moon", title="Ocean tides")
    assert judgment.score == pytest.approx(overlap_score(QUERY, "Ocean tides pull of the Moon"))


def test_forced_answer_over_http(server: FakeRank1Server) -> None:
    before = server.requests
    with Rank1Client(server.base_url, max_reasoning_tokens=4, cache=None) as client:
        judgment = client.judge(QUERY, PASSAGES[0])
    assert server.requests - before == 2
    assert judgment.source is VerdictSource.FORCED_ANSWER
    assert judgment.score == pytest.approx(overlap_score(QUERY, PASSAGES[0]))
    assert judgment.reasoning == "The query asks about"  # four tokens, the budget


def test_chat_without_budget_has_no_verdict(server: FakeRank1Server) -> None:
    with Rank1Client(server.base_url, mode="chat", max_reasoning_tokens=4, cache=None) as client:
        with pytest.raises(JudgmentError) as info:
            client.judge(QUERY, PASSAGES[0])
        kept = client.rerank(QUERY, PASSAGES[:2], on_error="keep")
    assert isinstance(info.value.__cause__, NoVerdictError)
    assert [(j.index, j.score, j.ok) for j in kept] == [(0, None, False), (1, None, False)]


def test_cache_over_http(server: FakeRank1Server) -> None:
    with Rank1Client(server.base_url) as client:
        before = server.requests
        client.rerank(QUERY, PASSAGES)
        client.rerank(QUERY, PASSAGES)
        assert server.requests - before == len(PASSAGES)


def test_two_event_loops_one_client(server: FakeRank1Server) -> None:
    """One Rank1Client, two asyncio.run calls: each loop gets its own SDK client."""
    client = Rank1Client(server.base_url, cache=None)

    first = asyncio.run(client.arerank(QUERY, PASSAGES))
    second = asyncio.run(client.arerank(QUERY, PASSAGES))
    assert [j.score for j in first] == [j.score for j in second]
    assert all(j.ok for j in first + second)
    client.close()


def test_fake_reads_prompts_with_the_protocol(server: FakeRank1Server) -> None:
    """The fake parses what build_prompt and forced_answer_prompt write (title and
    instruction included) and refuses any other text."""
    import httpx

    from rank1_integrations.protocol import build_prompt, forced_answer_prompt

    prompt = build_prompt("tides moon", "the sea", title="Moon", instruction="Find {query}.")
    url = server.base_url + "/completions"
    p_true = overlap_score("Find tides moon.", "Moon the sea")
    forced = httpx.post(url, json={"prompt": forced_answer_prompt(prompt, "It is. So")}).json()
    top = forced["choices"][0]["logprobs"]["top_logprobs"][0]
    assert top[" true"] == pytest.approx(math.log(p_true))
    assert forced["choices"][0]["text"] == (" true" if p_true >= 0.5 else " false")
    first = httpx.post(url, json={"prompt": prompt, "max_tokens": 200}).json()["choices"][0]
    assert first["finish_reason"] == "stop" and "tides moon" in first["text"]
    refused = httpx.post(url, json={"prompt": "Query: tides\nPassage: moon\n<think>"})
    assert refused.status_code == 400 and "not a rank1 prompt" in refused.text
