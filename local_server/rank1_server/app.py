"""The HTTP API's assembly: FastAPI app, lifespan (the model loads in the background),
the body guard, the error handlers and the routers over one engine.

Endpoints (OpenAI error shape ``{"error": {"message", "type", "param", "code"}}`` on
failure, Cohere's on the Cohere paths, :mod:`~rank1_server.errors`), one router module each in
:mod:`rank1_server.routers`:

* ``POST /v1/completions`` (:mod:`~rank1_server.routers.completions`) - answered like
  vLLM: greedy only, ``logprobs`` up to 20 (by partial sort, only when asked), stop
  strings whose tokens stay in the logprobs, ``skip_special_tokens``, ``finish_reason``
  and ``stop_reason``; ``prompt`` may be a list.
* ``POST /v1/chat/completions`` (:mod:`~rank1_server.routers.chat`) - basic: text
  messages, greedy, optional logprobs.
* ``POST /v1/rerank`` (:mod:`~rank1_server.routers.rerank`) - Jina's and Cohere v1's
  shape, ``POST /v2/rerank`` (:mod:`~rank1_server.routers.rerank_v2`) - Cohere v2's,
  ``POST /rerank`` (:mod:`~rank1_server.routers.rerank_vllm`) - vLLM's; rank1's verdict per
  document as extra keys (:mod:`rank1_integrations.wire`), one judging path
  (:mod:`~rank1_server.reranking`), errors in each API's shape
  (:func:`~rank1_server.errors.error_shape`).
* ``POST /tokenize`` (:mod:`~rank1_server.routers.tokenize`) - vLLM's shape:
  ``{prompt, add_special_tokens}`` -> ``{count, max_model_len, tokens}`` (special tokens
  written as text are parsed, as in completions).
* ``GET /`` - the playground page (:mod:`~rank1_server.playground`; ``--no-ui``: none).
* ``GET /v1/models`` (``max_model_len``: one slot's context, as vLLM publishes it),
  ``GET /health`` (503 while loading), ``GET /metrics`` (Prometheus)
  (:mod:`~rank1_server.routers.models`).

Requests are validated by :mod:`~rank1_server.schemas`; bodies over the limit are refused
by :mod:`~rank1_server.body_guard`; the loaded model lives in
:class:`~rank1_server.state.ServerState` (``app.state.rank1``).

Usage::

    app = create_app(ServerConfig(model_path="rank1.gguf"))
    uvicorn.run(app, host="127.0.0.1", port=8000)
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from .body_guard import BodyGuard
from .config import ServerConfig
from .errors import add_exception_handlers
from .playground import mount_playground
from .routers import ROUTERS
from .state import ServerState

__all__ = ["ServerConfig", "ServerState", "create_app"]

log = logging.getLogger("rank1_server")


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Load the model in a thread once the server runs; stop the engine on shutdown."""
    state: ServerState = app.state.rank1

    async def load() -> None:
        try:
            await asyncio.to_thread(state.load)
        except Exception as exc:  # noqa: BLE001 - reported by /health and the CLI
            state.load_error = f"{type(exc).__name__}: {exc}"
            log.error("could not load %s: %s", state.config.model_path, state.load_error)
            if state.on_load_error is not None:
                state.on_load_error()

    loader = asyncio.create_task(load())
    try:
        yield
    finally:
        await loader
        if state.gateway is not None:
            await state.gateway.aclose()
            state.gateway = None
        if state.engine is not None:
            await asyncio.to_thread(state.engine.stop)
            state.engine = None


def create_app(config: ServerConfig) -> FastAPI:
    """Build the app; the model loads in the background once the server starts."""
    state = ServerState(config)
    app = FastAPI(title="rank1-server", lifespan=_lifespan)
    app.state.rank1 = state
    app.add_middleware(BodyGuard, state=state)
    add_exception_handlers(app)
    for router in ROUTERS:
        app.include_router(router)
    if config.ui:
        mount_playground(app)
    return app
