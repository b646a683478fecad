"""rank1 in-process (``Rank1Judge``) on the real engine: vocabulary lookup for both
``</think>`` forms, the stop path, the forced path, truncation to the slot's context."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from rank1_server.backend import LlamaContext, LlamaModel
from rank1_server.engine import Engine, GenParams
from rank1_server.rank1 import FORCED_MARGIN, Document, NoRoom, Rank1Judge, Rank1Vocab

from rank1_integrations.protocol import (
    THINK_END,
    VerdictSource,
    build_prompt,
    forced_answer_prompt,
    score_from_logprobs,
)


def _engine(path: Path, n_ctx: int = 512) -> Engine:
    model = LlamaModel.load(path, n_gpu_layers=0)
    eng = Engine(model, LlamaContext(model, n_seq=4, n_ctx_per_seq=n_ctx))
    eng.start()
    return eng


@pytest.fixture(scope="module")
def engine(random_model: Path) -> Iterator[Engine]:
    eng = _engine(random_model)
    yield eng
    eng.stop()


@pytest.mark.parametrize("fixture,pieces", [("random_model", 1), ("pieces_model", 3)])
def test_vocabulary_lookup_both_think_end_forms(request, fixture: str, pieces: int) -> None:
    model = LlamaModel.load(request.getfixturevalue(fixture), n_gpu_layers=0)
    try:
        vocab = Rank1Vocab.lookup(model)
        assert len(vocab.think_end) == pieces
        assert model.detokenize(vocab.think_end) == THINK_END
        assert model.detokenize([vocab.true_id]) == " true"
        assert model.detokenize([vocab.false_id]) == " false"
    finally:
        model.close()


def test_forced_path_when_the_budget_runs_out(engine: Engine) -> None:
    """The random model never closes its reasoning: every verdict is a forced answer,
    read from the full logits of the forced prompt's last position."""
    vocab = Rank1Vocab.lookup(engine.model)
    judge = Rank1Judge(engine, vocab)
    docs = [Document("the moon pulls the sea"), Document("tides", title="Oceans")]
    result = asyncio.run(judge.judge_many("what causes tides?", docs, max_reasoning_tokens=12))
    assert [j.index for j in result.judgments] == [0, 1]
    for doc, j in zip(docs, result.judgments, strict=True):
        assert j.source is VerdictSource.FORCED_ANSWER
        assert j.reasoning_tokens == 12 and not j.truncated
        # the same verdict, computed step by step from the protocol's rules
        prompt = build_prompt("what causes tides?", doc.text, title=doc.title)
        first = asyncio.run(engine.generate(engine.model.tokenize(prompt), GenParams(
            max_tokens=12, skip_special_tokens=False)))
        forced = forced_answer_prompt(prompt, first.text)
        ids = (vocab.true_id, vocab.false_id)
        second = asyncio.run(engine.generate(engine.model.tokenize(forced), GenParams(
            max_tokens=1, logprobs=0, logprob_ids=ids)))
        top = dict(second.logprobs[0].top)
        assert j.score == pytest.approx(score_from_logprobs(top[ids[0]], top[ids[1]]), abs=1e-4)
        assert j.relevant == (j.score >= 0.5)
        assert isinstance(j.score, float)
    assert result.completion_tokens == 2 * (12 + 1)


@pytest.mark.parametrize("n_tag", [1, 3])
def test_stop_path_reads_the_answer_position(engine: Engine, n_tag: int) -> None:
    """Stand-in tags: we take tokens the model is known to write next as ``</think>``
    (one or several ids) and the token after them as `` true``; the judge must stop right
    there and read P(true) at that position without a forced answer."""
    real = Rank1Vocab.lookup(engine.model)
    doc = Document("the moon pulls the sea")
    judge = Rank1Judge(engine, real)
    _, tokens, _ = judge.prompt_tokens("tides", doc, instruction=None, max_reasoning_tokens=30)
    both = (real.true_id, real.false_id)
    probe = asyncio.run(engine.generate(tokens, GenParams(max_tokens=30, logprobs=0,
                                                          logprob_ids=both)))
    g = probe.token_ids
    tag = tuple(g[4 : 4 + n_tag])
    answer = g[4 + n_tag]
    other = real.false_id if answer != real.false_id else real.true_id
    fake = Rank1Vocab(think_end=tag, true_id=answer, false_id=other)
    result = asyncio.run(Rank1Judge(engine, fake).judge_many("tides", [doc],
                                                             max_reasoning_tokens=30))
    (j,) = result.judgments
    assert j.source is VerdictSource.ANSWER_LOGPROBS
    assert j.reasoning_tokens == 4 + n_tag + 1
    pos = probe.logprobs[4 + n_tag]
    lt = pos.logprob  # the greedy token there is the stand-in " true"
    lf = dict(pos.top)[other]
    assert j.score == pytest.approx(score_from_logprobs(lt, lf), abs=1e-4)
    assert j.relevant is True  # the greedy choice was the stand-in " true"


def test_passage_is_truncated_to_the_slot(random_model: Path) -> None:
    eng = _engine(random_model, n_ctx=256)
    try:
        judge = Rank1Judge(eng, Rank1Vocab.lookup(eng.model))
        long_doc = Document(" ".join(["water"] * 2000))
        prompt, tokens, truncated = judge.prompt_tokens(
            "tides", long_doc, instruction=None, max_reasoning_tokens=64)
        assert truncated and prompt.endswith("<think>")
        assert len(tokens) + 64 <= 256
        result = asyncio.run(judge.judge_many("tides", [long_doc], max_reasoning_tokens=64))
        assert result.judgments[0].truncated
        assert result.reasoning_budgets == (64,)  # the passage was cut to leave room for it
        # a budget near the slot's size: the passage keeps half the room, not nothing
        big = judge.prepare("tides", long_doc, instruction=None, max_reasoning_tokens=250)
        frame = len(eng.model.tokenize(build_prompt("tides", ""), add_special=True))
        half = (256 - FORCED_MARGIN - frame) // 2
        assert big.truncated and half <= big.max_reasoning_tokens <= half + 4
        assert len(big.tokens) + big.max_reasoning_tokens + FORCED_MARGIN <= 256
        # a query that fills the slot leaves no room at all
        with pytest.raises(NoRoom, match="no room for the passage.* 256 tokens"):
            judge.prompt_tokens("tides " * 300, long_doc, instruction=None,
                                max_reasoning_tokens=8)
    finally:
        eng.stop()


def test_pieces_vocabulary_end_to_end(pieces_model: Path) -> None:
    """With ``</think>`` as ordinary pieces (plain Qwen2.5), judging still works: the
    forced prompt's ``</think>`` is three tokens and the answer is read after them."""
    eng = _engine(pieces_model)
    try:
        vocab = Rank1Vocab.lookup(eng.model)
        assert len(vocab.think_end) == 3
        result = asyncio.run(Rank1Judge(eng, vocab).judge_many(
            "tides", [Document("the moon"), Document("volcanoes")], max_reasoning_tokens=8))
        for j in result.judgments:
            assert j.source is VerdictSource.FORCED_ANSWER and 0.0 < j.score < 1.0
        forced = forced_answer_prompt(build_prompt("tides", "the moon"), "x.")
        assert tuple(eng.model.tokenize(forced)[-3:]) == vocab.think_end
    finally:
        eng.stop()
