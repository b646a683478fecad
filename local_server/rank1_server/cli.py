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
    from rank1_integrations.cli.flags import add_flags

    from .config import ServerConfig

    add_flags(p, ServerConfig)  # every setting's flag, from its field
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
    model = args.model_path or str(DEMO_MODEL)
    if not os.path.isfile(model):
        hint = "" if args.model_path else " (the bundled demo model is missing from this install)"
        print(f"rank1-server: model file not found: {model}{hint}", file=sys.stderr)
        return 2
    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    if not args.model_path and not args.upstream:
        logging.getLogger("rank1_server").info("no --model given: serving the demo model %s",
                                               model)
    config = ServerConfig(**{**vars(args), "model_path": model})
    app = create_app(config)
    server = uvicorn.Server(uvicorn.Config(app, host=config.host, port=config.port,
                                           log_level=config.log_level))
    state = app.state.rank1
    state.on_load_error = lambda: setattr(server, "should_exit", True)
    server.run()
    return 1 if state.load_error else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
