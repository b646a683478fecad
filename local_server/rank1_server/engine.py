"""Continuous-batching greedy generation over one llama.cpp context.

One engine thread owns the model and a context with ``n_seq`` sequence slots. Requests wait
in a bounded queue; between two decode steps the engine moves waiting requests into free
slots, so a request joins the running batch without waiting for the others to finish.
Every step decodes one token for each generating slot plus prompt chunks of the slots still
reading their prompt, in one ``llama_decode`` call.

Prompt prefixes are reused: a finished slot keeps its KV cells, and a new request whose
prompt starts with tokens another slot holds (or is about to hold) copies those cells
(``llama_memory_seq_cp``) instead of decoding them again. The rank1 prompts of one query
share everything up to the passage, and a forced-answer request extends its own first
request, so both mostly hit the cache.

Usage::

    engine = Engine(model, ctx, max_queue=256)
    engine.start()
    gen = await engine.generate(model.tokenize(prompt), GenParams(max_tokens=64))
    print(gen.text, gen.finish_reason)
    engine.stop()
"""

from __future__ import annotations

import asyncio
import codecs
import concurrent.futures
import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import Enum

import numpy as np

from .backend import LlamaContext, LlamaModel

__all__ = [
    "Engine",
    "EngineStats",
    "GenParams",
    "Generation",
    "PromptTooLong",
    "QueueFull",
    "TokenLogprob",
]

log = logging.getLogger("rank1_server.engine")

#: Highest ``logprobs`` a request may ask for (vLLM's default ``--max-logprobs``).
MAX_LOGPROBS = 20


class QueueFull(Exception):
    """The bounded queue of waiting requests is full; try again later."""


class PromptTooLong(ValueError):
    """Prompt plus ``max_tokens`` exceed one slot's context."""


#: See :attr:`GenParams.follow_up`.
FollowUp = Callable[["Generation"], "tuple[Sequence[int], GenParams] | None"]


@dataclass(frozen=True)
class GenParams:
    """What to generate. Decoding is always greedy.

    ``probe_ids``/``probe_after`` ask the engine to record the log probabilities of two
    token ids (full softmax, no sort) at every position that follows the token sequence
    ``probe_after`` (``()`` = the first generated position); the last such reading is
    returned as :attr:`Generation.probe`. rank1 uses it to read P(true) right after
    ``</think>``.
    """

    max_tokens: int
    stop: tuple[str, ...] = ()
    stop_token_seqs: tuple[tuple[int, ...], ...] = ()
    skip_special_tokens: bool = True
    include_stop_str_in_output: bool = False
    ignore_eos: bool = False
    #: Top-k log probabilities per generated token (0..20), or None for none.
    logprobs: int | None = None
    #: Ids whose logprobs are reported at every position besides the top-k; needs
    #: ``logprobs`` set. With ``logprobs=0`` the top lists exactly these ids (vLLM's
    #: ``logprob_token_ids``, which the HTTP API maps to that).
    logprob_ids: tuple[int, ...] = ()
    #: Restrict the greedy choice to these ids (logprobs are still over the whole vocabulary).
    allowed_ids: tuple[int, ...] | None = None
    probe_ids: tuple[int, int] | None = None
    probe_after: tuple[int, ...] | None = None
    #: Text that also marks a probe position when the output text so far ends with it
    #: (catches a tag split into unusual pieces; a special-token tag is in the text only
    #: with ``skip_special_tokens=False``).
    probe_after_text: str | None = None
    #: Called in the engine thread with the finished generation; may return a second
    #: ``(prompt, params)`` that runs at once in the same slot, continuing from its KV
    #: cells, before anything else can take the slot. Its generation is returned as
    #: :attr:`Generation.follow_up`. rank1's forced answer uses it, so no other request
    #: slips between a chain and its answer (whose logits would then depend on timing).
    follow_up: FollowUp | None = field(default=None, compare=False)


@dataclass(frozen=True)
class TokenLogprob:
    """One generated token's log probability and the top-k alternatives (id, logprob)."""

    token: int
    logprob: float
    top: tuple[tuple[int, float], ...]


@dataclass
class Generation:
    """A finished generation."""

    prompt_tokens: int
    token_ids: list[int]
    text: str
    #: ``"stop"`` (stop string, stop sequence or end-of-generation token) or ``"length"``.
    finish_reason: str
    #: The stop string that matched, or None (EOS, length, stop token sequence).
    stop_reason: str | None
    logprobs: list[TokenLogprob] | None
    #: (logprob of probe_ids[0], logprob of probe_ids[1]) at the last probe position.
    probe: tuple[float, float] | None
    #: Index in ``token_ids`` of the token generated at that position (-1: none).
    probe_index: int
    #: Prompt tokens whose KV cells came from the cache instead of being decoded.
    cached_tokens: int
    #: The generation :attr:`GenParams.follow_up` asked for, run in the same slot.
    follow_up: Generation | None = None


@dataclass
class EngineStats:
    """Counters read by the metrics endpoint (plain ints, updated by the engine thread)."""

    requests_finished: int = 0
    requests_cancelled: int = 0
    requests_failed: int = 0
    prompt_tokens: int = 0
    cached_prompt_tokens: int = 0
    generated_tokens: int = 0
    decode_calls: int = 0
    #: Seconds inside ``llama_decode`` plus ``llama_synchronize`` (the device's work; on a
    #: GPU the logits' copy back to the host ends there).
    decode_seconds: float = 0.0
    #: Seconds of whole engine steps that decoded: placement, batch filling, decode,
    #: argmax and the per-token checks. ``step - decode`` is the engine's host work, and
    #: divided by ``generated_tokens`` (one logits row each) its cost per slot and step.
    step_seconds: float = 0.0


class _State(Enum):
    IDLE = "idle"
    WAITING = "waiting"  # for another slot to decode a prefix it will copy
    PREFILL = "prefill"
    DECODE = "decode"


class _Request:
    _ids = itertools.count()

    def __init__(
        self, prompt: list[int], params: GenParams,
        on_text: Callable[[str], None] | None = None,
    ) -> None:
        self.id = next(self._ids)
        #: Called on the engine thread with each new piece of the first generation's
        #: output text (streaming; not a follow-up's).
        self.on_text = on_text
        self.future: concurrent.futures.Future[Generation] = concurrent.futures.Future()
        self.cancelled = False
        self.finished = False
        #: The first generation, while its follow-up runs.
        self.first: Generation | None = None
        self.restart(prompt, params)

    def restart(self, prompt: list[int], params: GenParams) -> None:
        """(Re)start generating for ``prompt``: fresh output, same id and future."""
        self.prompt = prompt
        self.params = params
        self.gen: list[int] = []
        self.text = ""
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self.logprobs: list[TokenLogprob] | None = [] if params.logprobs is not None else None
        self.probe: tuple[float, float] | None = None
        self.probe_index = -1
        self.cached = 0


@dataclass
class _Slot:
    seq: int
    tokens: list[int] = field(default_factory=list)  # exactly the cells this seq holds
    req: _Request | None = None
    state: _State = _State.IDLE
    wait_src: _Slot | None = None
    wait_len: int = 0
    next_token: int = -1
    last_used: int = 0


def _lcp(a: Sequence[int], b: Sequence[int], limit: int) -> int:
    n = min(len(a), len(b), limit)
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


class Engine:
    """Greedy continuous batching over ``ctx.n_seq`` slots in a dedicated thread."""

    def __init__(
        self,
        model: LlamaModel,
        ctx: LlamaContext,
        *,
        max_queue: int = 512,
        min_shared_prefix: int = 8,
        prefix_cache: bool = True,
        deterministic: bool = False,
    ) -> None:
        self.model = model
        #: Each sequence's logits independent of the batch and of the prompt cache: every
        #: slot is decoded in a ``llama_decode`` call of its own, prompts in the same chunks
        #: whatever the load, and no request starts from cells another one left (a
        #: follow-up still continues its own). Costs the batching (README: reproducibility).
        self.deterministic = deterministic
        self.prefix_cache = prefix_cache and not deterministic
        self.ctx = ctx
        self.max_queue = max_queue
        self.min_shared_prefix = min_shared_prefix
        self.stats = EngineStats()
        self._slots = [_Slot(seq=i) for i in range(ctx.n_seq)]
        self._pending: deque[_Request] = deque()
        self._cv = threading.Condition()
        self._stopping = False
        #: Set when the engine thread died of an unexpected error (then nothing is served).
        self.crashed: str | None = None
        self._thread: threading.Thread | None = None
        self._clock = itertools.count(1)
        self._argmax_block = _argmax_block_size(model.n_vocab)

    # ------------------------------------------------------------------ public API

    @property
    def n_slots(self) -> int:
        return len(self._slots)

    @property
    def n_ctx_per_slot(self) -> int:
        return self.ctx.n_ctx_per_seq

    @property
    def busy_slots(self) -> int:
        return sum(1 for s in self._slots if s.req is not None)

    @property
    def queue_depth(self) -> int:
        return len(self._pending)

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="rank1-engine", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop the thread, fail what is still waiting, free the context and model."""
        with self._cv:
            self._stopping = True
            self._cv.notify_all()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self._fail_unfinished("the engine stopped")
        self._pending.clear()
        self.ctx.close()
        self.model.close()

    def check(self, prompt: Sequence[int], params: GenParams) -> None:
        """Raise :class:`PromptTooLong` / ``ValueError`` for a request that can never run."""
        if not prompt:
            raise ValueError("the prompt is empty (no tokens)")
        if params.max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {params.max_tokens}")
        need = len(prompt) + params.max_tokens
        if need > self.n_ctx_per_slot:
            raise PromptTooLong(
                f"the prompt has {len(prompt)} tokens and max_tokens is {params.max_tokens}: "
                f"{need} tokens exceed the context of one slot ({self.n_ctx_per_slot} tokens)"
            )
        if params.logprobs is not None and not 0 <= params.logprobs <= MAX_LOGPROBS:
            raise ValueError(f"logprobs must be between 0 and {MAX_LOGPROBS}")

    def submit_many(
        self, items: Sequence[tuple[Sequence[int], GenParams]], *,
        on_text: Sequence[Callable[[str], None] | None] | None = None,
    ) -> list[concurrent.futures.Future[Generation]]:
        """Queue several requests at once (all or none; a judgment's second step needs no
        queueing: it is a :attr:`GenParams.follow_up`). ``on_text[i]``, when
        given, is called on the engine thread with each new piece of request ``i``'s output
        text as it is generated (it must be quick and thread-safe; the streaming API hands
        it to its event loop)."""
        for prompt, params in items:
            self.check(prompt, params)
        listeners = list(on_text) if on_text is not None else [None] * len(items)
        reqs = [
            _Request(list(prompt), params, listener)
            for (prompt, params), listener in zip(items, listeners, strict=True)
        ]
        with self._cv:
            if self._stopping or self.crashed:
                raise RuntimeError(f"the engine is not running ({self.crashed or 'stopping'})")
            free = sum(1 for s in self._slots if s.req is None)
            if len(self._pending) + len(reqs) - free > self.max_queue:
                raise QueueFull(
                    f"{len(self._pending)} requests are waiting (limit {self.max_queue})"
                )
            self._pending.extend(reqs)
            self._cv.notify()
        for r in reqs:
            r.future._rank1_req = r  # type: ignore[attr-defined]  # for cancel()
        return [r.future for r in reqs]

    def cancel(self, future: concurrent.futures.Future[Generation]) -> None:
        """Abandon a request: it leaves the queue, or frees its slot at the next step."""
        req: _Request | None = getattr(future, "_rank1_req", None)
        if req is None or req.finished:
            return
        with self._cv:
            req.cancelled = True
            self._cv.notify()

    async def generate(self, prompt: Sequence[int], params: GenParams) -> Generation:
        """Generate for one prompt; cancelling the awaiting task frees the slot."""
        return (await self.generate_many([(prompt, params)]))[0]

    async def generate_many(
        self, items: Sequence[tuple[Sequence[int], GenParams]]
    ) -> list[Generation]:
        futures = self.submit_many(items)
        try:
            return list(await asyncio.gather(*(asyncio.wrap_future(f) for f in futures)))
        except BaseException:
            for f in futures:
                self.cancel(f)
            raise

    # ------------------------------------------------------------------ engine thread

    def _run(self) -> None:
        try:
            while True:
                with self._cv:
                    while not self._stopping and not self._pending and not self._has_work():
                        self._cv.wait()
                    if self._stopping:
                        return
                    started = time.perf_counter()
                    admitted = self._take_admissions()
                self._drop_cancelled()
                for req in admitted:
                    self._place(req)
                self._resolve_waiting()
                self._step(started)
        except BaseException as exc:  # pragma: no cover - a bug; fail loudly, not silently
            log.exception("engine thread crashed")
            with self._cv:
                self.crashed = f"{type(exc).__name__}: {exc}"
            self._fail_unfinished(f"engine crashed: {exc!r}")
            raise

    def _fail_unfinished(self, message: str) -> None:
        """Fail every waiting and running request (once nothing can be submitted)."""
        for req in list(self._pending) + [s.req for s in self._slots if s.req]:
            if not req.future.done():
                req.future.set_exception(RuntimeError(message))

    def _has_work(self) -> bool:
        return any(s.req is not None for s in self._slots)

    def _take_admissions(self) -> list[_Request]:
        """Pop as many waiting requests as there are free slots (called under the lock)."""
        free = sum(1 for s in self._slots if s.req is None)
        out: list[_Request] = []
        while self._pending and len(out) < free:
            req = self._pending.popleft()
            if req.cancelled:
                self._finish_cancelled(req)
                continue
            out.append(req)
        return out

    def _finish_cancelled(self, req: _Request) -> None:
        req.finished = True
        self.stats.requests_cancelled += 1
        if not req.future.done():
            req.future.cancel()

    def _drop_cancelled(self) -> None:
        for s in self._slots:
            if s.req is not None and s.req.cancelled:
                self._finish_cancelled(s.req)
                self._release(s)
        with self._cv:
            if any(r.cancelled for r in self._pending):
                keep: deque[_Request] = deque()
                for r in self._pending:
                    if r.cancelled:
                        self._finish_cancelled(r)
                    else:
                        keep.append(r)
                self._pending = keep

    def _release(self, s: _Slot) -> None:
        """Free a slot; its KV cells stay for prefix reuse."""
        s.req = None
        s.state = _State.IDLE
        s.wait_src = None
        s.last_used = next(self._clock)

    # ------------------------------------------------------------------ placement

    def _place(self, req: _Request) -> None:
        """Put ``req`` into a free slot, reusing the longest cached prefix available."""
        prompt = req.prompt
        limit = len(prompt) - 1  # always decode at least one prompt token (for its logits)
        if not self.prefix_cache:
            limit = 0
        idle = [s for s in self._slots if s.req is None]
        scored = [(s, _lcp(s.tokens, prompt, limit)) for s in idle]
        # A running slot that holds (or is about to hold) a longer prefix can share it.
        src, shared = None, 0
        for s in self._slots:
            if s.req is None:
                continue
            target = s.req.prompt if s.state in (_State.WAITING, _State.PREFILL) else s.tokens
            n = _lcp(target, prompt, limit)
            if n > shared:
                src, shared = s, n
        best, own = max(scored, key=lambda x: (x[1], -x[0].last_used))
        if src is not None and shared >= self.min_shared_prefix and shared > own:
            # Copy from the running slot into the free slot whose cache is worth least.
            dst = min(scored, key=lambda x: (x[1], x[0].last_used))[0]
            self.ctx.seq_rm(dst.seq)
            dst.tokens = []
            dst.req, dst.state = req, _State.WAITING
            dst.wait_src, dst.wait_len = src, shared
            dst.last_used = next(self._clock)
            self._try_copy(dst)
            return
        self.ctx.seq_rm(best.seq, own, -1)
        del best.tokens[own:]
        best.req, best.state = req, _State.PREFILL
        best.last_used = next(self._clock)
        req.cached = own

    def _try_copy(self, s: _Slot) -> None:
        """Copy the awaited prefix into a WAITING slot once its source holds it."""
        src, want, req = s.wait_src, s.wait_len, s.req
        assert src is not None and req is not None
        have = _lcp(src.tokens, req.prompt, want)
        if have < want:
            still_coming = (
                src.req is not None
                and src.state in (_State.WAITING, _State.PREFILL)
                and _lcp(src.req.prompt, req.prompt, want) >= want
            )
            if still_coming:
                return
            want = have  # the source gave up or moved on: take what it has
        if want >= self.min_shared_prefix:
            self.ctx.seq_cp(src.seq, s.seq, want)
            s.tokens = list(req.prompt[:want])
            req.cached = want
        s.state = _State.PREFILL
        s.wait_src = None

    def _resolve_waiting(self) -> None:
        for s in self._slots:
            if s.state is _State.WAITING:
                self._try_copy(s)

    # ------------------------------------------------------------------ one step

    def _step(self, started: float) -> None:
        """Decode one batch and sample every row that got logits; ``started`` is when this
        engine iteration began (for :attr:`EngineStats.step_seconds`)."""
        if self.deterministic:
            self._step_each(started)
            return
        batch = self.ctx.batch
        batch.clear()
        rows: list[tuple[_Slot, int]] = []
        budget = batch.capacity
        for s in self._slots:
            if s.state is _State.DECODE:
                rows.append((s, batch.add(s.next_token, len(s.tokens), s.seq, True)))
                s.tokens.append(s.next_token)
                budget -= 1
        prefill = sorted(
            (s for s in self._slots if s.state is _State.PREFILL),
            key=lambda s: s.req.id if s.req is not None else -1,  # a PREFILL slot has one
        )
        for s in prefill:
            if budget <= 0:
                break
            assert s.req is not None  # a PREFILL slot holds its request
            prompt = s.req.prompt
            start = len(s.tokens)
            n = min(budget, len(prompt) - start)
            last = len(prompt) - 1
            for k in range(start, start + n):
                i = batch.add(prompt[k], k, s.seq, k == last)
            s.tokens.extend(prompt[start : start + n])
            self.stats.prompt_tokens += n
            budget -= n
            if start + n == len(prompt):
                rows.append((s, i))
        if batch.n == 0:
            return
        rc = self._decode()
        if rc != 0:
            self._fail_batch(rc)
        elif rows:
            # One view of all output rows (llama.cpp keeps them contiguous, in batch order:
            # exactly ``rows``) and one blocked argmax over it, instead of a view and an
            # argmax call per slot: scanning n_vocab floats per slot is the host work per
            # step that grows with the slots (measured: benchmarks/gpu/host_cost.py).
            logits = self.ctx.logits_rows(len(rows))
            greedy = _argmax_rows(logits, self._argmax_block)
            for j, (s, _) in enumerate(rows):
                self._sample(s, logits[j], greedy[j])
        self.stats.step_seconds += time.perf_counter() - started

    def _decode(self) -> int:
        """``llama_decode`` of the batch as filled, made synchronous and timed; its status."""
        t = time.perf_counter()
        rc = self.ctx.decode()
        self.ctx.synchronize()
        self.stats.decode_seconds += time.perf_counter() - t
        self.stats.decode_calls += 1
        return rc

    def _step_each(self, started: float) -> None:
        """The deterministic step: each slot alone in its own ``llama_decode`` (one token,
        or the next prompt chunk of ``batch.capacity`` tokens), in request order, so its
        logits are those it would get on an idle server."""
        batch = self.ctx.batch
        active = sorted(
            (s for s in self._slots if s.state in (_State.DECODE, _State.PREFILL)),
            key=lambda s: s.req.id if s.req is not None else -1,
        )
        for s in active:
            batch.clear()
            done = True
            if s.state is _State.DECODE:
                batch.add(s.next_token, len(s.tokens), s.seq, True)
                s.tokens.append(s.next_token)
            else:
                assert s.req is not None  # a PREFILL slot holds its request
                prompt, start = s.req.prompt, len(s.tokens)
                n = min(batch.capacity, len(prompt) - start)
                done = start + n == len(prompt)
                for k in range(start, start + n):
                    batch.add(prompt[k], k, s.seq, k == len(prompt) - 1)
                s.tokens.extend(prompt[start : start + n])
                self.stats.prompt_tokens += n
            rc = self._decode()
            if rc != 0:
                log.error("llama_decode failed with status %d", rc)
                self._fail_slot(s, rc)
            elif done:
                logits = self.ctx.logits_rows(1)
                self._sample(s, logits[0], _argmax_rows(logits, self._argmax_block)[0])
        self.stats.step_seconds += time.perf_counter() - started

    def _fail_batch(self, rc: int) -> None:
        log.error("llama_decode failed with status %d", rc)
        for s in self._slots:
            if s.state in (_State.DECODE, _State.PREFILL) and s.req is not None:
                self._fail_slot(s, rc)

    def _fail_slot(self, s: _Slot, rc: int) -> None:
        req = s.req
        assert req is not None
        req.finished = True
        self.stats.requests_failed += 1
        if not req.future.done():
            req.future.set_exception(RuntimeError(f"llama_decode failed (status {rc})"))
        self.ctx.seq_rm(s.seq)
        s.tokens = []
        self._release(s)

    def _sample(self, s: _Slot, logits: np.ndarray, greedy: int) -> None:
        """Take the next token of ``s`` from its ``logits`` row; ``greedy`` is that row's
        argmax over the whole vocabulary (already computed for the batch)."""
        req = s.req
        assert req is not None
        p = req.params
        if p.allowed_ids:
            allowed = np.asarray(p.allowed_ids)
            token = int(allowed[int(np.argmax(logits[allowed]))])
        else:
            token = greedy
        lse: float | None = None
        if p.probe_ids is not None and self._at_probe(req):
            lse = _logsumexp(logits)
            a, b = p.probe_ids
            req.probe = (float(logits[a]) - lse, float(logits[b]) - lse)
            req.probe_index = len(req.gen)
        if req.logprobs is not None:
            if lse is None:
                lse = _logsumexp(logits)
            req.logprobs.append(
                _top_logprobs(logits, lse, token, p.logprobs or 0, p.logprob_ids)
            )
        req.gen.append(token)
        self.stats.generated_tokens += 1

        finish: tuple[str, str | None] | None = None
        if not p.ignore_eos and self.model.is_eog(token):
            finish = ("stop", None)  # like vLLM: the EOS token is not rendered into the text
        else:
            finish = self._append_text(req, token)
            if finish is None:
                for seq in p.stop_token_seqs:
                    if seq and len(req.gen) >= len(seq) and tuple(req.gen[-len(seq) :]) == seq:
                        finish = ("stop", None)
                        break
        if finish is None and len(req.gen) >= p.max_tokens:
            finish = ("length", None)
        if finish is None:
            s.next_token = token
            s.state = _State.DECODE
            return
        if finish[0] == "length":
            req.text += req._decoder.decode(b"", final=True)
        self.stats.requests_finished += 1
        self.stats.cached_prompt_tokens += req.cached
        gen = Generation(
            prompt_tokens=len(req.prompt),
            token_ids=req.gen,
            text=req.text,
            finish_reason=finish[0],
            stop_reason=finish[1],
            logprobs=req.logprobs,
            probe=req.probe,
            probe_index=req.probe_index,
            cached_tokens=req.cached,
        )
        if req.first is None and p.follow_up is not None:
            if self._follow_up(s, gen):
                return
        elif req.first is not None:
            req.first.follow_up, gen = gen, req.first
        req.finished = True
        self._release(s)
        if not req.future.done():
            req.future.set_result(gen)

    def _follow_up(self, s: _Slot, gen: Generation) -> bool:
        """Start ``gen``'s follow-up in the same slot, continuing from its cells; False when
        there is none. A follow-up that fails (its callback raises, or it cannot fit the
        slot) fails this request alone."""
        req = s.req
        assert req is not None and req.params.follow_up is not None
        try:
            nxt = req.params.follow_up(gen)
            if nxt is None:
                return False
            prompt, params = list(nxt[0]), nxt[1]
            self.check(prompt, params)
        except Exception as exc:  # the caller's error, for this request only
            req.finished = True
            self.stats.requests_failed += 1
            self._release(s)
            if not req.future.done():
                req.future.set_exception(exc)
            return True
        req.first = gen
        req.restart(prompt, params)
        own = _lcp(s.tokens, prompt, len(prompt) - 1)  # decode at least one token
        self.ctx.seq_rm(s.seq, own, -1)
        del s.tokens[own:]
        s.state = _State.PREFILL  # keeps its request's id: first in line for prefill
        req.cached = own
        return True

    def _at_probe(self, req: _Request) -> bool:
        after = req.params.probe_after
        if after is None:
            return False
        if not after:
            return not req.gen
        if len(req.gen) >= len(after) and tuple(req.gen[-len(after) :]) == after:
            return True
        tag = req.params.probe_after_text
        return tag is not None and bool(tag) and req.text.endswith(tag)  # req.gen's text

    def _append_text(self, req: _Request, token: int) -> tuple[str, str | None] | None:
        """Add the token's text; return a finish tuple when a stop string completed."""
        p = req.params
        piece = self.model.piece(token, special=not p.skip_special_tokens)
        before = len(req.text)
        delta = req._decoder.decode(piece)
        req.text += delta
        if req.on_text is not None and delta and req.first is None:
            req.on_text(delta)
        if not p.stop:
            return None
        best: tuple[int, str] | None = None
        for stop in p.stop:
            at = req.text.find(stop, max(0, before - len(stop) + 1))
            if at != -1 and (best is None or at < best[0]):
                best = (at, stop)
        if best is None:
            return None
        at, stop = best
        req.text = req.text[: at + len(stop)] if p.include_stop_str_in_output else req.text[:at]
        return ("stop", stop)


def _argmax_block_size(n_vocab: int, lo: int = 256, hi: int = 8192) -> int:
    """A divisor of ``n_vocab`` in ``[lo, hi]`` that leaves at least 8 blocks (the one
    nearest 1024), or 0 for none (small or prime-ish vocabularies: rows are scanned whole)."""
    sizes = [k for k in range(lo, min(hi, n_vocab // 8) + 1) if n_vocab % k == 0]
    return min(sizes, key=lambda k: abs(k - 1024)) if sizes else 0


def _argmax_rows(logits: np.ndarray, block: int) -> list[int]:
    """``np.argmax`` of every row of a C-contiguous ``(n, n_vocab)`` array (first index of
    the maximum; NaN counts as the maximum, as in numpy), scanning each row once.

    With ``block`` (a divisor of ``n_vocab``), each row's maximum is first taken per block
    of ``block`` logits (a vectorised ``max`` reduction, faster over 152k floats than
    ``argmax``), then the argmax is found among the block maxima and inside the winning
    block only: the first block holding the maximum holds its first index, so the result
    is exactly ``np.argmax``'s. Without one, rows are scanned one by one (``np.argmax``
    along ``axis=1`` measured slower than that on llama.cpp's logits buffer).
    """
    n, n_vocab = logits.shape
    if not block:
        return [int(np.argmax(row)) for row in logits]
    blocks = logits.reshape(n, n_vocab // block, block)
    best = np.max(blocks, axis=2).argmax(axis=1)
    within = blocks[np.arange(n), best].argmax(axis=1)
    return (best * block + within).tolist()


def _logsumexp(logits: np.ndarray) -> float:
    m = float(np.max(logits))
    return m + float(np.log(np.sum(np.exp(logits - m, dtype=np.float32), dtype=np.float64)))


#: Top-k candidates are first looked for within this many nats of the best logit.
_TOP_K_WINDOW = 20.0


def _top_k_ids(logits: np.ndarray, k: int) -> np.ndarray:
    """Ids of the ``k`` largest logits, best first, by partial sort.

    ``argpartition`` over the whole vocabulary slows down badly when huge numbers of
    logits tie (padded or suppressed tokens share one value), so the candidates are first
    narrowed to those within :data:`_TOP_K_WINDOW` of the best; the whole array is
    partitioned only when that leaves fewer than ``k``.
    """
    best = float(np.max(logits))
    cand = np.flatnonzero(logits >= best - _TOP_K_WINDOW)
    if len(cand) >= k:
        if len(cand) > k:
            cand = cand[np.argpartition(logits[cand], -k)[-k:]]
    else:
        cand = np.argpartition(logits, -k)[-k:]
    return cand[np.argsort(-logits[cand], kind="stable")]


def _top_logprobs(
    logits: np.ndarray, lse: float, token: int, k: int, extra: tuple[int, ...] = ()
) -> TokenLogprob:
    """The chosen token's logprob, the top ``k`` by partial sort (no full-vocabulary sort),
    then the ``extra`` ids not already listed."""
    top: list[tuple[int, float]] = []
    if k > 0:
        idx = _top_k_ids(logits, k)
        top = [(int(i), float(logits[i]) - lse) for i in idx]
    if extra:
        listed = {t for t, _ in top}
        top += [(t, float(logits[t]) - lse) for t in extra if t not in listed]
    return TokenLogprob(token=token, logprob=float(logits[token]) - lse, top=tuple(top))
