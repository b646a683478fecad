"""The engine on a real llama.cpp context (no HTTP): continuous batching, prefix reuse,
stop strings, limits, cancellation."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from rank1_server.backend import LlamaContext, LlamaModel
from rank1_server.engine import Engine, GenParams, PromptTooLong, QueueFull


def make_engine(
    path: Path, *, n_seq: int = 4, n_ctx: int = 512, kv_unified: bool = False, **kwargs
) -> Engine:
    model = LlamaModel.load(path, n_gpu_layers=0)
    ctx = LlamaContext(model, n_seq=n_seq, n_ctx_per_seq=n_ctx, kv_unified=kv_unified)
    return Engine(model, ctx, **kwargs)


@pytest.fixture(scope="module")
def engine(random_model: Path) -> Iterator[Engine]:
    eng = make_engine(random_model)
    eng.start()
    yield eng
    eng.stop()


PROMPTS = [
    "Query: what causes tides?\nPassage: the moon",
    "Query: what causes tides?\nPassage: the sun and the moon pull the sea",
    "a",
    "Determine if the following passage is relevant to the query.",
    "Query: what causes tides?\nPassage: gravity",
    "numbers 1 2 3 4 5 6 7 8 9 10 11 12",
]


def _run(engine: Engine, coro):
    return asyncio.run(coro)


def test_batched_equals_sequential_token_for_token(engine: Engine) -> None:
    params = GenParams(max_tokens=40, logprobs=5)
    items = [(engine.model.tokenize(p), params) for p in PROMPTS]

    async def sequential():
        return [await engine.generate(*item) for item in items]

    one_by_one = _run(engine, sequential())
    together = _run(engine, engine.generate_many(items))  # 6 requests on 4 slots
    assert [g.token_ids for g in together] == [g.token_ids for g in one_by_one]
    assert all(g.finish_reason == "length" and len(g.token_ids) == 40 for g in together)
    for a, b in zip(one_by_one, together, strict=True):
        for x, y in zip(a.logprobs, b.logprobs, strict=True):
            assert x.token == y.token
            assert x.logprob == pytest.approx(y.logprob, abs=1e-3)
            assert [t for t, _ in x.top] == [t for t, _ in y.top]


def test_requests_join_a_running_batch(engine: Engine) -> None:
    """A request submitted while others generate is admitted between steps and gives the
    same tokens as alone."""
    params = GenParams(max_tokens=60)
    alone = _run(engine, engine.generate(engine.model.tokenize(PROMPTS[2]), params))

    async def staggered():
        first = asyncio.ensure_future(
            engine.generate_many([(engine.model.tokenize(p), params) for p in PROMPTS[:2]])
        )
        await asyncio.sleep(0.01)
        late = await engine.generate(engine.model.tokenize(PROMPTS[2]), params)
        return late, await first

    late, _ = _run(engine, staggered())
    assert late.token_ids == alone.token_ids


@pytest.mark.parametrize("kv_unified", [False, True])
def test_shared_prefix_is_reused_without_changing_output(
    random_model: Path, kv_unified: bool
) -> None:
    head = "Determine if the following passage is relevant to the query.\nQuery: tides\nPassage: "
    prompts = [head + tail for tail in ("the moon", "the sun", "gravity pulls", "a harbour")]
    params = GenParams(max_tokens=24, logprobs=2)
    warm = make_engine(random_model, kv_unified=kv_unified)
    warm.start()
    try:
        items = [(warm.model.tokenize(p), params) for p in prompts]
        shared = asyncio.run(warm.generate_many(items))
        again = asyncio.run(warm.generate_many(items[::-1]))[::-1]  # from idle slots' cells
    finally:
        warm.stop()
    assert sum(g.cached_tokens for g in shared) > 0
    assert all(g.cached_tokens > 0 for g in again)
    assert [g.token_ids for g in again] == [g.token_ids for g in shared]

    cold = make_engine(random_model, prefix_cache=False)
    cold.start()
    try:
        fresh = asyncio.run(cold.generate_many(items))
    finally:
        cold.stop()
    assert all(g.cached_tokens == 0 for g in fresh)
    assert [g.token_ids for g in shared] == [g.token_ids for g in fresh]
    for a, b in zip(shared, fresh, strict=True):
        for x, y in zip(a.logprobs, b.logprobs, strict=True):
            assert x.logprob == pytest.approx(y.logprob, abs=1e-3)


def test_stop_string_cuts_text_and_keeps_its_tokens(engine: Engine) -> None:
    prompt = engine.model.tokenize(PROMPTS[0])
    full = _run(engine, engine.generate(prompt, GenParams(max_tokens=30, logprobs=1)))
    stop = full.text[10:14]
    assert stop.strip(), "need a visible stop string"
    cut = _run(engine, engine.generate(prompt, GenParams(max_tokens=30, logprobs=1, stop=(stop,))))
    assert cut.finish_reason == "stop" and cut.stop_reason == stop
    assert cut.text == full.text[: full.text.index(stop)]
    # the tokens that completed the stop string are kept, like vLLM
    rendered = engine.model.detokenize(cut.token_ids)
    assert stop in rendered and rendered.endswith(stop) or stop in rendered[-len(stop) * 4 :]
    assert len(cut.logprobs) == len(cut.token_ids)
    assert cut.token_ids == full.token_ids[: len(cut.token_ids)]
    with_stop = _run(engine, engine.generate(
        prompt, GenParams(max_tokens=30, stop=(stop,), include_stop_str_in_output=True)
    ))
    assert with_stop.text == cut.text + stop


def test_stop_token_sequence_and_allowed_ids(engine: Engine) -> None:
    prompt = engine.model.tokenize(PROMPTS[1])
    full = _run(engine, engine.generate(prompt, GenParams(max_tokens=20)))
    seq = tuple(full.token_ids[5:7])
    cut = _run(engine, engine.generate(prompt, GenParams(max_tokens=20, stop_token_seqs=(seq,))))
    assert cut.finish_reason == "stop" and cut.token_ids == full.token_ids[:7]
    allowed = (full.token_ids[0] + 1, full.token_ids[0] + 2)
    only = _run(engine, engine.generate(prompt, GenParams(max_tokens=3, allowed_ids=allowed)))
    assert set(only.token_ids) <= set(allowed)


def test_probe_reads_two_ids_from_full_logits(engine: Engine) -> None:
    prompt = engine.model.tokenize(PROMPTS[3])
    a, b = 1063, 1041
    gen = _run(engine, engine.generate(prompt, GenParams(
        max_tokens=1, logprobs=0, logprob_ids=(a, b), probe_ids=(a, b), probe_after=(),
    )))
    top = dict(gen.logprobs[0].top)
    assert gen.probe == pytest.approx((top[a], top[b]))
    assert gen.probe_index == 0


def test_probe_after_text_marks_the_position_after_the_rendered_tag(engine: Engine) -> None:
    """A tag the token sequence does not match (``probe_after`` never generated) is still
    found in the output text: the probe reads the position right after it."""
    prompt = engine.model.tokenize(PROMPTS[0])
    plain = _run(engine, engine.generate(prompt, GenParams(
        max_tokens=30, skip_special_tokens=False, logprobs=0,
    )))
    ids = plain.token_ids
    prefixes = [engine.model.detokenize(ids[:j]) for j in range(len(ids))]
    # The last 4 characters of some prefix that no other prefix ends with.
    k, tag = next(
        (j, text[-4:]) for j, text in enumerate(prefixes)
        if len(text) >= 4 and sum(p.endswith(text[-4:]) for p in prefixes) == 1
    )
    a, b = ids[k], ids[0]
    gen = _run(engine, engine.generate(prompt, GenParams(
        max_tokens=30, skip_special_tokens=False, logprobs=0, logprob_ids=(a, b),
        probe_ids=(a, b), probe_after=(-1,), probe_after_text=tag,
    )))
    assert gen.token_ids == ids
    assert gen.probe_index == k
    top = dict(gen.logprobs[k].top)
    assert gen.probe == pytest.approx((top[a], top[b]))


def test_batch_smaller_than_the_slots_is_refused(random_model: Path) -> None:
    """llama.cpp would abort the whole process on such a context: a clear error instead."""
    model = LlamaModel.load(random_model, n_gpu_layers=0)
    try:
        with pytest.raises(ValueError, match=r"batch size \(2\) must be at least .* slots \(4\)"):
            LlamaContext(model, n_seq=4, n_ctx_per_seq=256, n_batch=2)
    finally:
        model.close()


def test_limits(engine: Engine) -> None:
    with pytest.raises(PromptTooLong, match="exceed the context of one slot"):
        engine.check([1] * 500, GenParams(max_tokens=100))
    with pytest.raises(ValueError, match="empty"):
        engine.check([], GenParams(max_tokens=1))
    with pytest.raises(ValueError, match="logprobs"):
        engine.check([1], GenParams(max_tokens=1, logprobs=21))


def test_queue_bound_is_all_or_nothing(random_model: Path) -> None:
    eng = make_engine(random_model, n_seq=2, max_queue=3)  # not started: nothing is admitted
    try:
        params = GenParams(max_tokens=4)
        futures = eng.submit_many([([1, 2], params)] * 5)  # 2 free slots + 3 waiting
        with pytest.raises(QueueFull):
            eng.submit_many([([1, 2], params)])
        assert eng.queue_depth == 5
        for f in futures:
            eng.cancel(f)
    finally:
        eng.stop()


def test_cancel_frees_the_slot(slow_model: Path) -> None:
    eng = make_engine(slow_model, n_seq=1, n_ctx=4096)
    eng.start()
    try:
        async def scenario():
            long = asyncio.ensure_future(
                eng.generate([1, 2, 3], GenParams(max_tokens=4000, ignore_eos=True))
            )
            while eng.busy_slots == 0:
                await asyncio.sleep(0.01)
            long.cancel()
            short = await eng.generate([4, 5], GenParams(max_tokens=3))
            return long, short

        long, short = asyncio.run(scenario())
        assert long.cancelled() and len(short.token_ids) == 3
        assert eng.stats.requests_cancelled == 1
        assert eng.stats.generated_tokens < 4000
    finally:
        eng.stop()


@pytest.mark.parametrize("case", ["ties", "peaked", "normal"])
def test_top_k_matches_a_full_sort(case: str) -> None:
    import numpy as np
    from rank1_server.engine import _top_k_ids

    rng = np.random.default_rng(0)
    logits = rng.standard_normal(151_936).astype(np.float32)
    if case == "ties":  # most of the vocabulary suppressed to one value
        logits[3000:] = -60.0
    if case == "peaked":  # fewer than k candidates near the best
        logits[:] = -100.0
        logits[[7, 9, 11]] = [50.0, 20.0, 10.0]
        logits[100:130] = rng.uniform(-95, -90, 30).astype(np.float32)
    for k in (1, 5, 20):
        got = _top_k_ids(logits, k)
        want = np.argsort(-logits, kind="stable")[:k]
        assert list(logits[got]) == list(logits[want])
        assert len(set(got.tolist())) == k
