"""A rank1-7b-shaped qwen2 GGUF in Q4_0 with random weights: for speed only, never quality.

The weights are written straight as Q4_0 blocks (an f16 scale and 32 four-bit values per
block, value = (nibble - 8) * scale) from random bytes, so the 7.6-billion-weight shape
takes seconds and no float copy of the model is ever made. The shape defaults to
Qwen2.5-7B's (rank1-7b's base): 28 layers, 3584 wide, 18944 FFN, 28 query / 4 KV heads,
152,064 logits, with rank1's ``</think>`` (one CONTROL token), `` true`` and `` false``.

Like ``rank1_server.models.random_model``, a constant "bias" channel (embedding dimension
0, which no layer writes) gives every special, padding and invalid-UTF-8 token a strongly
negative logit: greedy generation never ends early and never closes ``</think>``, so every
rank1 judgment spends its whole reasoning budget and then takes the forced answer (two
requests per judgment: the worst case, and the same work on every server).

Usage::

    python benchmarks/gpu/q4_model.py out.gguf                  # rank1-7b shape (~4.3 GB)
    python benchmarks/gpu/q4_model.py tiny.gguf --layers 2 --embd 256 --ff 512 \\
        --heads 4 --kv-heads 2 --vocab 8192
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["RANK1_7B", "Shape", "write_q4_0_model"]

QK = 32  # weights per Q4_0 block
BLOCK_BYTES = 18  # f16 scale + 16 bytes of nibbles
#: Standard deviation of (nibble - 8) for uniform nibbles 0..15.
NIBBLE_STD = float(np.sqrt((16**2 - 1) / 12))
#: Logit penalty (times the normalised bias channel) for tokens that must never be chosen.
SUPPRESS = 60.0


@dataclass(frozen=True)
class Shape:
    """The dimensions of a qwen2 model."""

    n_layer: int
    n_embd: int
    n_ff: int
    n_head: int
    n_head_kv: int
    n_vocab: int
    n_ctx: int = 32768

    def __post_init__(self) -> None:
        for name in ("n_embd", "n_ff"):
            if getattr(self, name) % QK:
                raise ValueError(f"{name}={getattr(self, name)} is not a multiple of {QK} (Q4_0)")
        if self.n_embd % self.n_head or self.n_head % self.n_head_kv:
            raise ValueError(
                f"n_embd={self.n_embd}, n_head={self.n_head}, n_head_kv={self.n_head_kv}: "
                "heads must divide the width and KV heads the heads"
            )
        if (self.n_embd // self.n_head) % 2:
            raise ValueError("head size (n_embd / n_head) must be even for RoPE")

    @property
    def kv_dim(self) -> int:
        return self.n_embd // self.n_head * self.n_head_kv

    @property
    def n_params(self) -> int:
        E, F, KV = self.n_embd, self.n_ff, self.kv_dim
        per_layer = 2 * E * E + 2 * KV * E + 3 * E * F
        return self.n_layer * per_layer + 2 * self.n_vocab * E


#: Qwen2.5-7B / rank1-7b.
RANK1_7B = Shape(n_layer=28, n_embd=3584, n_ff=18944, n_head=28, n_head_kv=4, n_vocab=152_064)


def _scale_bytes(d: float) -> np.ndarray:
    return np.frombuffer(np.float16(d).tobytes(), dtype=np.uint8)


def _q4_0(rng: np.random.Generator, rows: int, cols: int, std: float) -> np.ndarray:
    """Random Q4_0 blocks for a ``(rows, cols)`` matrix whose weights have about ``std``:
    a uint8 array ``(rows, cols // 32, 18)``."""
    out = rng.integers(0, 256, size=(rows, cols // QK, BLOCK_BYTES), dtype=np.uint8)
    out[:, :, :2] = _scale_bytes(std / NIBBLE_STD)
    return out


def write_q4_0_model(path: str | Path, shape: Shape = RANK1_7B, *, seed: int = 0) -> Path:
    """Write the model and return its path (the same arguments give the same bytes)."""
    import gguf
    from rank1_server.models.gguf_writer import add_vocabulary
    from rank1_server.models.random_model import banned_tokens
    from rank1_server.models.vocab import build_vocabulary, pad_vocabulary

    vocab = build_vocabulary(think_end_special=True)
    if shape.n_vocab < vocab.size:
        raise ValueError(f"n_vocab={shape.n_vocab} is below the base vocabulary ({vocab.size})")
    vocab = pad_vocabulary(vocab, shape.n_vocab)
    rng = np.random.default_rng(seed)
    E, F, KV, V = shape.n_embd, shape.n_ff, shape.kv_dim, shape.n_vocab

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    w = gguf.GGUFWriter(str(path), "qwen2")
    w.add_name(f"rank1-integrations Q4_0 speed model ({shape.n_layer}x{E}, seed {seed})")
    w.add_description("Random weights for speed measurements only: writes meaningless text.")
    w.add_context_length(shape.n_ctx)
    w.add_embedding_length(E)
    w.add_block_count(shape.n_layer)
    w.add_feed_forward_length(F)
    w.add_head_count(shape.n_head)
    w.add_head_count_kv(shape.n_head_kv)
    w.add_layer_norm_rms_eps(1e-6)
    w.add_rope_freq_base(1_000_000.0)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_Q4_0)
    add_vocabulary(w, vocab)

    q4 = gguf.GGMLQuantizationType.Q4_0

    def add_q(name: str, blocks: np.ndarray) -> None:
        rows, nb, _ = blocks.shape
        w.add_tensor(name, blocks.reshape(rows, nb * BLOCK_BYTES), raw_dtype=q4)

    def add_f32(name: str, arr: np.ndarray) -> None:
        w.add_tensor(name, np.ascontiguousarray(arr, dtype=np.float32))

    # Embeddings: weight std 1; dimension 0 is the constant bias channel (7 * scale).
    emb = _q4_0(rng, V, E, 1.0)
    emb[:, 0, 2] = (emb[:, 0, 2] & 0xF0) | 0x0F
    add_q("token_embd.weight", emb)
    norm = np.ones(E, np.float32)
    norm[0] = 4.0  # amplifies the bias channel only: allowed rows read 0 there
    add_f32("output_norm.weight", norm)
    out = _q4_0(rng, V, E, 3 / np.sqrt(E))
    out[:, 0, 2] = (out[:, 0, 2] & 0xF0) | 0x08  # weight 0 of the bias channel
    banned = banned_tokens(vocab)
    out[banned] = 0
    out[banned, 0, :2] = _scale_bytes(SUPPRESS / 8)
    out[banned, 0, 2:] = 0x88
    out[banned, 0, 2] = 0x80  # nibble 0: -8 * scale = -SUPPRESS on the bias channel
    add_q("output.weight", out)

    for i in range(shape.n_layer):
        p = f"blk.{i}."
        o = _q4_0(rng, E, E, 1 / np.sqrt(E))
        down = _q4_0(rng, E, F, 1 / np.sqrt(F))
        o[0] = 0  # scale 0: no layer writes the bias channel
        down[0] = 0
        add_f32(p + "attn_norm.weight", np.ones(E))
        add_q(p + "attn_q.weight", _q4_0(rng, E, E, 1 / np.sqrt(E)))
        add_q(p + "attn_k.weight", _q4_0(rng, KV, E, 1 / np.sqrt(E)))
        add_q(p + "attn_v.weight", _q4_0(rng, KV, E, 1 / np.sqrt(E)))
        add_f32(p + "attn_q.bias", np.zeros(E))
        add_f32(p + "attn_k.bias", np.zeros(KV))
        add_f32(p + "attn_v.bias", np.zeros(KV))
        add_q(p + "attn_output.weight", o)
        add_f32(p + "ffn_norm.weight", np.ones(E))
        add_q(p + "ffn_gate.weight", _q4_0(rng, F, E, 1 / np.sqrt(E)))
        add_q(p + "ffn_up.weight", _q4_0(rng, F, E, 1 / np.sqrt(E)))
        add_q(p + "ffn_down.weight", down)

    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def shape_from_args(args: argparse.Namespace, base: Shape) -> Shape:
    """``base`` with the ``--layers/--embd/--ff/--heads/--kv-heads/--vocab`` overrides."""
    return Shape(
        n_layer=args.layers or base.n_layer,
        n_embd=args.embd or base.n_embd,
        n_ff=args.ff or base.n_ff,
        n_head=args.heads or base.n_head,
        n_head_kv=args.kv_heads or base.n_head_kv,
        n_vocab=args.vocab or base.n_vocab,
        n_ctx=base.n_ctx,
    )


def add_shape_args(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--layers", type=int, help="transformer blocks")
    ap.add_argument("--embd", type=int, help="model width")
    ap.add_argument("--ff", type=int, help="FFN width")
    ap.add_argument("--heads", type=int, help="query heads")
    ap.add_argument("--kv-heads", type=int, help="KV heads")
    ap.add_argument("--vocab", type=int, help="logits width (vocabulary size)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--seed", type=int, default=0)
    add_shape_args(ap)
    args = ap.parse_args()
    shape = shape_from_args(args, RANK1_7B)
    t = time.perf_counter()
    write_q4_0_model(args.out, shape, seed=args.seed)
    size = args.out.stat().st_size
    print(f"wrote {args.out} ({shape.n_params / 1e9:.2f} B weights, {size / 2**30:.2f} GiB "
          f"Q4_0) in {time.perf_counter() - t:.1f} s")


if __name__ == "__main__":
    main()
