"""Errors answered in OpenAI's shape: ``{"error": {"message", "type", "param", "code"}}``.

:class:`ApiError` is what routes raise; :func:`add_exception_handlers` installs the
handlers that turn it, request validation errors (422, or 400 for the options the
schemas refuse, see :data:`~rank1_server.schemas.REFUSED`), HTTP errors (404...), a
client that left (499) and anything unexpected (500) into that shape.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from .engine import QueueFull
from .schemas import REFUSED

__all__ = ["ApiError", "ClientGone", "add_exception_handlers", "error_response", "queue_full"]

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

    def response(self) -> JSONResponse:
        return error_response(
            self.status, self.message, self.type, self.param, self.code, self.headers
        )


class ClientGone(Exception):
    """The client disconnected before its answer was ready."""


def error_response(
    status: int, message: str, type_: str, param: str | None = None, code: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = {"error": {"message": message, "type": type_, "param": param, "code": code}}
    return JSONResponse(body, status_code=status, headers=headers)


def queue_full(exc: QueueFull) -> ApiError:
    """The 429 for a request the engine's queue has no room for."""
    return ApiError(429, f"the server is busy: {exc}; retry later", type="rate_limit_error",
                    code="queue_full", headers={"Retry-After": "1"})


def add_exception_handlers(app: FastAPI) -> None:
    """Answer every failure of ``app`` in OpenAI's error shape."""

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return exc.response()

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        for err in errors:
            if err.get("type") == REFUSED:  # a well-formed option this server cannot honour
                ctx = err.get("ctx") or {}
                return error_response(400, str(ctx["message"]), "invalid_request_error",
                                      ctx.get("param"), None)
        parts, param = [], None
        for err in errors[:5]:
            loc = [str(x) for x in err.get("loc", ()) if x != "body"]
            where = ".".join(loc) or "body"
            param = param or where
            parts.append(f"{where}: {err.get('msg')}")
        return error_response(422, "; ".join(parts) or "invalid request",
                              "invalid_request_error", param, "invalid_value")

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error_response(exc.status_code, str(exc.detail), "invalid_request_error",
                              None, None, getattr(exc, "headers", None))

    @app.exception_handler(ClientGone)
    async def _gone(request: Request, exc: ClientGone) -> Response:
        return Response(status_code=499)

    @app.exception_handler(Exception)
    async def _crash(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s", request.url.path)
        return error_response(500, f"internal error: {type(exc).__name__}: {exc}",
                              "server_error")
