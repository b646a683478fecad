"""The engine's per-step host work: one logits view and one blocked argmax per step (the
same tokens as a plain per-row ``np.argmax``), and the step/decode timers."""

from __future__ import annotations

from pathlib import Path

import httpx
import numpy as np
import pytest
from rank1_server.backend import LlamaContext, LlamaModel
from rank1_server.engine import Engine, GenParams, _argmax_block_size, _argmax_rows
from rank1_server.models import write_random_model


def _reference(logits: np.ndarray) -> list[int]:
    return [int(np.argmax(row)) for row in logits]


@pytest.mark.parametrize("n_vocab", [4096, 152_064, 3113, 1000, 37])
def test_block_size_divides_the_vocabulary_or_is_zero(n_vocab: int) -> None:
    k = _argmax_block_size(n_vocab)
    assert k == 0 or (n_vocab % k == 0 and 256 <= k <= n_vocab // 8)


def test_block_size_of_qwen_vocabularies() -> None:
    assert _argmax_block_size(152_064) == 1056  # rank1-7b / Qwen2.5-7B logits
    assert _argmax_block_size(151_936) == 1187  # Qwen2.5 tokenizer size
    assert _argmax_block_size(37) == 0


@pytest.mark.parametrize("block", [0, 64, 512])
def test_blocked_argmax_equals_numpy_argmax(block: int) -> None:
    rng = np.random.default_rng(7)
    n_vocab = 4096
    rows = rng.standard_normal((12, n_vocab)).astype(np.float32)
    rows[1] = 1.0  # all tied: the first index
    rows[2, [5, 700, 4000]] = 50.0  # ties in different blocks: the first one
    rows[3, [600, 601]] = 50.0  # ties inside one block
    rows[4, 3000] = np.nan  # NaN counts as the maximum, as in numpy
    rows[5, [100, 2000]] = np.nan
    rows[6] = -np.inf
    rows[6, 4095] = -1e30  # the last index
    rows[7, 0] = np.inf
    rows[8, 511:513] = 99.0  # a tie across a block boundary (block 512)
    rows.flags.writeable = False
    assert _argmax_rows(rows, block) == _reference(rows)
    assert _argmax_rows(rows[:1], block) == _reference(rows[:1])


def test_logits_rows_are_the_flagged_batch_tokens_in_order(random_model: Path) -> None:
    """A batch of decode tokens and a prompt chunk whose last token only has logits: the
    one view's rows are ``logits(i)`` of those tokens, in batch order."""
    model = LlamaModel.load(random_model, n_gpu_layers=0)
    ctx = LlamaContext(model, n_seq=3, n_ctx_per_seq=256)
    try:
        b = ctx.batch
        b.clear()
        flagged = [b.add(10, 0, 0, True), b.add(11, 0, 1, True)]
        for k, tok in enumerate([20, 21, 22, 23]):
            i = b.add(tok, k, 2, k == 3)
        flagged.append(i)
        assert ctx.decode() == 0
        ctx.synchronize()
        view = ctx.logits_rows(len(flagged))
        assert view.shape == (3, model.n_vocab) and not view.flags.writeable
        for j, i in enumerate(flagged):
            np.testing.assert_array_equal(view[j], ctx.logits(i))
    finally:
        ctx.close()
        model.close()


def test_engine_greedy_equals_a_plain_argmax_loop(tmp_path: Path) -> None:
    """Greedy tokens of batched requests on a 4096-logit model (blocked argmax, 8 blocks)
    equal a decode loop that takes ``np.argmax`` of each row by itself."""
    path = write_random_model(tmp_path / "v4096.gguf", n_vocab=4096, seed=5)
    prompts = [[100 + i, 200 + i] for i in range(3)]
    steps = 24

    model = LlamaModel.load(path, n_gpu_layers=0)
    ctx = LlamaContext(model, n_seq=3, n_ctx_per_seq=256)
    expected: list[list[int]] = []
    try:
        for seq, prompt in enumerate(prompts):
            out: list[int] = []
            tokens = list(prompt)
            for _ in range(steps):
                b = ctx.batch
                b.clear()
                start = len(tokens) - (1 if out else len(prompt))
                for pos in range(start, len(tokens)):
                    i = b.add(tokens[pos], pos, seq, pos == len(tokens) - 1)
                assert ctx.decode() == 0
                out.append(int(np.argmax(ctx.logits(i))))
                tokens.append(out[-1])
            expected.append(out)
    finally:
        ctx.close()
        model.close()

    model = LlamaModel.load(path, n_gpu_layers=0)
    ctx = LlamaContext(model, n_seq=3, n_ctx_per_seq=256)
    engine = Engine(model, ctx, prefix_cache=False)
    assert engine._argmax_block == 512
    engine.start()
    try:
        futures = engine.submit_many([(p, GenParams(max_tokens=steps)) for p in prompts])
        got = [f.result(timeout=120).token_ids for f in futures]
    finally:
        engine.stop()
    assert got == expected


def test_step_and_decode_timers(random_model: Path) -> None:
    model = LlamaModel.load(random_model, n_gpu_layers=0)
    ctx = LlamaContext(model, n_seq=2, n_ctx_per_seq=256)
    engine = Engine(model, ctx)
    engine.start()
    try:
        futures = engine.submit_many([([5, 6, 7], GenParams(max_tokens=10)),
                                      ([8, 9], GenParams(max_tokens=10))])
        for f in futures:
            f.result(timeout=60)
        st = engine.stats
    finally:
        engine.stop()
    assert st.generated_tokens == 20
    assert st.decode_calls >= 10
    assert 0 < st.decode_seconds < st.step_seconds


def test_metrics_report_decode_and_step_seconds(server: str) -> None:
    root = server.removesuffix("/v1")
    httpx.post(f"{server}/completions", json={"prompt": "hello", "max_tokens": 3})
    values = {}
    for line in httpx.get(f"{root}/metrics").text.splitlines():
        name, _, value = line.partition(" ")
        values[name] = value
    for name in ("rank1_decode_calls_total", "rank1_decode_seconds_total",
                 "rank1_step_seconds_total"):
        assert float(values[name]) > 0, name
    assert float(values["rank1_decode_seconds_total"]) < float(values["rank1_step_seconds_total"])
