"""Errors answered in each API's shape: OpenAI's ``{"error": {"message", "type", "param",
"code"}}`` by default, Cohere's ``{"message"}`` on the paths a route module claims with
:func:`error_shape` (``/v2/rerank``; ``/v1/rerank`` writes both, for Cohere v1 clients and
the OpenAI-shaped readers of that path).

:class:`ApiError` is what routes raise; :func:`add_exception_handlers` installs the
handlers that turn it, request validation errors (422, or the path's own status such as
Cohere's 400; 400 for the options the schemas refuse, see
:data:`~rank1_server.schemas.REFUSED`), HTTP errors (404...), a client that left (499) and
anything unexpected (500) into the shape of the request's path.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from .engine import QueueFull
from .schemas import REFUSED

__all__ = [
    "COHERE",
    "COHERE_AND_OPENAI",
    "OPENAI",
    "ApiError",
    "ClientGone",
    "ErrorShape",
    "add_exception_handlers",
    "error_response",
    "error_shape",
    "queue_full",
]

log = logging.getLogger("rank1_server")


class ApiError(Exception):
    """An error answered in OpenAI's shape."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.type = status, message, type
        self.param, self.code, self.headers = param, code, headers

    def response(self, path: str = "") -> JSONResponse:
        return error_response(
            self.status, self.message, self.type, self.param, self.code, self.headers,
            path=path,
        )


class ClientGone(Exception):
    """The client disconnected before its answer was ready."""


def _openai_body(message: str, type_: str, param: str | None, code: str | None
                 ) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def _cohere_body(message: str, type_: str, param: str | None, code: str | None
                 ) -> dict[str, Any]:
    body: dict[str, Any] = {"message": message}
    body.update({k: v for k, v in (("param", param), ("code", code)) if v is not None})
    return body


def _both_bodies(message: str, type_: str, param: str | None, code: str | None
                 ) -> dict[str, Any]:
    return {**_cohere_body(message, type_, param, code),
            **_openai_body(message, type_, param, code)}


@dataclass(frozen=True)
class ErrorShape:
    """How one API writes its errors: the body, and the status of a request its schema
    refuses (FastAPI's and vLLM's 422; Cohere answers 400)."""

    body: Callable[[str, str, str | None, str | None], dict[str, Any]]
    invalid_status: int = 422


#: OpenAI's (and vLLM's): ``{"error": {"message", "type", "param", "code"}}``; the default.
OPENAI = ErrorShape(_openai_body)
#: Cohere's: ``{"message"}`` (with ``param`` and ``code`` when known), 400 for a bad body.
COHERE = ErrorShape(_cohere_body, invalid_status=400)
#: Both in one body: Cohere's ``message`` beside OpenAI's ``error`` (paths both read).
COHERE_AND_OPENAI = ErrorShape(_both_bodies)

_SHAPES: dict[str, ErrorShape] = {}


def error_shape(path: str, shape: ErrorShape) -> None:
    """Answer errors on ``path`` in ``shape`` (called by the route module serving it)."""
    _SHAPES[path] = shape


def shape_of(path: str) -> ErrorShape:
    return _SHAPES.get(path, OPENAI)


def error_response(
    status: int, message: str, type_: str, param: str | None = None, code: str | None = None,
    headers: dict[str, str] | None = None, *, path: str = "",
) -> JSONResponse:
    """The error answer, in the shape of ``path``'s API."""
    body = shape_of(path).body(message, type_, param, code)
    return JSONResponse(body, status_code=status, headers=headers)


def queue_full(exc: QueueFull) -> ApiError:
    """The 429 for a request the engine's queue has no room for."""
    return ApiError(429, f"the server is busy: {exc}; retry later", type="rate_limit_error",
                    code="queue_full", headers={"Retry-After": "1"})


def add_exception_handlers(app: FastAPI) -> None:
    """Answer every failure of ``app`` in OpenAI's error shape."""

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return exc.response(request.url.path)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        path = request.url.path
        for err in errors:
            if err.get("type") == REFUSED:  # a well-formed option this server cannot honour
                ctx = err.get("ctx") or {}
                return error_response(400, str(ctx["message"]), "invalid_request_error",
                                      ctx.get("param"), None, path=path)
        parts, param = [], None
        for err in errors[:5]:
            loc = [str(x) for x in err.get("loc", ()) if x != "body"]
            where = ".".join(loc) or "body"
            param = param or where
            parts.append(f"{where}: {err.get('msg')}")
        return error_response(shape_of(path).invalid_status, "; ".join(parts) or
                              "invalid request", "invalid_request_error", param, "invalid_value",
                              path=path)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error_response(exc.status_code, str(exc.detail), "invalid_request_error",
                              None, None, getattr(exc, "headers", None), path=request.url.path)

    @app.exception_handler(ClientGone)
    async def _gone(request: Request, exc: ClientGone) -> Response:
        return Response(status_code=499)

    @app.exception_handler(Exception)
    async def _crash(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s", request.url.path)
        return error_response(500, f"internal error: {type(exc).__name__}: {exc}",
                              "server_error", path=request.url.path)
