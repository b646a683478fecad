"""A thin async facade over the openai SDK that hands transports plain dicts.

It accepts the async or the sync SDK client (a sync one runs in a worker thread, so calls
stay concurrent) and turns responses into the JSON the server sent, extra fields
included (``reasoning``, llama.cpp's logprobs shape, ...).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import openai

__all__ = ["Sdk"]

AnyOpenAI = openai.AsyncOpenAI | openai.OpenAI


def _dump(obj: Any) -> dict[str, Any]:
    return obj.model_dump() if hasattr(obj, "model_dump") else dict(obj)


class Sdk:
    """``get_client`` returns the SDK client to use now (one per event loop)."""

    def __init__(self, get_client: Callable[[], AnyOpenAI]) -> None:
        self._get_client = get_client

    def _resource(self, endpoint: str) -> tuple[Any, bool]:
        client = self._get_client()
        resource = client.completions if endpoint == "completions" else client.chat.completions
        return resource, isinstance(client, openai.AsyncOpenAI)

    async def create(self, endpoint: str, **params: Any) -> dict[str, Any]:
        """``POST /completions`` or ``/chat/completions``; the response JSON as a dict.

        ``extra_body`` is merged into the body as the SDK's typed methods do. The raw JSON
        is kept (no typed model in between): it is the server's own fields, extras
        included, and parsing typed models costs more CPU than the rest of a judgment.
        """
        body = {**params, **params.pop("extra_body", {})}
        path = "/completions" if endpoint == "completions" else "/chat/completions"
        return await self.post(path, body)

    async def stream(self, endpoint: str, **params: Any) -> list[dict[str, Any]]:
        """The same with ``stream=True``; every chunk as a dict."""
        resource, is_async = self._resource(endpoint)
        if is_async:
            stream = await resource.create(stream=True, **params)
            return [_dump(chunk) async for chunk in stream]

        def collect() -> list[dict[str, Any]]:
            return [_dump(chunk) for chunk in resource.create(stream=True, **params)]

        return await asyncio.to_thread(collect)

    async def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """``POST`` any JSON path under the base URL (e.g. ``/rerank``)."""
        client = self._get_client()
        if isinstance(client, openai.AsyncOpenAI):
            return await client.post(path, body=body, cast_to=object)
        return await asyncio.to_thread(client.post, path, body=body, cast_to=object)
