"""The body-size guard: 413 for request bodies over ``--max-body-bytes`` (chunked bodies,
which announce no size, included), and request counting for ``/metrics``."""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from .errors import error_response
from .state import ServerState

__all__ = ["BodyGuard"]


class BodyGuard:
    """Pure ASGI middleware: 413 for bodies over the limit, request counting for metrics.

    (Not ``BaseHTTPMiddleware``: that one hides client disconnects from the routes.)
    """

    _ENDPOINTS = {"/v1/completions", "/v1/chat/completions", "/v1/rerank", "/v2/rerank", "/rerank",
                  "/v1/models", "/tokenize", "/health", "/metrics"}

    def __init__(self, app: Any, state: ServerState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        endpoint = path if path in self._ENDPOINTS else "other"
        status = {"code": 500}

        async def send_wrapper(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        limit = self.state.config.max_body_bytes
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        try:
            too_large = None
            if length is not None and length.isdigit() and int(length) > limit:
                too_large = f"{int(length)} bytes"
            elif length is None and b"transfer-encoding" in headers:
                # A chunked body announces no size: read it here, up to the limit.
                received, over = await _read_body(receive, limit)
                if over:
                    too_large = f"over {limit} bytes"
                receive = _replay(received, receive)
            if too_large is not None:
                response = error_response(
                    413, f"the request body has {too_large}; the limit is {limit}",
                    "invalid_request_error", None, "request_too_large", path=path,
                )
                await response(scope, receive, send_wrapper)
                return
            await self.app(scope, receive, send_wrapper)
        finally:
            self.state.metrics.requests.labels(endpoint=endpoint, status=str(status["code"])).inc()


async def _read_body(receive: Any, limit: int) -> tuple[list[dict], bool]:
    """The ASGI messages of a request body, read until its end or until it has more than
    ``limit`` bytes; and whether it went over."""
    messages: list[dict] = []
    total = 0
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request":
            return messages, False
        total += len(message.get("body", b""))
        if total > limit:
            return messages, True
        if not message.get("more_body", False):
            return messages, False


def _replay(messages: list[dict], receive: Any) -> Callable[[], Awaitable[dict]]:
    """An ASGI ``receive`` that gives ``messages`` again, then the live ones."""
    pending = deque(messages)

    async def replay() -> dict:
        return pending.popleft() if pending else await receive()

    return replay
