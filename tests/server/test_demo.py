"""End to end on the hand-wired demo model, whose answer is known (P(true) follows the
query/passage word overlap): the stop path through every client path gives the verdict
the model was built to give."""

from __future__ import annotations

import httpx
import pytest
from rank1_server.models.demo_model import expected_completion, expected_p_true

from rank1_integrations import Rank1Client
from rank1_integrations.protocol import VerdictSource

QUERY = "how do bees make honey from nectar"
DOCS = [
    "Volcanoes erupt when magma rises through the crust.",
    "Bees make honey from nectar they collect from flowers.",
    {"text": "Honey bees live in hives.", "title": "Bees"},
]


def _fields(doc):
    return (doc["text"], doc["title"]) if isinstance(doc, dict) else (doc, None)


def test_rerank_gives_the_known_verdicts(demo_server: str) -> None:
    r = httpx.post(f"{demo_server}/rerank", json={"query": QUERY, "documents": DOCS}, timeout=60)
    results = r.json()["results"]
    assert [x["index"] for x in results] == [1, 2, 0]  # most overlap first
    for x in results:
        text, title = _fields(DOCS[x["index"]])
        expected = expected_p_true(QUERY, text, title=title)
        assert x["relevance_score"] == pytest.approx(expected, abs=2e-3)
        assert x["relevant"] == (expected > 0.5)
        assert x["source"] == "answer_logprobs"  # the stop path: "</think> true|false"
        completion = expected_completion(QUERY, text, title=title)
        assert x["reasoning"] == completion.split("</think>")[0].strip()
    assert results[0]["relevant"] is True and results[-1]["relevant"] is False


def test_stop_strings_over_completions_keep_the_answer_position(demo_server: str) -> None:
    from rank1_integrations.protocol import STOP_STRINGS, build_prompt

    prompt = build_prompt(QUERY, DOCS[1])
    out = httpx.post(f"{demo_server}/completions", json={
        "prompt": prompt, "max_tokens": 64, "temperature": 0, "logprobs": 20,
        "stop": list(STOP_STRINGS), "skip_special_tokens": False,
    }).json()["choices"][0]
    assert out["finish_reason"] == "stop" and out["stop_reason"] == "</think> true"
    assert out["text"] + "</think> true" == expected_completion(QUERY, DOCS[1])
    assert out["logprobs"]["tokens"][-2:] == ["</think>", " true"]
    skipped = httpx.post(f"{demo_server}/completions", json={
        "prompt": prompt, "max_tokens": 64, "stop": list(STOP_STRINGS),
    }).json()["choices"][0]
    # vLLM's default skip_special_tokens=True hides </think>: the stop strings never match
    assert skipped["stop_reason"] is None and "</think>" not in skipped["text"]
    assert skipped["text"].startswith(out["text"]) and " true" in skipped["text"]


@pytest.mark.parametrize("mode", ["completions", "rerank"])
def test_client_modes_give_the_known_verdicts(demo_server: str, mode: str) -> None:
    with Rank1Client(base_url=demo_server, mode=mode, max_reasoning_tokens=64,
                     cache=None) as client:
        judgments = client.judge_all(QUERY, DOCS)  # input order, as DOCS
    for doc, j in zip(DOCS, judgments, strict=True):
        text, title = _fields(doc)
        assert j.source is VerdictSource.ANSWER_LOGPROBS
        assert j.score == pytest.approx(expected_p_true(QUERY, text, title=title), abs=2e-3)
        assert j.reasoning_tokens > 5 and j.reasoning.endswith("This settles it.")


def test_forced_answer_when_the_budget_is_too_short(demo_server: str) -> None:
    """With 5 reasoning tokens the chain is cut before ``</think>``: the forced answer
    closes it and the verdict still follows the overlap."""
    r = httpx.post(f"{demo_server}/rerank", json={
        "query": QUERY, "documents": DOCS[:2], "max_reasoning_tokens": 5}, timeout=60)
    by_index = {x["index"]: x for x in r.json()["results"]}
    assert all(x["source"] == "forced_answer" and x["reasoning_tokens"] == 5
               for x in by_index.values())
    assert by_index[1]["relevance_score"] > 0.5 > by_index[0]["relevance_score"]
