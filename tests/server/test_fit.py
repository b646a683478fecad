"""Fitting rank1 to the server it runs on: reasoning budgets that fit one slot's context
(in ``/v1/rerank`` and in the completions client), ``/tokenize``, ``logprob_token_ids``
answered as vLLM answers it, answer token ids the client discovers, and ``--no-repack``;
on the random model and on a real quantized model (SmolLM2 Q4_1)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from rank1_server.app import ServerConfig, ServerState
from rank1_server.cli import build_parser
from rank1_server.rank1 import RESERVED_REASONING_TOKENS
from rank1_server.testing import running_server

from rank1_integrations import Rank1Client
from rank1_integrations.protocol import FORCED_ANSWER_MARGIN, VerdictSource, build_prompt

ROOT = Path(__file__).resolve().parents[2]
N_CTX = 1024  # the shared server fixture's context per slot (conftest.N_CTX)
#: SmolLM2's ids of " true" and " false".
SMOLLM2_ANSWERS = (2629, 7065)
QUERY = "what causes tides?"
#: Passages after which SmolLM2 ends its output (end of turn) within a few tokens.
QUICK = ["The Moon's gravity pulls the oceans.", "Tides are caused by the Moon.",
         "Volcanoes erupt molten rock."]


def _tokenize(base_url: str, text: str, *, add_special_tokens: bool = True) -> dict:
    r = httpx.post(f"{base_url.removesuffix('/v1')}/tokenize",
                   json={"prompt": text, "add_special_tokens": add_special_tokens})
    assert r.status_code == 200, r.text
    return r.json()


@pytest.fixture(scope="module")
def smollm2_server(smollm2_path: Path) -> Iterator[str]:
    """SmolLM2 with 2,048 tokens per slot and the server's default reasoning budget,
    2,048 tokens: a budget that can never fit beside a prompt as it is."""
    assert ServerConfig(model_path="x").max_reasoning_tokens == 2048
    with running_server(smollm2_path, parallel=3, n_ctx=2048, repack=False,
                        model_name="smollm2") as url:
        yield url


# --------------------------------------------------------------------------- budgets


def test_rerank_default_budget_fits_a_2048_token_slot(smollm2_server: str) -> None:
    r = httpx.post(f"{smollm2_server}/rerank", json={"query": QUERY, "documents": QUICK},
                   timeout=300)
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert sorted(item["index"] for item in results) == [0, 1, 2]
    for item in results:
        n = _tokenize(smollm2_server, build_prompt(QUERY, QUICK[item["index"]]))["count"]
        assert item["reasoning_budget"] == 2048 - n - FORCED_ANSWER_MARGIN  # the rule
        assert item["prompt_tokens"] == n  # per document: its first request's prompt
        assert item["reasoning_tokens"] <= item["reasoning_budget"]
        assert item["source"] == "forced_answer" and not item["truncated"]
        assert 0.0 < item["relevance_score"] < 1.0


def test_completions_client_fits_the_budget_and_finds_the_answer_ids(
    smollm2_path: Path,
) -> None:
    """The client's default budget (2,048) on a 2,048-token slot, no ``answer_token_ids``
    given: it reads the context from /v1/models, counts the prompt with /tokenize, and
    takes `` true``/`` false`` from /tokenize, so that the forced answer reads exactly
    those two (SmolLM2's top-20 there lacks both). Same verdicts as /v1/rerank.

    Each path runs on a fresh one-slot server, one document at a time in the same order,
    so both decode the same tokens in the same batch shapes (prompt cache included): on
    Q4_1 weights another shape moves P(true) by ~1e-2 (see tests/real)."""

    def one_slot():
        return running_server(smollm2_path, parallel=1, n_ctx=2048, repack=False,
                              model_name="smollm2")

    # one step: /v1/rerank's requests, so the same cache path (two steps add a request
    # per document, and SmolLM2's chains, ended by end of text, two more)
    with one_slot() as url, Rank1Client(url, model="smollm2", cache=None, max_retries=0,
                                        concurrency=1, two_step="off") as client:
        judgments = client.rerank(QUERY, QUICK)
        assert client.transport.answer_token_ids == SMOLLM2_ANSWERS
    with one_slot() as url:
        rerank = [httpx.post(f"{url}/rerank", json={"query": QUERY, "documents": [doc]},
                             timeout=300).json()["results"][0] for doc in QUICK]
    for j in judgments:
        assert j.ok and j.source is VerdictSource.FORCED_ANSWER and not j.score_estimated
        assert j.score == pytest.approx(rerank[j.index]["relevance_score"], abs=1e-3)
        # both paths count the same prompt: /v1/completions' usage, /v1/rerank's per result
        assert j.prompt_tokens == rerank[j.index]["prompt_tokens"] > 0


def test_completions_client_reads_forced_answers_with_discovered_ids(
    smollm2_server: str,
) -> None:
    """A budget that fits as it is: only the discovered answer ids are at work."""
    with Rank1Client(smollm2_server, model="smollm2", cache=None, max_retries=0,
                     max_reasoning_tokens=64) as client:
        judgments = client.rerank(QUERY, QUICK[:2])
    assert all(j.ok and j.source is VerdictSource.FORCED_ANSWER for j in judgments)
    assert all(not j.score_estimated for j in judgments)


def test_explicit_budget_over_the_slot_is_fitted(server: str) -> None:
    body = {"query": "tides", "documents": ["the moon"], "max_reasoning_tokens": 5000}
    r = httpx.post(f"{server}/rerank", json=body, timeout=300)
    assert r.status_code == 200, r.text
    (item,) = r.json()["results"]
    n = _tokenize(server, build_prompt("tides", "the moon"))["count"]
    assert item["reasoning_budget"] == N_CTX - n - FORCED_ANSWER_MARGIN
    assert item["reasoning_tokens"] == item["reasoning_budget"]  # the random model never stops
    assert item["prompt_tokens"] == n


def test_long_passage_is_cut_to_leave_the_reserved_reasoning(server: str) -> None:
    body = {"query": "tides", "documents": [" ".join(["water"] * 3000)],
            "max_reasoning_tokens": 5000}
    r = httpx.post(f"{server}/rerank", json=body, timeout=300)
    assert r.status_code == 200, r.text
    (item,) = r.json()["results"]
    assert item["truncated"]
    frame = _tokenize(server, build_prompt("tides", ""))["count"]
    floor = min(RESERVED_REASONING_TOKENS, (N_CTX - FORCED_ANSWER_MARGIN - frame) // 2)
    # the passage keeps everything but the reserved reasoning (token boundaries may shift
    # the cut by a few tokens)
    assert floor <= item["reasoning_budget"] <= floor + 8
    assert item["reasoning_tokens"] == item["reasoning_budget"]


# --------------------------------------------------------------------------- /tokenize


def test_tokenize_has_vllms_shape(server: str) -> None:
    text = "Passage: the moon\n<think>"
    plain = _tokenize(server, text, add_special_tokens=False)
    assert plain["count"] == len(plain["tokens"]) and plain["max_model_len"] == N_CTX
    r = httpx.post(f"{server.removesuffix('/v1')}/tokenize",
                   json={"prompt": text, "add_special_tokens": False, "return_token_strs": True})
    assert "".join(r.json()["token_strs"]) == text
    # with special tokens: the count the completions endpoint reports for that prompt
    full = _tokenize(server, text)
    usage = httpx.post(f"{server}/completions",
                       json={"prompt": text, "max_tokens": 1}).json()["usage"]
    assert full["count"] == usage["prompt_tokens"]


def test_logprob_token_ids_are_exactly_those_ids(server: str) -> None:
    """vLLM's semantics: ``logprob_token_ids`` replaces the top-k."""
    (t,) = _tokenize(server, " true", add_special_tokens=False)["tokens"]
    (f,) = _tokenize(server, " false", add_special_tokens=False)["tokens"]
    body = {"prompt": "Passage: the sea", "max_tokens": 3, "logprobs": 5,
            "logprob_token_ids": [t, f], "return_tokens_as_token_ids": True}
    choice = httpx.post(f"{server}/completions", json=body).json()["choices"][0]
    tops = choice["logprobs"]["top_logprobs"]
    assert len(tops) == 3
    for top in tops:
        assert set(top) == {f"token_id:{t}", f"token_id:{f}"}
    # restricted to the two: the chosen token is one of them, with its logprob listed
    body["allowed_token_ids"] = [t, f]
    lp = httpx.post(f"{server}/completions", json=body).json()["choices"][0]["logprobs"]
    for token, value, top in zip(lp["tokens"], lp["token_logprobs"], lp["top_logprobs"],
                                 strict=True):
        assert top[token] == value


# --------------------------------------------------------------------------- --no-repack


_LOAD_AND_DECODE = """
import sys
from rank1_server.backend import LlamaContext, LlamaModel, import_llama_cpp
model = LlamaModel.load(sys.argv[1], n_gpu_layers=0, repack=sys.argv[2] == "on")
ctx = LlamaContext(model, n_seq=1, n_ctx_per_seq=256, n_threads=1)
ids = model.tokenize("The capital of France is", add_special=True)
for i, t in enumerate(ids):
    ctx.batch.add(t, i, 0, i == len(ids) - 1)
assert ctx.decode() == 0
print("NEXT", model.piece(int(ctx.logits(len(ids) - 1).argmax())).decode(), flush=True)
print("SYSTEM", import_llama_cpp().llama_print_system_info().decode(), flush=True)
"""


def _load_and_decode(path: Path, repack: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "RANK1_SERVER_LLAMA_VERBOSE": "1", "PYTHONPATH": os.pathsep.join(
        [str(ROOT / "src"), str(ROOT / "local_server"), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-c", _LOAD_AND_DECODE, str(path), repack],
                          env=env, capture_output=True, text=True, timeout=120)


def test_no_repack_loads_and_decodes_a_quantized_model(smollm2_path: Path) -> None:
    """Repacking off reaches llama.cpp (its loader no longer considers the CPU's extra
    buffer types) and the Q4_1 model decodes: the path that avoids the SIGILL of
    AMX-repacked weights on sandboxed CPUs."""
    off = _load_and_decode(smollm2_path, "off")
    assert off.returncode == 0, off.stderr[-2000:]
    assert "load_tensors" in off.stderr  # llama.cpp's loader log was captured
    assert "CPU_REPACK" not in off.stderr
    assert "NEXT " in off.stdout and off.stdout.split("NEXT ")[1].strip()
    on = _load_and_decode(smollm2_path, "on")
    assert on.returncode == 0, on.stderr[-2000:]  # this CPU does not trap the repack
    if "REPACK = 1" in on.stdout:  # a build with repacking: the loader looked at it
        assert "CPU_REPACK" in on.stderr


def test_no_repack_flag_reaches_the_model(smollm2_path: Path) -> None:
    assert build_parser().parse_args([]).repack is True
    assert build_parser().parse_args(["--no-repack"]).repack is False
    assert "SIGILL" in build_parser().format_help()
    state = ServerState(ServerConfig(model_path=str(smollm2_path), parallel=1, n_ctx=256,
                                     repack=False))
    state.load()
    try:
        assert state.engine is not None and state.engine.model.repack is False
    finally:
        state.engine.stop()
