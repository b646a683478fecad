"""``rank1-server``: serve a GGUF model with continuous batching and rank1's API.

Usage::

    rank1-server --model rank1-7b-Q4_K_M.gguf --n-gpu-layers -1 --parallel 8
    rank1-server                      # the bundled demo model (tiny, for trying the API)

Then point a client at it::

    Rank1Client(base_url="http://127.0.0.1:8000/v1", mode="rerank")
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

__all__ = ["main", "build_parser", "DEMO_MODEL"]

#: The tiny hand-wired demo model shipped with the package (P(true) follows word overlap).
DEMO_MODEL = Path(__file__).resolve().parent / "demo" / "rank1-demo.gguf"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="rank1-server",
        description="Serve a GGUF model (e.g. a rank1 conversion) with continuous batching: "
        "/v1/completions, /v1/chat/completions, /v1/rerank, /v1/models, /health, /metrics.",
    )
    p.add_argument("--model", "-m", help="path of the GGUF file (default: the bundled demo model)")
    p.add_argument("--model-name", help="name served by /v1/models (default: file name)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument("--parallel", "-np", type=int, default=8,
                   help="sequence slots decoded together (default 8)")
    p.add_argument("--n-ctx", "-c", type=int, default=None,
                   help="context per slot in tokens (default: min(training context, 4096))")
    p.add_argument("--n-gpu-layers", "-ngl", type=int, default=None,
                   help="layers on the GPU; -1 = all (default: all on a GPU build, else 0)")
    p.add_argument("--threads", "-t", type=int, default=None,
                   help="CPU threads for llama.cpp (default: half the cores, at least 1)")
    p.add_argument("--batch-size", "-b", type=int, default=512,
                   help="tokens per decode step, at least --parallel (default 512)")
    p.add_argument("--api-key", default=os.environ.get("RANK1_SERVER_API_KEY"),
                   help="require 'Authorization: Bearer KEY' on /v1 (env RANK1_SERVER_API_KEY)")
    p.add_argument("--max-queue", type=int, default=512,
                   help="requests that may wait for a slot before 429 (default 512)")
    p.add_argument("--max-reasoning-tokens", type=int, default=2048,
                   help="reasoning budget of /v1/rerank when a request sets none (default 2048)")
    p.add_argument("--kv-unified", action="store_true",
                   help="one KV buffer shared by all slots instead of one per slot (prefix "
                   "copies are free, but attention spans every slot's cells)")
    p.add_argument("--flash-attn", action="store_true",
                   help="enable flash attention (faster on GPU; batched and sequential "
                   "results may then differ in the last digits)")
    p.add_argument("--no-repack", dest="repack", action="store_false",
                   help="keep quantized weights as stored instead of letting llama.cpp "
                   "repack them for its AMX/AVX512/ARM CPU kernels. Use it when the server "
                   "dies with SIGILL (illegal instruction) on the first request: CPUs that "
                   "advertise AMX inside sandboxes that trap it (e.g. gVisor containers). "
                   "May be slower where repacking works; f16/f32 models are unaffected")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        import uvicorn

        from .app import ServerConfig, create_app
    except ImportError as exc:
        print(f"rank1-server: {exc}\ninstall the server extra: "
              "pip install \"rank1-integrations[server]\"", file=sys.stderr)
        return 2
    model = args.model or str(DEMO_MODEL)
    if not os.path.isfile(model):
        hint = "" if args.model else " (the bundled demo model is missing from this install)"
        print(f"rank1-server: model file not found: {model}{hint}", file=sys.stderr)
        return 2
    for name in ("parallel", "batch_size", "max_queue", "max_reasoning_tokens"):
        if getattr(args, name) < 1:
            print(f"rank1-server: --{name.replace('_', '-')} must be >= 1", file=sys.stderr)
            return 2
    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    if not args.model:
        logging.getLogger("rank1_server").info("no --model given: serving the demo model %s",
                                               model)
    config = ServerConfig(
        model_path=model, model_name=args.model_name, parallel=args.parallel, n_ctx=args.n_ctx,
        n_gpu_layers=args.n_gpu_layers, threads=args.threads, batch_size=args.batch_size,
        api_key=args.api_key, max_queue=args.max_queue,
        max_reasoning_tokens=args.max_reasoning_tokens, kv_unified=args.kv_unified,
        flash_attn=args.flash_attn, repack=args.repack,
    )
    app = create_app(config)
    server = uvicorn.Server(uvicorn.Config(app, host=args.host, port=args.port,
                                           log_level=args.log_level))
    state = app.state.rank1
    state.on_load_error = lambda: setattr(server, "should_exit", True)
    server.run()
    return 1 if state.load_error else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
