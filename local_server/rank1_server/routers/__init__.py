"""The HTTP routes, one module per endpoint group; each reads the server state with
:func:`~rank1_server.deps.get_state` and stays thin (checks in the schemas, shapes in
:mod:`~rank1_server.generation` and :mod:`rank1_integrations.wire`)."""

from __future__ import annotations

from fastapi import APIRouter

from . import chat, completions, models, rerank, rerank_v2, rerank_vllm, tokenize

__all__ = ["ROUTERS"]

#: In the order they are mounted.
ROUTERS: tuple[APIRouter, ...] = (
    models.router, tokenize.router, completions.router, chat.router, rerank.router,
    rerank_v2.router, rerank_vllm.router,
)
