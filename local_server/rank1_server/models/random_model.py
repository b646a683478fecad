"""Random-weight qwen2 GGUF models for engine tests and benchmarks.

The text they write is meaningless but deterministic under greedy decoding, always valid
UTF-8, and never a special token: a constant "bias" channel in the residual stream (one
embedding dimension that no layer writes) gives every token that would emit invalid
UTF-8 on its own (lone bytes >= 0x80), every special token (``<|endoftext|>``,
``<think>``, ``</think>`` ...) and every padding token a strongly negative logit. So
generation always runs to ``max_tokens`` or a stop string.

Usage::

    from rank1_server.models import write_random_model

    tiny = write_random_model(tmp_path / "tiny.gguf")                  # 2 layers, 64 wide
    mid = write_random_model(tmp_path / "mid.gguf", n_layer=8, n_embd=512,
                             n_vocab=151_936, dtype="f16")             # benchmark size

Not a relevance model: a development stand-in for engine and pipeline tests.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .gguf_writer import LayerWeights, Qwen2Config, Qwen2Weights, write_qwen2_gguf
from .vocab import (
    TOKEN_CONTROL,
    TOKEN_UNUSED,
    Vocabulary,
    build_vocabulary,
    pad_vocabulary,
    token_bytes,
)

__all__ = ["banned_tokens", "write_random_model"]

_SUPPRESS = 60.0  # logit penalty (times the normalised bias channel) for banned tokens


def write_random_model(
    path: str | Path,
    *,
    n_layer: int = 2,
    n_embd: int = 64,
    n_ff: int | None = None,
    n_head: int | None = None,
    n_head_kv: int | None = None,
    n_ctx: int = 4096,
    n_vocab: int | None = None,
    seed: int = 0,
    think_end_special: bool = True,
    dtype: str = "f32",
) -> Path:
    """Write a random qwen2 GGUF model and return its path.

    * ``n_ff`` defaults to ``4 * n_embd``; ``n_head`` to ``n_embd // 32`` (at least 1),
      ``n_head_kv`` to ``n_head``.
    * ``n_vocab`` pads the (~3,100-token) vocabulary with unused tokens to that size,
      e.g. ``151_936`` for Qwen2.5's logits width.
    * ``think_end_special=False`` leaves ``</think>`` as ordinary text (``"</"``,
      ``"think"``, ``">"``) like plain Qwen2.5; ``True`` makes it one CONTROL token like
      rank1's converted models.
    * The same arguments give the same bytes.
    """
    n_ff = 4 * n_embd if n_ff is None else n_ff
    n_head = max(1, n_embd // 32) if n_head is None else n_head
    n_head_kv = n_head if n_head_kv is None else n_head_kv
    vocab = build_vocabulary(think_end_special=think_end_special)
    if n_vocab is not None:
        vocab = pad_vocabulary(vocab, n_vocab)
    cfg = Qwen2Config(
        n_vocab=vocab.size,
        n_embd=n_embd,
        n_layer=n_layer,
        n_head=n_head,
        n_head_kv=n_head_kv,
        n_ff=n_ff,
        n_ctx=n_ctx,
    )
    weights = _random_weights(cfg, np.random.default_rng(seed), banned_tokens(vocab))
    return write_qwen2_gguf(
        path,
        vocab,
        weights,
        cfg,
        name=f"rank1-integrations random test model ({n_layer}x{n_embd}, seed {seed})",
        description=(
            "Random weights: a development stand-in for engine tests, not a relevance "
            "model. Writes meaningless text."
        ),
        dtype=dtype,
    )


def banned_tokens(vocab: Vocabulary) -> np.ndarray:
    """Tokens a random model must never pick greedily: special, padding, and those whose
    bytes alone are not valid UTF-8 (a boolean mask over the vocabulary)."""
    banned = np.zeros(vocab.size, dtype=bool)
    for i, (tok, kind) in enumerate(zip(vocab.tokens, vocab.token_types, strict=True)):
        if kind in (TOKEN_CONTROL, TOKEN_UNUSED):
            banned[i] = True
            continue
        try:
            token_bytes(tok, kind).decode("utf-8")
        except UnicodeDecodeError:
            banned[i] = True
    return banned


def _random_weights(cfg: Qwen2Config, rng: np.random.Generator, banned: np.ndarray) -> Qwen2Weights:
    E, F, KV, V = cfg.n_embd, cfg.n_ff, cfg.kv_dim, cfg.n_vocab

    def mat(rows: int, cols: int, scale: float) -> np.ndarray:
        return (rng.standard_normal((rows, cols), dtype=np.float32) * scale).astype(np.float32)

    layers = []
    for _ in range(cfg.n_layer):
        o = mat(E, E, 1 / np.sqrt(E))
        down = mat(E, F, 1 / np.sqrt(F))
        o[0] = 0.0  # no layer writes the bias channel
        down[0] = 0.0
        layers.append(
            LayerWeights(
                attn_norm=np.ones(E, np.float32),
                q=mat(E, E, 1 / np.sqrt(E)),
                k=mat(KV, E, 1 / np.sqrt(E)),
                v=mat(KV, E, 1 / np.sqrt(E)),
                q_bias=np.zeros(E, np.float32),
                k_bias=np.zeros(KV, np.float32),
                v_bias=np.zeros(KV, np.float32),
                o=o,
                ffn_norm=np.ones(E, np.float32),
                gate=mat(F, E, 1 / np.sqrt(E)),
                up=mat(F, E, 1 / np.sqrt(E)),
                down=down,
            )
        )
    token_embd = mat(V, E, 1.0)
    token_embd[:, 0] = 2.0  # the bias channel: constant and positive for every token
    output = mat(V, E, 3 / np.sqrt(E))
    output[:, 0] = 0.0
    output[banned] = 0.0
    output[banned, 0] = -_SUPPRESS
    return Qwen2Weights(
        token_embd=token_embd,
        output_norm=np.ones(E, np.float32),
        layers=layers,
        output=output,
    )
