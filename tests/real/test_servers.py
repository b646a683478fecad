"""Rank1Client against each real server, held to llama.cpp's own logits.

For every server and client mode it supports, on the demo model (its chains end on
``</think> true|false``) and on SmolLM2 Q4_1 (a real quantized model that never closes its
reasoning, so every verdict is the forced answer): the judgment's source, score and
reasoning agree with :class:`~tests.real.reference.ReferenceModel` on the same prompts in
the same order, within 2e-3. Each comparison runs on a fresh one-slot server, which the
reference follows step for step (its prompt cache included: on quantized weights the same
tokens decoded in another batch shape move P(true) by ~1e-2). What a server can report
decides the expected score:

* rank1-server reads the two answers by id from the full logits (``/v1/rerank``, and
  ``/v1/completions`` with ``logprob_token_ids``): the exact two-way softmax;
* llama-server and llama-cpp-python list a top-20: the expected reading is
  :func:`~rank1_integrations.protocol.read_answer` applied to the reference's top-20 at
  the same position (exact, estimated from one answer, or no verdict at all).
"""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from rank1_integrations import Rank1Client
from rank1_integrations.data import DEMO_CORPUS_PATH
from rank1_integrations.protocol import (
    ANSWER_FALSE,
    ANSWER_TRUE,
    VerdictSource,
    build_prompt,
    read_answer,
)

from .conftest import MODEL_NAME, RealServer
from .reference import ReferenceJudgment, ReferenceModel

TOLERANCE = 2e-3
#: The same tokens' logits decoded in another batch shape, on the demo model's f32 weights.
FLOAT_NOISE = 1e-5

#: (server, mode) pairs the client supports; chat is tested for transport health only
#: (rank1 has no chat training: its chat replies are not the reference's chain).
COMPARED = [
    ("rank1-server", "completions"),
    ("rank1-server", "rerank"),
    ("llama-server", "completions"),
    ("llama-cpp-python", "completions"),
]
MODELS = ["demo", "smollm2"]


def _corpus() -> dict[str, str]:
    with open(DEMO_CORPUS_PATH) as f:
        return {d["id"]: d["text"] for d in map(json.loads, f)}


QUERY = "how do bees make honey from nectar"
PASSAGE_IDS = ["bees-2", "bees-1", "volcano-1", "chess-1"]


def _passages() -> list[str]:
    corpus = _corpus()
    ids = [i for i in PASSAGE_IDS if i in corpus]
    ids += [i for i in corpus if i not in ids][: 4 - len(ids)]
    return [corpus[i] for i in ids]


def expected_score(server: RealServer, ref_model: ReferenceModel, ref: ReferenceJudgment):
    """``(score, estimated)`` the client should report from this server, or ``None`` for
    no verdict."""
    if server.kind == "rank1-server":
        return ref.score, False
    top: list[tuple[str | int, float]] = []
    for token_id, logprob in ref.top(20):
        top.append((ref_model.piece(token_id).decode("utf-8", "replace"), logprob))
        if server.kind == "llama-server":  # its entries carry ids as well as text
            top.append((token_id, logprob))
    ids = {ref_model.true_id: ANSWER_TRUE, ref_model.false_id: ANSWER_FALSE}
    reading = read_answer(top, answer_ids=ids if server.kind == "llama-server" else None)
    return None if reading is None else (reading.score, reading.estimated)


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize(("kind", "mode"), COMPARED)
def test_judgments_match_llama_cpp_logits(fresh_server, references, kind, mode, model):
    server = fresh_server(kind, model)
    ref_model = references(model)
    passages = _passages()
    with Rank1Client(
        server.base_url, model=MODEL_NAME, mode=mode, max_reasoning_tokens=server.budget,
        cache=None, on_error="keep", concurrency=1,
    ) as client:
        if mode == "rerank" and model == "smollm2":
            # One document per request: in one request of several, rank1-server's forced
            # answer of a document races the next document's prompt for the slot, and on
            # quantized weights the two cache paths differ by ~1e-2 in P(true).
            judgments = [client.rerank(QUERY, [p])[0].model_copy(update={"index": i})
                         for i, p in enumerate(passages)]
        else:
            judgments = client.judge_all(QUERY, passages)
    assert [j.index for j in judgments] == list(range(len(passages)))
    compared = 0
    for judgment, passage in zip(judgments, passages, strict=True):
        ref = ref_model.judge(build_prompt(QUERY, passage), budget=server.budget)
        want = expected_score(server, ref_model, ref)
        where = f"{kind}/{mode}/{model}: {passage[:40]!r}"
        if (kind, model) == ("llama-cpp-python", "smollm2"):
            # Its greedy chain leaves llama.cpp's argmax on some of these prompts (it ends
            # the chain early; cause not found): only a failure rank1 explains is allowed,
            # and judgments on the reference's chain must agree with it.
            assert judgment.error is None or "NoVerdictError" in judgment.error, where
            if judgment.reasoning != ref.reasoning:
                continue
        compared += 1
        if want is None:
            assert judgment.score is None and judgment.error, where
            continue
        assert judgment.error is None, f"{where}: {judgment.error}"
        assert judgment.source is not None and judgment.source.value == ref.source, where
        assert judgment.score == pytest.approx(want[0], abs=TOLERANCE), where
        assert judgment.score_estimated == want[1], where
        assert judgment.reasoning == ref.reasoning, where
    assert compared >= 1, "no judgment could be compared with the reference"
    if model == "demo":  # the demo model always closes its chain with an answer
        assert {j.source.value for j in judgments} == {"answer_logprobs"}
    else:  # SmolLM2 never does: every verdict is forced
        assert all(j.source is None or j.source.value == "forced_answer" for j in judgments)


@pytest.mark.parametrize("kind", ["rank1-server", "llama-server", "llama-cpp-python"])
async def test_demo_model_one_request_per_judgment(start_server, kind):
    """On the demo model every server gives the verdict from the answer's logprobs in the
    first request of the one-step path: no repeat, no forced answer."""
    server = start_server(kind, "demo")
    seen: list[str] = []

    async def count(request: httpx.Request) -> None:
        if request.url.path.endswith("/completions"):
            seen.append(request.url.path)

    http = httpx.AsyncClient(event_hooks={"request": [count]}, timeout=120)
    async with http:
        client = Rank1Client(
            server.base_url, model=MODEL_NAME, max_reasoning_tokens=server.budget,
            cache=None, client=http, concurrency=2, two_step="off",
        )
        judgments = await client.arerank(QUERY, _passages())
    assert [j.source.value for j in judgments] == ["answer_logprobs"] * len(judgments)
    assert len(seen) == len(judgments), seen


@pytest.mark.parametrize("kind", ["rank1-server", "llama-server"])
def test_two_steps_give_the_one_step_judgments(start_server, kind):
    """The two-step path (the chain without logprobs, stopped at ``</think>``; then its
    tail from the prompt cache) gives the one-step judgments: same tokens, same logits,
    the same score within float noise (the tail is decoded in another batch shape); two
    requests a judgment, both counted. ``"auto"`` takes them on both servers.

    On the demo model only: on SmolLM2 Q4_1 the prompt cache's state alone moves greedy
    chains and scores (~1e-2, see :class:`ReferenceModel`), so two runs of the same
    one-step request on a shared server disagree as much as the two paths do."""
    server = start_server(kind, "demo")
    passages = _passages()
    runs = {}
    for two_step in ("off", "on", "auto"):
        with Rank1Client(
            server.base_url, model=MODEL_NAME, max_reasoning_tokens=server.budget,
            cache=None, on_error="keep", concurrency=2, max_retries=0, two_step=two_step,
        ) as client:
            client.judge_all(QUERY, ["probe the server first"])  # the probes go here
            runs[two_step] = client.judge_all(QUERY, passages)
    for one, two in zip(runs["off"], runs["on"], strict=True):
        assert (two.source, two.relevant, two.error) == (one.source, one.relevant, one.error)
        assert two.reasoning == one.reasoning
        assert two.reasoning_tokens == one.reasoning_tokens
        assert two.prompt_tokens == one.prompt_tokens
        assert two.score == pytest.approx(one.score, abs=FLOAT_NOISE)
        assert two.score_estimated == one.score_estimated
        assert (one.requests, two.requests) == (1, 2), (one, two)
    # the default: two steps on both, where they measured faster (README)
    assert [j.requests for j in runs["auto"]] == [2] * len(passages)


@pytest.mark.parametrize("kind", ["rank1-server", "llama-server"])
def test_two_steps_at_the_budget_edge(start_server, kind):
    """A budget one token short of the answer: one step ends at ``</think>`` cut by the
    budget and takes the forced answer; so do two (no room for the tail). One token more,
    both read the answer. Same sources, chains and scores."""
    server = start_server(kind, "demo")
    passage = _passages()[0]

    def judge(budget: int, two_step: str):
        with Rank1Client(server.base_url, model=MODEL_NAME, max_reasoning_tokens=budget,
                         cache=None, max_retries=0, two_step=two_step) as client:
            return client.judge(QUERY, passage)

    full = judge(64, "off").reasoning_tokens  # the chain, </think>, the answer
    for budget, source in ((full - 1, VerdictSource.FORCED_ANSWER),
                           (full, VerdictSource.ANSWER_LOGPROBS)):
        one, two = judge(budget, "off"), judge(budget, "on")
        assert one.source is two.source is source, (budget, one, two)
        assert two.reasoning == one.reasoning
        assert two.score == pytest.approx(one.score, abs=FLOAT_NOISE)


@pytest.mark.parametrize("mode", ["completions", "chat"])
@pytest.mark.parametrize("kind", ["rank1-server", "llama-server", "llama-cpp-python"])
def test_many_judgments_on_keep_alive_connections(start_server, kind, mode):
    """Many judgments in a row through the client's default HTTP stack (pooled keep-alive
    connections), sync and async: none fails."""
    server = start_server(kind, "demo")
    corpus = list(_corpus().values())
    queries = ["how do bees make honey", "what causes a volcano to erupt", "chess openings"]
    with Rank1Client(
        server.base_url, model=MODEL_NAME, mode=mode, max_reasoning_tokens=server.budget,
        cache=None, concurrency=2, max_retries=0,
    ) as client:
        for query in queries[:2]:
            judgments = client.rerank(query, corpus[:6])
            assert all(j.error is None for j in judgments)

        async def run() -> list:
            return await client.arerank(queries[2], corpus[6:12])

        assert all(j.error is None for j in asyncio.run(run()))


@pytest.mark.parametrize("concurrency", [1, 4])
async def test_llama_server_judgments_in_a_row(start_server, concurrency):
    """What only the real llama-server shows: it closes the connection after every streamed
    response, and writes ``""`` as the text of the held-back answer token. No retries:
    every request must succeed on its connection, and every answer be read at the answer
    position (not through the forced answer), with no repeated request."""
    server = start_server("llama-server", "demo")
    client = Rank1Client(server.base_url, model=MODEL_NAME, cache=None, max_retries=0,
                         concurrency=concurrency)
    try:
        judgments = []
        for query in ("how do honey bees make honey", "what is a volcano"):
            judgments += await client.ajudge_all(query, [
                "Honey bees make honey from the nectar of flowers.",
                "A volcano is an opening in the crust where magma erupts.",
                "Bread rises because yeast makes gas.",
                "Chess is a board game for two players.",
            ] * 3)
    finally:
        await client.aclose()
    assert len(judgments) == 24
    assert all(j.source is VerdictSource.ANSWER_LOGPROBS for j in judgments)
    assert not any(j.score_estimated for j in judgments)
    # the demo model: the passage that shares the query's words comes first
    assert judgments[0].score > judgments[2].score and judgments[13].score > judgments[15].score
