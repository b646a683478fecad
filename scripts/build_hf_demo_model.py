"""Build the demo model as a Hugging Face directory (for vLLM), with no download.

The hand-wired demo model (``rank1_server.models.demo_model``: known answers, word
overlap) is written as the GGUF file the llama.cpp servers load; this writes the *same
weights* as a ``Qwen2ForCausalLM`` directory that vLLM and transformers load:

* ``model.safetensors``: the demo's numpy arrays, float32; the embeddings and the output
  head rounded through float16 first, as the GGUF stores them, so both files hold the
  same numbers. llama.cpp's qwen2 and transformers' Qwen2 use the same (NeoX) RoPE layout
  and the same ``(out, in)`` matrix order, so no tensor is permuted.
* ``tokenizer.json``: the demo vocabulary's own (byte-level BPE; ``<think>``/``</think>``,
  ``<|endoftext|>``, ``<|im_start|>``/``<|im_end|>`` added special tokens; `` true`` and
  `` false`` single tokens); ``tokenizer_config.json`` with a chat template that renders
  one user message as the rank1 prompt (``content + "\\n<think>"``) and an assistant
  message as its plain text, so a chat request reaches the model as the same tokens as
  the completions prompt, and ``continue_final_message`` continues a closed chain.
* ``config.json``: width 384, 3 layers, 2 heads, RoPE base 1e30 (the demo's), float32.

Greedy chains close with ``</think> true`` or ``</think> false`` (both occur: the verdict
follows word overlap, ``expected_completion``).

    .venv/bin/python scripts/build_hf_demo_model.py      # prints the directory
    RANK1_CACHE_DIR=/path ...   # the cache root (default ~/.cache/rank1-integrations)
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
#: The chat template: a user message is the rank1 prompt without its ``<think>``.
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'user' -%}{{ message['content'] + '\\n<think>' }}"
    "{%- else -%}{{ message['content'] }}{%- endif -%}"
    "{%- endfor -%}"
)


def _source_hash() -> str:
    """The cache key: this script and the demo model's sources."""
    h = hashlib.sha256()
    for path in (Path(__file__), ROOT / "local_server/rank1_server/models/demo_model.py",
                 ROOT / "local_server/rank1_server/models/vocab.py"):
        h.update(path.read_bytes())
    return h.hexdigest()[:12]


def save_safetensors(path: Path, tensors: dict[str, np.ndarray]) -> None:
    """The safetensors format by hand (8-byte header size, JSON header, raw data)."""
    header: dict[str, object] = {"__metadata__": {"format": "pt"}}
    offset = 0
    blobs = []
    for name, arr in tensors.items():
        data = np.ascontiguousarray(arr, dtype=np.float32).tobytes()
        header[name] = {"dtype": "F32", "shape": list(arr.shape),
                        "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
        blobs.append(data)
    head = json.dumps(header, separators=(",", ":")).encode()
    head += b" " * (-len(head) % 8)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(head)))
        f.write(head)
        for blob in blobs:
            f.write(blob)
    os.replace(tmp, path)


def build(out: Path) -> Path:
    from rank1_server.models.demo_model import _demo_weights, _Layout, demo_vocabulary

    vocab = demo_vocabulary(True)
    weights, cfg = _demo_weights(vocab, _Layout())

    def f16(a: np.ndarray) -> np.ndarray:  # as the GGUF stores the embeddings
        return a.astype(np.float16).astype(np.float32)

    tensors: dict[str, np.ndarray] = {
        "model.embed_tokens.weight": f16(weights.token_embd),
        "model.norm.weight": weights.output_norm,
        "lm_head.weight": f16(weights.output if weights.output is not None
                              else weights.token_embd),
    }
    for i, layer in enumerate(weights.layers):
        p = f"model.layers.{i}."
        tensors.update({
            p + "input_layernorm.weight": layer.attn_norm,
            p + "self_attn.q_proj.weight": layer.q,
            p + "self_attn.k_proj.weight": layer.k,
            p + "self_attn.v_proj.weight": layer.v,
            p + "self_attn.q_proj.bias": layer.q_bias,
            p + "self_attn.k_proj.bias": layer.k_bias,
            p + "self_attn.v_proj.bias": layer.v_bias,
            p + "self_attn.o_proj.weight": layer.o,
            p + "post_attention_layernorm.weight": layer.ffn_norm,
            p + "mlp.gate_proj.weight": layer.gate,
            p + "mlp.up_proj.weight": layer.up,
            p + "mlp.down_proj.weight": layer.down,
        })
    out.mkdir(parents=True, exist_ok=True)
    config = {
        "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2",
        "vocab_size": cfg.n_vocab, "hidden_size": cfg.n_embd,
        "intermediate_size": cfg.n_ff, "num_hidden_layers": cfg.n_layer,
        "num_attention_heads": cfg.n_head, "num_key_value_heads": cfg.n_head_kv,
        "head_dim": cfg.head_dim, "hidden_act": "silu",
        "max_position_embeddings": cfg.n_ctx, "rope_theta": cfg.rope_freq_base,
        "rms_norm_eps": cfg.rms_eps, "tie_word_embeddings": False,
        "use_sliding_window": False, "attention_dropout": 0.0,
        "bos_token_id": vocab.eos_id, "eos_token_id": vocab.eos_id,
        "torch_dtype": "float32", "use_cache": True,
    }
    (out / "config.json").write_text(json.dumps(config, indent=1))
    (out / "generation_config.json").write_text(json.dumps(
        {"bos_token_id": vocab.eos_id, "eos_token_id": vocab.eos_id}))
    (out / "tokenizer.json").write_text(vocab.tokenizer_json)
    (out / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": cfg.n_ctx,
        "eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>", "bos_token": None,
        "add_bos_token": False, "chat_template": CHAT_TEMPLATE,
    }, indent=1))
    save_safetensors(out / "model.safetensors", tensors)
    return out


def main() -> None:
    root = Path(os.environ.get("RANK1_CACHE_DIR", Path.home() / ".cache/rank1-integrations"))
    out = root / f"hf-demo-{_source_hash()}"
    if not (out / "model.safetensors").is_file():
        build(out)
    print(out)


if __name__ == "__main__":
    sys.exit(main())
