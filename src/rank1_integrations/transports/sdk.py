"""A thin async facade over the openai SDK that hands transports plain dicts.

It accepts the async or the sync SDK client (a sync one runs in a worker thread, so calls
stay concurrent) and turns responses into the JSON the server sent, extra fields
included (``reasoning``, llama.cpp's logprobs shape, ...).
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import openai

__all__ = ["Sdk"]

AnyOpenAI = openai.AsyncOpenAI | openai.OpenAI
T = TypeVar("T")


def _dump(obj: Any) -> dict[str, Any]:
    return obj.model_dump() if hasattr(obj, "model_dump") else dict(obj)


class Sdk:
    """``get_client`` returns the SDK client to use now (one per event loop).

    Calls of a sync client run in a pool of ``max_threads`` worker threads (the client's
    ``concurrency``): asyncio's default pool has only ``min(32, cpus + 4)`` threads, which
    would cap the requests in flight below the configured concurrency on small machines.
    """

    def __init__(
        self, get_client: Callable[[], AnyOpenAI], *, max_threads: int | None = None
    ) -> None:
        self._get_client = get_client
        self._max_threads = max_threads
        self._executor: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    async def _in_thread(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """Run a blocking SDK call in the worker pool."""
        if self._max_threads is None:
            return await asyncio.to_thread(fn, *args, **kwargs)
        with self._lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(
                    self._max_threads, thread_name_prefix="rank1-sdk"
                )
            executor = self._executor
        call = functools.partial(contextvars.copy_context().run, fn, *args, **kwargs)
        return await asyncio.get_running_loop().run_in_executor(executor, call)

    def close(self) -> None:
        """Let the worker threads go (they finish what they are doing first)."""
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False)

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
        extra_body = params.pop("extra_body", {})  # first: ``**params`` must not hold it
        body = {**params, **extra_body}
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

        return await self._in_thread(collect)

    async def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """``POST`` any JSON path under the base URL (e.g. ``/rerank``), or an absolute URL."""
        client = self._get_client()
        if isinstance(client, openai.AsyncOpenAI):
            return await client.post(path, body=body, cast_to=object)
        return await self._in_thread(client.post, path, body=body, cast_to=object)

    async def get(self, path: str) -> Any:
        """``GET`` a path under the base URL (e.g. ``/models``), or an absolute URL; the
        decoded JSON."""
        client = self._get_client()
        if isinstance(client, openai.AsyncOpenAI):
            return await client.get(path, cast_to=object)
        return await self._in_thread(client.get, path, cast_to=object)

    def base_url(self) -> str:
        """The base URL of the SDK client in use now (e.g. ``http://host:8000/v1/``)."""
        return str(self._get_client().base_url)
