"""``rank1-server``'s settings: what its flags set (see ``rank1-server --help``)."""

from __future__ import annotations

import os
from dataclasses import dataclass

__all__ = ["ServerConfig"]


@dataclass
class ServerConfig:
    """Everything ``rank1-server``'s flags set (see ``rank1-server --help``)."""

    model_path: str
    #: Name reported by /v1/models and in responses (default: the file name sans .gguf).
    model_name: str | None = None
    #: Sequence slots decoded together.
    parallel: int = 8
    #: Context per slot in tokens (default: min(training context, 4096)).
    n_ctx: int | None = None
    #: Layers offloaded to the GPU (None: all on a GPU build, else 0; -1: all).
    n_gpu_layers: int | None = None
    threads: int | None = None
    #: Tokens per llama_decode call (prompt chunks + one per generating slot).
    batch_size: int = 512
    api_key: str | None = None
    #: Requests that may wait for a slot; more get 429. Also the most documents or
    #: prompts one request may carry (413 above).
    max_queue: int = 512
    #: Reasoning budget of /v1/rerank when the request gives none.
    max_reasoning_tokens: int = 2048
    kv_unified: bool = False
    flash_attn: bool = False
    #: Let llama.cpp repack quantized weights for its CPU kernels (``--no-repack`` turns
    #: it off: needed where the CPU advertises AMX but the sandbox traps it, see
    #: :meth:`~rank1_server.backend.LlamaModel.load`).
    repack: bool = True
    max_body_bytes: int = 32 * 1024 * 1024

    def served_name(self) -> str:
        if self.model_name:
            return self.model_name
        base = os.path.basename(self.model_path)
        return base[: -len(".gguf")] if base.endswith(".gguf") else base
