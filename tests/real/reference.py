"""rank1 read straight from llama.cpp's logits: the reference the real servers are held to.

An independent single-sequence greedy decoder on llama.cpp's low-level ctypes API, with
no code of rank1-server's engine: tokenize the prompt the way llama-server does (the
model's BOS when it asks for one, special tokens parsed), decode one token at a time,
take the argmax, and stop on ``</think> true`` / ``</think> false``, on end of generation
or at the budget. The answer position's full log-softmax is kept, so a test can derive
what each server should report (its top-20, or the two answers by id).

Usage::

    with ReferenceModel(path) as ref:
        out = ref.judge(prompt, budget=64)
        out.source, out.score, out.reasoning
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass

import numpy as np

from rank1_integrations.protocol import (
    ANSWER_FALSE,
    ANSWER_TRUE,
    STOP_STRINGS,
    extract_reasoning,
    forced_answer_prompt,
    score_from_logprobs,
)

__all__ = ["ReferenceModel", "ReferenceJudgment"]


@dataclass(frozen=True)
class ReferenceJudgment:
    #: ``"answer_logprobs"`` when the chain ended on an answer, else ``"forced_answer"``.
    source: str
    #: P(true) renormalised over the two answer tokens, from the full logits.
    score: float
    #: The generated text before ``</think>`` (the client's ``extract_reasoning`` rule).
    reasoning: str
    #: Full log-softmax at the answer position (vocabulary-sized).
    answer_logprobs: np.ndarray
    #: Generated token ids of the first request.
    tokens: tuple[int, ...]

    def top(self, k: int = 20) -> list[tuple[int, float]]:
        """The ``k`` most likely tokens at the answer position, best first."""
        ids = np.argsort(-self.answer_logprobs, kind="stable")[:k]
        return [(int(i), float(self.answer_logprobs[i])) for i in ids]


class ReferenceModel:
    """One llama.cpp context of ``n_ctx`` tokens on ``path``, repacking off (see
    serving-notes: AMX repacking dies with SIGILL on these CPUs)."""

    def __init__(self, path: str, *, n_ctx: int = 4096, n_batch: int = 512) -> None:
        import llama_cpp
        from llama_cpp import _logger

        _logger.set_verbose(False)
        self.lib = lib = llama_cpp
        lib.llama_backend_init()
        params = lib.llama_model_default_params()
        params.n_gpu_layers = 0
        params.use_extra_bufts = False
        self.model = lib.llama_model_load_from_file(path.encode(), params)
        if not self.model:
            raise RuntimeError(f"could not load {path}")
        self.vocab = lib.llama_model_get_vocab(self.model)
        self.n_vocab = lib.llama_vocab_n_tokens(self.vocab)
        cparams = lib.llama_context_default_params()
        cparams.n_ctx = n_ctx
        cparams.n_batch = cparams.n_ubatch = self.n_batch = n_batch
        cparams.n_seq_max = 1
        cparams.n_threads = cparams.n_threads_batch = 1
        cparams.flash_attn_type = lib.LLAMA_FLASH_ATTN_TYPE_DISABLED
        self.ctx = lib.llama_init_from_model(self.model, cparams)
        if not self.ctx:
            raise RuntimeError("could not create a llama.cpp context")
        self._seen: dict[tuple[str, int], ReferenceJudgment] = {}
        #: The tokens whose KV the context holds (one sequence, like a one-slot server).
        self._cached: list[int] = []
        self.true_id = self._single(ANSWER_TRUE)
        self.false_id = self._single(ANSWER_FALSE)

    # ------------------------------------------------------------------ llama.cpp

    def tokenize(self, text: str, *, add_special: bool) -> list[int]:
        data = text.encode()
        cap = len(data) + 16
        buf = (ctypes.c_int32 * cap)()
        n = self.lib.llama_tokenize(self.vocab, data, len(data), buf, cap, add_special, True)
        if n < 0:
            raise RuntimeError("tokenize failed")
        return list(buf[:n])

    def piece(self, token: int) -> bytes:
        buf = ctypes.create_string_buffer(256)
        n = self.lib.llama_token_to_piece(self.vocab, token, buf, 256, 0, True)
        return buf.raw[:n]

    def _single(self, text: str) -> int:
        ids = self.tokenize(text, add_special=False)
        if len(ids) != 1:
            raise ValueError(f"{text!r} is not one token here: {ids}")
        return ids[0]

    def _decode(self, tokens: list[int], start: int) -> np.ndarray:
        """Decode ``tokens`` at positions ``start``...; the last one's log-softmax."""
        lib = self.lib
        for chunk_start in range(0, len(tokens), self.n_batch):
            chunk = tokens[chunk_start: chunk_start + self.n_batch]
            last = chunk_start + len(chunk) == len(tokens)
            batch = lib.llama_batch_init(len(chunk), 0, 1)
            try:
                for i, tok in enumerate(chunk):
                    batch.token[i] = tok
                    batch.pos[i] = start + chunk_start + i
                    batch.n_seq_id[i] = 1
                    batch.seq_id[i][0] = 0
                    batch.logits[i] = last and i == len(chunk) - 1
                batch.n_tokens = len(chunk)
                if lib.llama_decode(self.ctx, batch) != 0:
                    raise RuntimeError("llama_decode failed")
            finally:
                lib.llama_batch_free(batch)
        ptr = lib.llama_get_logits_ith(self.ctx, -1)
        logits = np.ctypeslib.as_array(ptr, shape=(self.n_vocab,)).astype(np.float64)
        shifted = logits - logits.max()
        return shifted - np.log(np.exp(shifted).sum())

    def reset(self) -> None:
        """Forget the cached sequence and every remembered judgment (a fresh server)."""
        self.lib.llama_memory_clear(self.lib.llama_get_memory(self.ctx), True)
        self._cached = []
        self._seen.clear()

    # ------------------------------------------------------------------ rank1

    def judge(self, prompt: str, *, budget: int) -> ReferenceJudgment:
        """rank1's two steps, greedily: the chain, then (if it has no answer) the forced
        one-token answer on :func:`forced_answer_prompt`. Remembered per (prompt, budget)."""
        key = (prompt, budget)
        if key not in self._seen:
            self._seen[key] = self._judge(prompt, budget)
        return self._seen[key]

    def _judge(self, prompt: str, budget: int) -> ReferenceJudgment:
        ids = self.tokenize(prompt, add_special=True)
        logprobs = self._feed(ids)
        generated: list[int] = []
        text = b""
        for step in range(budget):
            tok = int(np.argmax(logprobs))
            if self.lib.llama_vocab_is_eog(self.vocab, tok):
                break
            generated.append(tok)
            text += self.piece(tok)
            decoded = text.decode("utf-8", "ignore")
            if tok in (self.true_id, self.false_id) and decoded.endswith(STOP_STRINGS):
                lp_true, lp_false = logprobs[self.true_id], logprobs[self.false_id]
                return ReferenceJudgment(
                    "answer_logprobs", score_from_logprobs(lp_true, lp_false),
                    extract_reasoning(decoded), logprobs, tuple(generated),
                )
            if step + 1 < budget:  # the budget's last token is sampled, never decoded
                logprobs = self._feed([tok], append=True)
        decoded = text.decode("utf-8", "ignore")
        logprobs = self._feed(
            self.tokenize(forced_answer_prompt(prompt, decoded), add_special=True)
        )
        lp_true, lp_false = logprobs[self.true_id], logprobs[self.false_id]
        return ReferenceJudgment(
            "forced_answer", score_from_logprobs(lp_true, lp_false),
            extract_reasoning(decoded), logprobs, tuple(generated),
        )

    def _feed(self, tokens: list[int], *, append: bool = False) -> np.ndarray:
        """Make the sequence ``tokens`` (or the cached one plus ``tokens``) and return the
        log-softmax after it, as a one-slot server with prompt caching does: the KV of
        the longest common prefix with what is cached is kept, the rest decoded. (On
        quantized weights, the same tokens decoded in another batch shape give logits
        that differ by ~1e-2 in P(true): the reference follows the servers' path.)"""
        if append:
            tokens = self._cached + tokens
        keep = 0
        limit = min(len(self._cached), len(tokens) - 1)  # decode at least one token
        while keep < limit and self._cached[keep] == tokens[keep]:
            keep += 1
        self.lib.llama_memory_seq_rm(self.lib.llama_get_memory(self.ctx), 0, keep, -1)
        logprobs = self._decode(tokens[keep:], keep)
        self._cached = list(tokens)
        return logprobs

    def close(self) -> None:
        if self.ctx:
            self.lib.llama_free(self.ctx)
            self.ctx = None
        if self.model:
            self.lib.llama_model_free(self.model)
            self.model = None

    def __enter__(self) -> ReferenceModel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
