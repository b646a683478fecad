"""The HTTP API on a real server (uvicorn on loopback, real llama.cpp engine): every
endpoint, vLLM-shaped completions through the official openai SDK, rerank, and the
package's own client in completions and rerank mode."""

from __future__ import annotations

import asyncio

import httpx
import openai
import pytest

from rank1_integrations import Rank1Client
from rank1_integrations.protocol import VerdictSource

N_CTX = 1024  # the shared server fixture's context per slot (conftest.N_CTX)


def test_health_models_metrics(server: str, server_root: str) -> None:
    health = httpx.get(f"{server_root}/health").json()
    assert health["status"] == "ok" and health["slots"] == 4
    assert health["n_ctx_per_slot"] == N_CTX and health["rerank"] is True
    models = httpx.get(f"{server}/models").json()
    assert models["data"][0]["id"] == "rank1-test"
    assert models["data"][0]["max_model_len"] == N_CTX
    httpx.post(f"{server}/completions", json={"prompt": "hello", "max_tokens": 3})
    text = httpx.get(f"{server_root}/metrics").text
    for name in ("rank1_requests_total", "rank1_generated_tokens_total", "rank1_busy_slots",
                 "rank1_queue_depth", "rank1_judgment_seconds"):
        assert name in text
    assert 'rank1_requests_total{endpoint="/v1/completions",status="200"}' in text


def test_openai_sdk_completions_vllm_shape(server: str) -> None:
    client = openai.OpenAI(base_url=server, api_key="unused")
    out = client.completions.create(
        model="rank1-test", prompt="Query: tides\nPassage: the moon", max_tokens=12,
        temperature=0, logprobs=5, extra_body={"skip_special_tokens": False},
    )
    choice = out.choices[0]
    assert choice.finish_reason == "length" and out.usage.completion_tokens == 12
    lp = choice.logprobs
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == 12
    assert "".join(lp.tokens) == choice.text
    assert lp.text_offset[0] == 0 and lp.text_offset[1] == len(lp.tokens[0])
    for token, value, top in zip(lp.tokens, lp.token_logprobs, lp.top_logprobs, strict=True):
        assert 5 <= len(top) <= 6 and token in top and top[token] == value
        assert max(top.values()) <= 0.0
        assert isinstance(value, float)


def test_stop_string_tokens_stay_in_logprobs(server: str) -> None:
    client = openai.OpenAI(base_url=server, api_key="unused")
    base = dict(model="m", prompt="Passage: the sea", max_tokens=20, temperature=0, logprobs=2)
    full = client.completions.create(**base).choices[0]
    stop = full.text[6:9]
    cut = client.completions.create(**base, stop=[stop]).choices[0]
    assert cut.finish_reason == "stop" and cut.model_extra["stop_reason"] == stop
    assert cut.text == full.text[: full.text.index(stop)]
    kept = "".join(cut.logprobs.tokens)
    assert kept.startswith(cut.text) and stop in kept  # stop-string tokens kept, like vLLM
    assert cut.logprobs.top_logprobs[-1] == full.logprobs.top_logprobs[len(cut.logprobs.tokens) - 1]


def test_prompt_list_is_batched_and_equals_single_requests(server: str) -> None:
    prompts = ["the moon", "a tide", "gravity and the sea", "x"]
    body = {"max_tokens": 16, "temperature": 0, "logprobs": 1}
    together = httpx.post(f"{server}/completions", json={**body, "prompt": prompts}).json()
    assert [c["index"] for c in together["choices"]] == [0, 1, 2, 3]
    for i, p in enumerate(prompts):
        alone = httpx.post(f"{server}/completions", json={**body, "prompt": p}).json()
        assert alone["choices"][0]["text"] == together["choices"][i]["text"]
        tokens = together["choices"][i]["logprobs"]["tokens"]
        assert alone["choices"][0]["logprobs"]["tokens"] == tokens


async def test_concurrent_requests_equal_sequential(server: str) -> None:
    prompts = [f"Query: q{i}\nPassage: the passage number {i}" for i in range(8)]
    async with httpx.AsyncClient(base_url=server, timeout=60) as http:
        async def one(p: str) -> str:
            r = await http.post("/completions", json={"prompt": p, "max_tokens": 24})
            return r.json()["choices"][0]["text"]

        sequential = [await one(p) for p in prompts]
        concurrent = await asyncio.gather(*(one(p) for p in prompts))
    assert list(concurrent) == sequential


def test_chat_completions_basic(server: str) -> None:
    client = openai.OpenAI(base_url=server, api_key="unused")
    out = client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "hello there"}], max_tokens=6,
        temperature=0, logprobs=True, top_logprobs=3,
    )
    choice = out.choices[0]
    assert choice.message.role == "assistant" and choice.message.content
    assert len(choice.logprobs.content) == 6
    assert len(choice.logprobs.content[0].top_logprobs) == 3


def test_rerank_shape(server: str) -> None:
    docs = ["the moon pulls the sea", {"text": "tides rise twice a day", "title": "Tides"}, "x"]
    r = httpx.post(f"{server}/rerank", json={
        "query": "what causes tides?", "documents": docs, "max_reasoning_tokens": 8,
    }, timeout=60)
    assert r.status_code == 200
    body = r.json()
    results = body["results"]
    assert sorted(x["index"] for x in results) == [0, 1, 2]
    scores = [x["relevance_score"] for x in results]
    assert scores == sorted(scores, reverse=True)
    for x in results:
        assert 0.0 <= x["relevance_score"] <= 1.0
        assert x["relevant"] == (x["relevance_score"] >= 0.5)
        assert x["source"] == "forced_answer"  # random weights never close the reasoning
        assert x["reasoning_tokens"] == 8 and x["truncated"] is False
        assert x["score_estimated"] is False and isinstance(x["reasoning"], str)
    by_index = {x["index"]: x for x in results}
    assert by_index[1]["document"] == {"text": "tides rise twice a day", "title": "Tides"}
    assert body["usage"]["completion_tokens"] == 3 * (8 + 1)
    top = httpx.post(f"{server}/rerank", json={
        "query": "what causes tides?", "documents": docs, "max_reasoning_tokens": 8,
        "top_n": 1, "return_documents": False,
    }, timeout=60).json()["results"]
    assert len(top) == 1 and top[0]["index"] == results[0]["index"] and "document" not in top[0]


def test_client_completions_and_rerank_modes_agree(server: str) -> None:
    """Rank1Client unchanged against the server, both paths: the same verdicts."""
    passages = ["the moon pulls the sea", {"text": "tides rise twice a day", "title": "Tides"}]
    model = httpx.get(f"{server}/models").json()["data"][0]["id"]
    ids = _answer_ids(server)
    judged = {}
    for mode in ("completions", "rerank"):
        with Rank1Client(base_url=server, model=model, mode=mode, max_reasoning_tokens=10,
                         answer_token_ids=ids, cache=None) as client:
            judged[mode] = client.judge_all("what causes tides?", passages)
    for a, b in zip(judged["completions"], judged["rerank"], strict=True):
        assert a.index == b.index
        assert a.source is b.source is VerdictSource.FORCED_ANSWER
        assert a.score == pytest.approx(b.score, abs=1e-3)
        assert a.relevant == b.relevant
        assert a.reasoning_tokens == b.reasoning_tokens == 10
        assert a.reasoning == b.reasoning


def _answer_ids(server: str) -> tuple[int, int]:
    """The ids of ' true' / ' false' as the server's vocabulary has them."""
    from rank1_server.models import build_vocabulary

    vocab = build_vocabulary(think_end_special=True)
    return vocab.token_id(" true"), vocab.token_id(" false")


async def test_client_rerank_mode_async(server: str) -> None:
    async with Rank1Client(base_url=server, mode="rerank", max_reasoning_tokens=6) as client:
        judgments = await client.ajudge_all("tides", ["one", "two", "three"])
    assert [j.index for j in judgments] == [0, 1, 2]
    assert all(j.ok and j.reasoning_tokens == 6 for j in judgments)
