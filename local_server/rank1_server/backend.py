"""A thin, typed layer over llama-cpp-python's low-level ctypes API.

Only what the server needs: load a GGUF model, make one context with N sequence slots,
tokenize, render tokens, apply the model's chat template, fill a batch, decode, read
logits as numpy views, and edit the KV cache (remove / copy a sequence's cells). Nothing
here knows about requests or rank1.

Usage::

    model = LlamaModel.load("model.gguf", n_gpu_layers=0)
    ctx = LlamaContext(model, n_seq=8, n_ctx_per_seq=4096, n_threads=1)
    ids = model.tokenize("Hello", parse_special=True)

llama-cpp-python is imported lazily so the package imports without the ``server`` extra.
"""

from __future__ import annotations

import ctypes
import os
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = [
    "Batch",
    "ChatTemplateError",
    "LlamaContext",
    "LlamaModel",
    "default_threads",
    "import_llama_cpp",
]

_INIT_LOCK = threading.Lock()
_BACKEND_READY = False


def import_llama_cpp() -> Any:
    """Import ``llama_cpp`` (and initialise its backend once), or say which extra to install."""
    global _BACKEND_READY
    try:
        import llama_cpp
        from llama_cpp import _logger
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "rank1-server needs llama-cpp-python: pip install \"rank1-integrations[server]\""
        ) from exc
    with _INIT_LOCK:
        if not _BACKEND_READY:
            # llama-cpp-python's log callback prints everything until told otherwise.
            _logger.set_verbose(bool(os.environ.get("RANK1_SERVER_LLAMA_VERBOSE")))
            llama_cpp.llama_backend_init()
            _BACKEND_READY = True
    return llama_cpp


def default_threads() -> int:
    """Threads for llama.cpp: half the cores (at least 1), leaving room for the HTTP loop.

    On a 2-core machine this is 1, which measured faster than 2 on a busy box (the
    event loop and the engine thread's Python work share the cores).
    """
    return max(1, (os.cpu_count() or 2) // 2)


class ChatTemplateError(ValueError):
    """llama.cpp could not apply the model's chat template to the messages."""


class LlamaModel:
    """A loaded GGUF model and its vocabulary."""

    def __init__(self, lib: Any, model_ptr: Any, path: str) -> None:
        self._lib = lib
        self.ptr = model_ptr
        self.path = path
        self.vocab = lib.llama_model_get_vocab(model_ptr)
        self.n_vocab: int = lib.llama_vocab_n_tokens(self.vocab)
        self.n_ctx_train: int = lib.llama_model_n_ctx_train(model_ptr)
        self.n_layer: int = lib.llama_model_n_layer(model_ptr)
        self.n_embd: int = lib.llama_model_n_embd(model_ptr)
        self.n_gpu_layers = 0
        #: Whether llama.cpp may repack the weights for its CPU kernels (see :meth:`load`).
        self.repack = True
        self._pieces: dict[tuple[int, bool], bytes] = {}
        self._eog: dict[int, bool] = {}

    # ------------------------------------------------------------------ loading

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        *,
        n_gpu_layers: int | None = None,
        repack: bool = True,
    ) -> LlamaModel:
        """Load a GGUF file. ``n_gpu_layers=None`` offloads every layer when the build
        supports GPU offload and none otherwise; ``-1`` means all layers.

        ``repack=False`` keeps the weights in the file's layout: llama.cpp's CPU backend
        otherwise moves quantized weights (Q4_0, Q4_1, Q8_0, K-quants) into "extra buffer
        types" laid out for its AMX / AVX512 / ARM kernels (``use_extra_bufts``). On hosts
        whose CPU advertises such an instruction set that the sandbox then traps (seen in
        gVisor-style containers with AMX), the first decode dies with SIGILL, killing the
        process; ``repack=False`` avoids those kernels at some speed cost. f16/f32 weights
        are not repacked either way.
        """
        lib = import_llama_cpp()
        path = os.fspath(path)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"model file not found: {path}")
        params = lib.llama_model_default_params()
        if n_gpu_layers is None:
            n_gpu_layers = -1 if lib.llama_supports_gpu_offload() else 0
        params.n_gpu_layers = 0x7FFFFFFF if n_gpu_layers < 0 else n_gpu_layers
        params.use_extra_bufts = repack
        ptr = lib.llama_model_load_from_file(path.encode("utf-8"), params)
        if not ptr:
            raise ValueError(f"llama.cpp could not load the model file {path!r} (not a GGUF?)")
        model = cls(lib, ptr, path)
        model.n_gpu_layers = n_gpu_layers
        model.repack = repack
        return model

    def close(self) -> None:
        if self.ptr:
            self._lib.llama_model_free(self.ptr)
            self.ptr = None

    # ------------------------------------------------------------------ metadata

    def meta(self, key: str) -> str | None:
        """A GGUF metadata value as a string, or None."""
        buf = ctypes.create_string_buffer(4096)
        n = self._lib.llama_model_meta_val_str(self.ptr, key.encode(), buf, len(buf))
        return buf.value.decode("utf-8", "replace") if n >= 0 else None

    def chat_template(self) -> str | None:
        tmpl = self._lib.llama_model_chat_template(self.ptr, None)
        return tmpl.decode("utf-8", "replace") if tmpl else None

    def apply_chat_template(self, template: str, messages: Sequence[tuple[str, str]]) -> str:
        """``messages`` (``(role, content)`` pairs) rendered with ``template`` (see
        :meth:`chat_template`) by llama.cpp's built-in template engine, the assistant's
        turn opened. Raises :class:`ChatTemplateError` when llama.cpp cannot apply it."""
        lib = self._lib
        arr = (lib.llama_chat_message * len(messages))()
        keep = []
        for i, (role, content) in enumerate(messages):
            r, c = role.encode(), content.encode()
            keep += [r, c]
            arr[i].role, arr[i].content = r, c
        size = 4 * sum(len(c) for c in keep) + 1024
        for _ in range(2):
            buf = ctypes.create_string_buffer(size)
            n = lib.llama_chat_apply_template(
                template.encode(), arr, len(messages), True, buf, size
            )
            if n < 0:
                raise ChatTemplateError("the model's chat template could not be applied")
            if n <= size:
                return buf.raw[:n].decode("utf-8", "replace")
            size = n + 1
        raise OverflowError("chat template output too long")

    @property
    def add_bos(self) -> bool:
        return bool(self._lib.llama_vocab_get_add_bos(self.vocab))

    @property
    def bos_id(self) -> int:
        return int(self._lib.llama_vocab_bos(self.vocab))

    def is_eog(self, token: int) -> bool:
        """True for end-of-generation tokens (EOS, EOT, ...)."""
        hit = self._eog.get(token)
        if hit is None:
            hit = self._eog[token] = bool(self._lib.llama_vocab_is_eog(self.vocab, token))
        return hit

    def is_control(self, token: int) -> bool:
        return bool(self._lib.llama_vocab_is_control(self.vocab, token))

    # ------------------------------------------------------------------ text <-> ids

    def tokenize(
        self, text: str, *, add_special: bool = False, parse_special: bool = True
    ) -> list[int]:
        """Token ids of ``text``. ``parse_special`` matches special tokens written as text
        (``<think>``), as the Hugging Face tokenizer rank1 was trained with does."""
        data = text.encode("utf-8")
        cap = len(data) + 8
        buf = (ctypes.c_int32 * cap)()
        n = self._lib.llama_tokenize(
            self.vocab, data, len(data), buf, cap, add_special, parse_special
        )
        if n < 0:
            cap = -n
            buf = (ctypes.c_int32 * cap)()
            n = self._lib.llama_tokenize(
                self.vocab, data, len(data), buf, cap, add_special, parse_special
            )
            if n < 0:
                raise RuntimeError(f"llama.cpp failed to tokenize a text of {len(data)} bytes")
        return list(buf[:n])

    def piece(self, token: int, *, special: bool = True) -> bytes:
        """The bytes of one token. ``special=False`` renders control tokens as nothing."""
        key = (token, special)
        cached = self._pieces.get(key)
        if cached is not None:
            return cached
        buf = ctypes.create_string_buffer(64)
        n = self._lib.llama_token_to_piece(self.vocab, token, buf, 64, 0, special)
        if n < 0:
            buf = ctypes.create_string_buffer(-n)
            n = self._lib.llama_token_to_piece(self.vocab, token, buf, -n, 0, special)
        out = buf.raw[:n]
        self._pieces[key] = out
        return out

    def detokenize(self, tokens: Sequence[int], *, special: bool = True) -> str:
        """Text of a token list; invalid UTF-8 (a cut multi-byte character) is dropped."""
        return b"".join(self.piece(t, special=special) for t in tokens).decode("utf-8", "ignore")


class LlamaContext:
    """One llama.cpp context with ``n_seq`` sequence slots of ``n_ctx_per_seq`` tokens.

    ``kv_unified=False`` (default) gives each sequence its own KV buffer: a token attends
    only to its own sequence's cells, so batching N sequences costs little more than one.
    Copying a prefix between sequences then copies a whole buffer (cheap next to decoding
    the prefix again). ``kv_unified=True`` shares one buffer: copies only edit metadata,
    but every token's attention spans the cells of all sequences (cached ones included),
    which measured slower on CPU. Each sequence's budget is enforced by the engine.
    """

    def __init__(
        self,
        model: LlamaModel,
        *,
        n_seq: int,
        n_ctx_per_seq: int,
        n_batch: int = 512,
        n_threads: int | None = None,
        kv_unified: bool = False,
        flash_attn: bool = False,
    ) -> None:
        if n_batch < n_seq:
            # llama.cpp aborts the process (GGML_ASSERT on n_outputs_max) for such a context.
            raise ValueError(
                f"the batch size ({n_batch}) must be at least the number of slots ({n_seq}): "
                "each decode step holds one token per generating slot; raise --batch-size "
                "or lower --parallel"
            )
        lib = model._lib
        self._lib = lib
        self.model = model
        params = lib.llama_context_default_params()
        # llama.cpp rounds each sequence's share up to a multiple of 256.
        params.n_ctx = n_ctx_per_seq * n_seq
        params.n_batch = n_batch
        params.n_ubatch = n_batch
        params.n_seq_max = n_seq
        params.n_outputs_max_per_seq = 0
        threads = n_threads or default_threads()
        params.n_threads = threads
        params.n_threads_batch = threads
        params.kv_unified = kv_unified
        # Flash attention changes batched logits by ~1e-3 and can flip near-ties between
        # batched and sequential runs: off by default for reproducible verdicts.
        params.flash_attn_type = (
            lib.LLAMA_FLASH_ATTN_TYPE_ENABLED if flash_attn else lib.LLAMA_FLASH_ATTN_TYPE_DISABLED
        )
        params.no_perf = True
        ptr = lib.llama_init_from_model(model.ptr, params)
        if not ptr:
            raise RuntimeError(
                f"llama.cpp could not create a context of {params.n_ctx} tokens "
                f"({n_seq} slots x {n_ctx_per_seq}); lower --n-ctx or --parallel"
            )
        self.ptr = ptr
        self.n_seq = n_seq
        self.n_batch = n_batch
        self.n_threads = threads
        self.kv_unified = kv_unified
        self.n_ctx_per_seq = n_ctx_per_seq
        self.n_ctx_total = int(lib.llama_n_ctx(ptr))
        self.memory = lib.llama_get_memory(ptr)
        self.batch = Batch(lib, n_batch)
        #: ``logits_rows`` views by (buffer address, rows): making one costs more than a step's
        #: other host work for a few slots.
        self._views: dict[tuple[int | None, int], np.ndarray] = {}

    def close(self) -> None:
        if self.ptr:
            self._views.clear()
            self.batch.close()
            self._lib.llama_free(self.ptr)
            self.ptr = None

    # ------------------------------------------------------------------ decoding

    def decode(self) -> int:
        """Decode the filled batch; returns llama.cpp's status code (0 = success)."""
        return int(self._lib.llama_decode(self.ptr, self.batch.raw))

    def logits(self, i: int) -> np.ndarray:
        """The logits of batch row ``i`` (which had ``logits=True``), as a read-only view."""
        ptr = self._lib.llama_get_logits_ith(self.ptr, i)
        arr = np.ctypeslib.as_array(ptr, shape=(self.model.n_vocab,))
        arr.flags.writeable = False
        return arr

    def logits_rows(self, n: int) -> np.ndarray:
        """The logits of the last decode's ``n`` output rows as one read-only
        ``(n, n_vocab)`` view: row ``j`` belongs to the ``j``-th batch token that had
        ``logits=True`` (llama.cpp stores them contiguously, in batch order)."""
        ptr = self._lib.llama_get_logits(self.ptr)
        if not ptr:
            raise RuntimeError("llama.cpp returned no logits for the last decode")
        key = (ctypes.cast(ptr, ctypes.c_void_p).value, n)
        arr = self._views.get(key)
        if arr is None:  # a new buffer or row count (the buffer moves only when it grows)
            arr = np.ctypeslib.as_array(ptr, shape=(n, self.model.n_vocab))
            arr.flags.writeable = False
            self._views[key] = arr
        return arr

    def synchronize(self) -> None:
        """Wait until the last decode's work is done (a no-op on CPU; on a GPU, decoding
        is asynchronous and this includes copying the logits back)."""
        self._lib.llama_synchronize(self.ptr)

    # ------------------------------------------------------------------ KV cache

    def seq_rm(self, seq: int, p0: int = -1, p1: int = -1) -> None:
        """Drop the cells of ``seq`` at positions [p0, p1) (-1: open end)."""
        self._lib.llama_memory_seq_rm(self.memory, seq, p0, p1)

    def seq_cp(self, src: int, dst: int, n: int) -> None:
        """Give ``dst`` the first ``n`` cells of ``src`` (``dst`` must be empty)."""
        if self.kv_unified:
            self._lib.llama_memory_seq_cp(self.memory, src, dst, 0, n)
        else:
            # Separate KV streams: llama.cpp copies whole streams only; trim afterwards.
            self._lib.llama_memory_seq_cp(self.memory, src, dst, -1, -1)
            self._lib.llama_memory_seq_rm(self.memory, dst, n, -1)

    def seq_pos_max(self, seq: int) -> int:
        return int(self._lib.llama_memory_seq_pos_max(self.memory, seq))


class Batch:
    """A reusable ``llama_batch`` of up to ``capacity`` tokens, one sequence id each."""

    def __init__(self, lib: Any, capacity: int) -> None:
        self._lib = lib
        self.capacity = capacity
        self.raw = lib.llama_batch_init(capacity, 0, 1)
        self.n = 0

    def close(self) -> None:
        if self.raw is not None:
            self._lib.llama_batch_free(self.raw)
            self.raw = None

    def clear(self) -> None:
        self.n = 0
        self.raw.n_tokens = 0

    def add(self, token: int, pos: int, seq: int, logits: bool) -> int:
        """Append one token; return its row index."""
        i = self.n
        if i >= self.capacity:
            raise OverflowError("batch is full")
        raw = self.raw
        raw.token[i] = token
        raw.pos[i] = pos
        raw.n_seq_id[i] = 1
        raw.seq_id[i][0] = seq
        raw.logits[i] = logits
        self.n = i + 1
        raw.n_tokens = self.n
        return i
