"""The client on recorded responses of the real servers (tests/client/recorded/*.json,
re-recorded by scripts/record_fixtures.sh from rank1-server, llama.cpp's llama-server and
llama-cpp-python's server on the demo model and SmolLM2 Q4_1, and from vLLM 0.32.0's CPU
build on the demo model's Hugging Face copy: with and without a budget that cuts the chain
(``-cut``), and chat behind ``--reasoning-parser deepseek_r1`` (``vllm-reasoning``)).

Each recording replays offline: the client must send exactly the recorded requests and
make the recorded judgments of the recorded answers."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from rank1_integrations import Judgment, Rank1Client
from rank1_integrations.testing.recording import ReplayTransport

RECORDED = Path(__file__).parent / "recorded"
EXPECTED = sorted([
    *(f"{kind}-{model}-{mode}.json"
      for kind, modes in {
          "rank1-server": ("completions", "chat", "rerank"),
          "llama-server": ("completions", "completions-two-step", "chat"),
          "llama-cpp-python": ("completions", "chat"),
      }.items()
      for model in ("demo", "smollm2")
      for mode in modes),
    *(f"vllm-demo-{mode}.json" for mode in ("completions", "completions-cut", "chat", "chat-cut")),
    "vllm-reasoning-demo-chat.json",
])


def _load(name: str) -> dict:
    return json.loads((RECORDED / name).read_text())


def test_every_server_model_and_mode_is_recorded():
    assert sorted(p.name for p in RECORDED.glob("*.json")) == EXPECTED


@pytest.mark.parametrize("name", EXPECTED)
async def test_replay_gives_the_recorded_judgments(name):
    data = _load(name)
    replay = ReplayTransport(data["exchanges"])
    async with httpx.AsyncClient(transport=replay) as http:
        client = Rank1Client(
            data["base_url"], model=data["model_name"], mode=data["mode"],
            max_reasoning_tokens=data["max_reasoning_tokens"], cache=None, on_error="keep",
            concurrency=1, max_retries=0, client=http,
            two_step=data.get("two_step", "off"),
        )
        judgments = await client.ajudge_all(data["query"], data["passages"])
    want = [Judgment.model_validate(j) for j in data["judgments"]]
    assert [j.model_dump() for j in judgments] == [j.model_dump() for j in want]
    assert replay.unused == 0


def test_llama_server_streams_the_answer_token_with_empty_text():
    """What the recordings show of llama-server (and the client must read): in a streamed
    completion, the token that completes ``</think> true`` has ``"token": ""`` and empty
    ``bytes``; its text is only in its own top_logprobs entry (same id)."""
    data = _load("llama-server-demo-completions.json")
    entries = []
    for exchange in data["exchanges"]:
        body = exchange["response"]["body"]
        for line in body.splitlines():
            if line.startswith("data: ") and line != "data: [DONE]":
                for choice in json.loads(line[6:]).get("choices") or []:
                    entries += (choice.get("logprobs") or {}).get("content") or []
    answers = [e for e in entries if e["token"] == "" and any(
        alt["id"] == e["id"] and alt["token"] in (" true", " false")
        for alt in e.get("top_logprobs") or [])]
    assert answers, "no streamed answer entry with empty token text in the recording"
    assert all(entry["bytes"] == [] for entry in answers)


def _bodies(name: str, path: str) -> list[dict]:
    return [json.loads(e["response"]["body"]) if isinstance(e["response"]["body"], str)
            else e["response"]["body"]
            for e in _load(name)["exchanges"] if e["request"]["path"] == path]


def test_vllm_keeps_the_stop_strings_tokens_but_not_their_text():
    """What the recordings show of vLLM (and ``rank1_payloads.vllm_completion`` builds on):
    stopped on ``</think> true``, the text ends before the stop string, ``stop_reason`` is
    the matched stop string, and its tokens stay in ``tokens``/``top_logprobs``."""
    for body in _bodies("vllm-demo-completions.json", "/v1/completions"):
        choice = body["choices"][0]
        answer = choice["stop_reason"].removeprefix("</think>")
        assert choice["stop_reason"] in ("</think> true", "</think> false")
        assert "</think>" not in choice["text"]
        assert choice["logprobs"]["tokens"][-2:] == ["</think>", answer]
        assert answer in choice["logprobs"]["top_logprobs"][-1]


def test_vllm_reasoning_parser_splits_the_chain_from_the_answer():
    for body in _bodies("vllm-reasoning-demo-chat.json", "/v1/chat/completions"):
        message = body["choices"][0]["message"]
        assert message["content"] in (" true", " false")
        assert message["reasoning"].strip().endswith("This settles it.")
        tokens = [entry["token"] for entry in body["choices"][0]["logprobs"]["content"]]
        # the logprobs cover both parts: the chain, </think>, the answer (then the EOS)
        end = tokens.index("</think>")
        assert tokens[end + 1] == message["content"]


@pytest.mark.parametrize("model", ["demo", "smollm2"])
def test_llama_server_two_steps_give_the_one_step_judgments(model):
    """The recordings of the same judgments on the real llama-server, one step and two:
    the two-step chain asks for no logprobs and stops at ``</think>``, its tail goes on
    from that chain with the one-step stop strings; verdicts, chains and scores agree (on
    SmolLM2 both fail the same way: llama-server cannot restrict the forced answer)."""
    one = _load(f"llama-server-{model}-completions.json")
    two = _load(f"llama-server-{model}-completions-two-step.json")
    sent = [e["request"]["body"] for e in two["exchanges"]
            if e["request"]["path"] == "/v1/completions"]
    chain = sent[0]
    assert "logprobs" not in chain and chain["stop"] == ["</think>"]
    if model == "demo":
        tail = sent[1]
        assert tail["prompt"].startswith(chain["prompt"]) and tail["logprobs"] == 20
        assert tail["stop"] == ["</think> true", "</think> false"]
    for a, b in zip(one["judgments"], two["judgments"], strict=True):
        assert (a["source"], a["relevant"], a["reasoning"]) == (
            b["source"], b["relevant"], b["reasoning"])
        assert (a["error"] is None) is (b["error"] is None)
        if a["score"] is not None:
            assert b["score"] == pytest.approx(a["score"], abs=1e-6)
