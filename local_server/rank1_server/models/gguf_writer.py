"""Write a qwen2-architecture GGUF file from numpy weights and a :class:`Vocabulary`.

This is the one place that knows GGUF key and tensor names; the random and the demo
model builders only make numpy arrays.

Usage::

    from rank1_server.models.gguf_writer import Qwen2Config, write_qwen2_gguf
    from rank1_server.models.vocab import build_vocabulary

    vocab = build_vocabulary()
    cfg = Qwen2Config(n_vocab=vocab.size, n_embd=64, n_layer=2, n_head=4, n_head_kv=4,
                      n_ff=128, n_ctx=2048)
    weights = ...  # a Qwen2Weights of numpy arrays (see random_model.py)
    write_qwen2_gguf("model.gguf", vocab, weights, cfg, name="x", description="...")

Weight matrices are numpy arrays shaped ``(out_features, in_features)`` like PyTorch's
``nn.Linear.weight``; the writer stores them in GGML's order. Output is byte-for-byte
deterministic for the same inputs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .vocab import Vocabulary

__all__ = ["LayerWeights", "Qwen2Config", "Qwen2Weights", "add_vocabulary", "write_qwen2_gguf"]


@dataclass(frozen=True)
class Qwen2Config:
    """Shape and hyper-parameters of a qwen2 model."""

    n_vocab: int
    n_embd: int
    n_layer: int
    n_head: int
    n_head_kv: int
    n_ff: int
    n_ctx: int = 4096
    rope_freq_base: float = 1_000_000.0
    rms_eps: float = 1e-6

    def __post_init__(self) -> None:
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd={self.n_embd} is not a multiple of n_head={self.n_head}")
        if self.n_head % self.n_head_kv:
            raise ValueError(
                f"n_head={self.n_head} is not a multiple of n_head_kv={self.n_head_kv}"
            )
        if (self.n_embd // self.n_head) % 2:
            raise ValueError("head size (n_embd / n_head) must be even for RoPE")

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    @property
    def kv_dim(self) -> int:
        return self.head_dim * self.n_head_kv


@dataclass
class LayerWeights:
    """One transformer block. Shapes: q ``(E, E)``, k/v ``(KV, E)``, o ``(E, E)``,
    gate/up ``(F, E)``, down ``(E, F)``; biases ``(E,)`` / ``(KV,)``; norms ``(E,)``."""

    attn_norm: np.ndarray
    q: np.ndarray
    k: np.ndarray
    v: np.ndarray
    q_bias: np.ndarray
    k_bias: np.ndarray
    v_bias: np.ndarray
    o: np.ndarray
    ffn_norm: np.ndarray
    gate: np.ndarray
    up: np.ndarray
    down: np.ndarray


@dataclass
class Qwen2Weights:
    """All tensors of a qwen2 model. ``output`` ``None`` means tied to ``token_embd``."""

    token_embd: np.ndarray  # (V, E)
    output_norm: np.ndarray  # (E,)
    layers: list[LayerWeights] = field(default_factory=list)
    output: np.ndarray | None = None  # (V, E)


def _check(name: str, arr: np.ndarray, shape: tuple[int, ...]) -> None:
    if arr.shape != shape:
        raise ValueError(f"tensor {name}: shape {arr.shape}, expected {shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"tensor {name} holds NaN or inf")


def add_vocabulary(writer: Any, vocab: Vocabulary) -> None:
    """Write ``vocab`` into a ``gguf.GGUFWriter`` as a byte-level BPE (``gpt2``/``qwen2``)
    tokenizer, EOS doubling as BOS, no BOS added to prompts."""
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("qwen2")
    writer.add_token_list(list(vocab.tokens))
    writer.add_token_types(list(vocab.token_types))
    writer.add_token_merges(list(vocab.merges))
    writer.add_bos_token_id(vocab.eos_id)
    writer.add_eos_token_id(vocab.eos_id)
    writer.add_add_bos_token(False)


def write_qwen2_gguf(
    path: str | Path,
    vocab: Vocabulary,
    weights: Qwen2Weights,
    config: Qwen2Config,
    *,
    name: str,
    description: str,
    dtype: str = "f32",
    embedding_dtype: str | None = None,
    extra_metadata: dict[str, str] | None = None,
) -> Path:
    """Write the model to ``path`` and return it.

    ``dtype`` (``"f32"`` or ``"f16"``) applies to the 2-D matrices, ``embedding_dtype``
    (default: ``dtype``) to ``token_embd`` and ``output``; norms and biases are always f32
    (as llama.cpp's converter does). ``extra_metadata`` adds string keys.
    """
    import gguf

    embedding_dtype = dtype if embedding_dtype is None else embedding_dtype
    for given in (dtype, embedding_dtype):
        if given not in ("f32", "f16"):
            raise ValueError(f"dtype must be 'f32' or 'f16', got {given!r}")
    if vocab.size != config.n_vocab:
        raise ValueError(f"vocabulary has {vocab.size} tokens, config says {config.n_vocab}")
    if len(weights.layers) != config.n_layer:
        raise ValueError(f"{len(weights.layers)} layers given, config says {config.n_layer}")
    E, V, F, KV = config.n_embd, config.n_vocab, config.n_ff, config.kv_dim

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = gguf.GGUFWriter(str(path), "qwen2")
    writer.add_name(name)
    writer.add_description(description)
    writer.add_context_length(config.n_ctx)
    writer.add_embedding_length(E)
    writer.add_block_count(config.n_layer)
    writer.add_feed_forward_length(F)
    writer.add_head_count(config.n_head)
    writer.add_head_count_kv(config.n_head_kv)
    writer.add_layer_norm_rms_eps(config.rms_eps)
    writer.add_rope_freq_base(config.rope_freq_base)
    writer.add_file_type(
        gguf.LlamaFileType.MOSTLY_F16 if dtype == "f16" else gguf.LlamaFileType.ALL_F32
    )
    for key, value in (extra_metadata or {}).items():
        writer.add_string(key, value)

    add_vocabulary(writer, vocab)

    mat = np.float16 if dtype == "f16" else np.float32
    emb = np.float16 if embedding_dtype == "f16" else np.float32

    def add(name_: str, arr: np.ndarray, shape: tuple[int, ...], matrix: bool, t=None) -> None:
        _check(name_, arr, shape)
        kind = t if t is not None else (mat if matrix else np.float32)
        writer.add_tensor(name_, np.ascontiguousarray(arr, dtype=kind))

    add("token_embd.weight", weights.token_embd, (V, E), True, emb)
    add("output_norm.weight", weights.output_norm, (E,), False)
    if weights.output is not None:
        add("output.weight", weights.output, (V, E), True, emb)
    for i, layer in enumerate(weights.layers):
        p = f"blk.{i}."
        add(p + "attn_norm.weight", layer.attn_norm, (E,), False)
        add(p + "attn_q.weight", layer.q, (E, E), True)
        add(p + "attn_k.weight", layer.k, (KV, E), True)
        add(p + "attn_v.weight", layer.v, (KV, E), True)
        add(p + "attn_q.bias", layer.q_bias, (E,), False)
        add(p + "attn_k.bias", layer.k_bias, (KV,), False)
        add(p + "attn_v.bias", layer.v_bias, (KV,), False)
        add(p + "attn_output.weight", layer.o, (E, E), True)
        add(p + "ffn_norm.weight", layer.ffn_norm, (E,), False)
        add(p + "ffn_gate.weight", layer.gate, (F, E), True)
        add(p + "ffn_up.weight", layer.up, (F, E), True)
        add(p + "ffn_down.weight", layer.down, (E, F), True)

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
