"""What every route uses: the server state (a FastAPI dependency reading
``request.app.state``), the API-key check, and waiting on work while the client stays."""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import Awaitable
from typing import Annotated, TypeVar

from fastapi import Depends, Request

from .errors import ApiError, ClientGone
from .state import ServerState

__all__ = ["State", "get_state", "require_key", "until_disconnect"]

T = TypeVar("T")


def get_state(request: Request) -> ServerState:
    """The :class:`ServerState` of the app serving ``request``."""
    state: ServerState = request.app.state.rank1
    return state


#: A route parameter holding the server state: ``state: State``.
State = Annotated[ServerState, Depends(get_state)]


async def require_key(request: Request) -> None:
    """401 unless the request carries the server's API key (when it has one), as
    ``Authorization: Bearer KEY`` or ``X-API-Key``."""
    key = get_state(request).config.api_key
    if not key:
        return
    given = request.headers.get("authorization", "")
    token = given[7:].strip() if given.lower().startswith("bearer ") else ""
    token = token or request.headers.get("x-api-key", "")
    if not hmac.compare_digest(token.encode(), key.encode()):
        raise ApiError(401, "missing or wrong API key (send 'Authorization: Bearer KEY')",
                       code="invalid_api_key")


async def until_disconnect(request: Request, work: Awaitable[T]) -> T:
    """Await ``work``; if the client goes away first, cancel it (freeing its slots)."""
    task = asyncio.ensure_future(work)
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=0.1)
            if done:
                return task.result()
            if await request.is_disconnected():
                task.cancel()
                try:
                    await task
                except BaseException:  # noqa: BLE001 - the client is gone either way
                    pass
                raise ClientGone()
    except asyncio.CancelledError:
        task.cancel()
        raise
