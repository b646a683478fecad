"""``GET /health`` (503 while loading), ``GET /metrics`` (Prometheus) and ``GET /v1/models``
(``max_model_len``: one slot's context, as vLLM publishes it)."""

from __future__ import annotations

from typing import Any

import httpx
from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse, Response

from ..deps import State, require_key

__all__ = ["router"]

router = APIRouter()


@router.get("/health")
async def health(state: State) -> JSONResponse:
    if state.gateway is not None:
        return await _upstream_health(state)
    if state.engine is None:
        status = "error" if state.load_error else "loading"
        body: dict[str, Any] = {"status": status}
        if state.load_error:
            body["message"] = state.load_error
        return JSONResponse(body, status_code=503)
    engine = state.engine
    if engine.crashed:
        return JSONResponse({"status": "error", "message": f"engine crashed: {engine.crashed}"},
                            status_code=503)
    return JSONResponse({
        "status": "ok", "model": state.model_name, "slots": engine.n_slots,
        "busy_slots": engine.busy_slots, "queue_depth": engine.queue_depth,
        "n_ctx_per_slot": engine.n_ctx_per_slot, "rerank": state.judge is not None,
    })


@router.get("/metrics")
async def metrics(state: State) -> Response:
    body, content_type = state.metrics.render()
    return Response(body, media_type=content_type)


@router.get("/v1/models", dependencies=[Depends(require_key)])
async def models(state: State) -> dict[str, Any]:
    if state.gateway is not None:
        return {"object": "list", "data": [{
            "id": state.model_name, "object": "model", "created": state.started,
            "owned_by": "rank1-server", "upstream": state.config.upstream,
        }]}
    engine = state.ready()
    return {"object": "list", "data": [{
        "id": state.model_name, "object": "model", "created": state.started,
        "owned_by": "rank1-server", "max_model_len": engine.n_ctx_per_slot,
    }]}


async def _upstream_health(state: State) -> JSONResponse:
    """Gateway mode: ok while the upstream answers ``GET /models``; 503 naming why not."""
    upstream = str(state.config.upstream).rstrip("/")
    headers = {}
    if state.config.upstream_api_key:
        headers["Authorization"] = f"Bearer {state.config.upstream_api_key}"
    try:
        async with httpx.AsyncClient(timeout=5) as http:
            r = await http.get(f"{upstream}/models", headers=headers)
        problem = None if r.status_code == 200 else f"GET /models answered {r.status_code}"
        if problem is None and not _is_model_list(r):
            problem = f"GET /models answered 200 with no model list: {r.text[:200]!r}"
    except httpx.HTTPError as exc:
        problem = f"{type(exc).__name__}: {exc}"
    if problem is not None:
        return JSONResponse({"status": "error", "upstream": upstream,
                             "message": f"upstream unreachable: {problem}"}, status_code=503)
    return JSONResponse({"status": "ok", "model": state.model_name, "upstream": upstream,
                         "rerank": True})


def _is_model_list(response: httpx.Response) -> bool:
    """The answer of an OpenAI-compatible ``GET /models``: ``{"data": [...]}``."""
    try:
        body = response.json()
    except ValueError:
        return False
    return isinstance(body, dict) and isinstance(body.get("data"), list)
