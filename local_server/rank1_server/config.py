"""``rank1-server``'s settings: what its flags set (see ``rank1-server --help``).

Written once, here: ``rank1-server``'s flags are generated from these fields (type,
check, default and help; :func:`rank1_integrations.cli.flags.add_flags`), so a new field
is a new flag.
"""

from __future__ import annotations

import os
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["ServerConfig"]


class ServerConfig(BaseModel):
    """Everything ``rank1-server``'s flags set (see ``rank1-server --help``)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    model_path: str = Field(
        description="Path of the GGUF file (default: the bundled demo model).",
        json_schema_extra={"flags": ["--model", "-m"], "metavar": "PATH"},
    )
    model_name: str | None = Field(
        default=None, description="Name served by /v1/models (default: the file name)."
    )
    host: str = Field(default="127.0.0.1", description="Address to bind.")
    port: int = Field(default=8000, ge=0, le=65535, description="Port.")
    parallel: int = Field(
        default=8, ge=1, description="Sequence slots decoded together (with --upstream: "
        "documents in flight toward the upstream).",
        json_schema_extra={"flags": ["--parallel", "-np"]},
    )
    n_ctx: int | None = Field(
        default=None, ge=1,
        description="Context per slot in tokens (default: min(training context, 4096)).",
        json_schema_extra={"flags": ["--n-ctx", "-c"]},
    )
    n_gpu_layers: int | None = Field(
        default=None,
        description="Layers on the GPU; -1 = all (default: all on a GPU build, else 0).",
        json_schema_extra={"flags": ["--n-gpu-layers", "-ngl"]},
    )
    threads: int | None = Field(
        default=None, ge=1,
        description="CPU threads for llama.cpp (default: half the cores, at least 1).",
        json_schema_extra={"flags": ["--threads", "-t"]},
    )
    batch_size: int = Field(
        default=512, ge=1,
        description="Tokens per llama_decode call (prompt chunks + one per generating "
        "slot), at least --parallel.",
        json_schema_extra={"flags": ["--batch-size", "-b"]},
    )
    api_key: str | None = Field(
        default=None, description="Require 'Authorization: Bearer KEY' on /v1.",
        json_schema_extra={"env": "RANK1_SERVER_API_KEY"},
    )
    max_queue: int = Field(
        default=512, ge=1,
        description="Requests that may wait for a slot before 429; also the most documents "
        "or prompts one request may carry (413 above).",
    )
    max_reasoning_tokens: int = Field(
        default=2048, ge=1,
        description="Reasoning budget of /v1/rerank when a request sets none.",
    )
    kv_unified: bool = Field(
        default=False,
        description="One KV buffer shared by all slots instead of one per slot (prefix "
        "copies are free, but attention spans every slot's cells).",
    )
    flash_attn: bool = Field(
        default=False,
        description="Enable flash attention (faster on GPU; batched and sequential results "
        "may then differ in the last digits).",
    )
    repack: bool = Field(
        default=True,
        description="--no-repack keeps quantized weights as stored instead of letting "
        "llama.cpp repack them for its AMX/AVX512/ARM CPU kernels. Use it when the server "
        "dies with SIGILL (illegal instruction) on the first request: CPUs that advertise "
        "AMX inside sandboxes that trap it (e.g. gVisor containers). May be slower where "
        "repacking works; f16/f32 models are unaffected.",
    )
    ui: bool = Field(
        default=True,
        description="Serve the playground web page at / (query, passages, streamed "
        "reasoning and verdicts); --no-ui turns it off.",
    )
    deterministic: bool = Field(
        default=False,
        description="Reproducible verdicts: each slot decoded in a llama_decode call of its "
        "own, prompts in fixed chunks, no prompt-cache reuse across requests, so a "
        "judgment's scores are the same bit for bit alone, under load and with a warm "
        "cache. Costs the batching (see the README's reproducibility section). Needs one "
        "KV buffer per slot (not --kv-unified).",
    )
    max_body_bytes: int = Field(
        default=32 * 1024 * 1024, ge=1, description="Largest request body accepted (413 above)."
    )
    upstream: str | None = Field(
        default=None,
        description="Gateway mode: load no model; serve the rerank routes (and /v1/models, "
        "/health, /metrics) by judging through Rank1Client against this OpenAI-compatible "
        "rank1 deployment (a vLLM router, llama-server, a hosted endpoint), e.g. "
        "http://vllm:8000/v1.",
        json_schema_extra={"metavar": "URL"},
    )
    upstream_model: str | None = Field(
        default=None,
        description="Model name at the upstream (default: the one it serves).",
        json_schema_extra={"metavar": "NAME"},
    )
    upstream_mode: Literal["completions", "chat"] = Field(
        default="completions",
        description="How the gateway asks the upstream: 'completions' (rank1's faithful "
        "path) or 'chat'.",
    )
    upstream_api_key: str | None = Field(
        default=None, description="API key sent to the upstream.",
        json_schema_extra={"env": "RANK1_UPSTREAM_API_KEY", "metavar": "KEY"},
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        default="info", description="Log level of the server and uvicorn."
    )

    @model_validator(mode="after")
    def _deterministic_needs_own_buffers(self) -> ServerConfig:
        if self.deterministic and self.kv_unified:
            raise ValueError(
                "--deterministic needs one KV buffer per slot: drop --kv-unified (in one "
                "shared buffer a sequence's cells move with the load, and so do its sums)"
            )
        return self

    def served_name(self) -> str:
        if self.model_name:
            return self.model_name
        if self.upstream:
            return self.upstream_model or "rank1"
        base = os.path.basename(self.model_path)
        return base[: -len(".gguf")] if base.endswith(".gguf") else base
