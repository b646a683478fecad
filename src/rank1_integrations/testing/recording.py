"""Record a client's real HTTP exchanges with a server, and replay them offline.

The unit tests' server shapes are recordings of real servers (``tests/client/recorded``,
re-recorded by ``scripts/record_fixtures.sh``), not our belief of them:

    recorder = RecordingTransport()
    http = httpx.AsyncClient(transport=recorder)
    ... Rank1Client(base_url, client=http).rerank(...) ...
    recorder.exchanges          # [{"request": {...}, "response": {...}}, ...]

    http = httpx.AsyncClient(transport=ReplayTransport(exchanges))   # no server needed

A replay answers each request with the recorded response of the first unused exchange
with the same method, path and JSON body; a request the recording lacks fails loudly
(the client's requests changed: re-record).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import httpx

__all__ = ["RecordingTransport", "ReplayTransport", "UnrecordedRequest"]

#: Response headers worth keeping (the rest vary run to run: dates, lengths).
_KEPT_HEADERS = ("content-type", "retry-after", "retry-after-ms")


def _body(request: httpx.Request) -> Any:
    raw = request.content
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode("utf-8", "replace")


def _key(request: httpx.Request) -> tuple[str, str, str]:
    return request.method, request.url.path, json.dumps(_body(request), sort_keys=True)


class RecordingTransport(httpx.AsyncBaseTransport):
    """An ``httpx`` transport that forwards to the network and keeps every exchange."""

    def __init__(self, inner: httpx.AsyncBaseTransport | None = None) -> None:
        self.inner = inner or httpx.AsyncHTTPTransport()
        self.exchanges: list[dict[str, Any]] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        await request.aread()
        response = await self.inner.handle_async_request(request)
        content = await response.aread()
        headers = {k: v for k, v in response.headers.items() if k.lower() in _KEPT_HEADERS}
        self.exchanges.append({
            "request": {"method": request.method, "path": request.url.path,
                        "body": _body(request)},
            "response": {"status": response.status_code, "headers": headers,
                         "body": content.decode("utf-8")},
        })
        return httpx.Response(response.status_code, headers=headers, content=content,
                              request=request)

    async def aclose(self) -> None:
        await self.inner.aclose()


class UnrecordedRequest(AssertionError):
    """The client sent a request the recording does not hold."""


class ReplayTransport(httpx.AsyncBaseTransport):
    """Answers requests from recorded exchanges (see :class:`RecordingTransport`)."""

    def __init__(self, exchanges: Sequence[dict[str, Any]]) -> None:
        self._unused = list(exchanges)
        self.requests: list[httpx.Request] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        await request.aread()
        self.requests.append(request)
        key = _key(request)
        for i, exchange in enumerate(self._unused):
            rec = exchange["request"]
            if (rec["method"], rec["path"], json.dumps(rec["body"], sort_keys=True)) == key:
                del self._unused[i]
                resp = exchange["response"]
                return httpx.Response(resp["status"], headers=resp["headers"],
                                      content=resp["body"].encode("utf-8"), request=request)
        raise UnrecordedRequest(
            f"no recorded exchange for {request.method} {request.url.path} "
            f"{request.content[:300]!r}: the client's requests changed, re-record the "
            "fixtures (scripts/record_fixtures.sh)"
        )

    @property
    def unused(self) -> int:
        """Recorded exchanges no request has used yet."""
        return len(self._unused)
