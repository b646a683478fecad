"""A thin async facade over the openai SDK that hands transports plain dicts.

It accepts the async or the sync SDK client (a sync one runs in a worker thread, so calls
stay concurrent) and turns responses into the JSON the server sent, extra fields
included (``reasoning``, llama.cpp's logprobs shape, ...).

Every call is one HTTP step, run under the retry policy the client hands in (``retry``):
a step that fails is retried on its own, and ``parse`` (the transport's reading of the
response) runs inside the step, so a response it refuses with
:class:`~rank1_integrations.errors.BadResponseError` is retried like a 5xx. A 200 whose
body is not valid JSON (cut, or rewritten by a proxy) raises that error too.

Fields outside OpenAI's own API travel in ``extra_body`` (``skip_special_tokens``,
``repeat_penalty``, ``allowed_token_ids``, ...). Most hosts ignore the ones they do not
know, but a strict one answers 400 (or 422) naming them: pydantic's ``extra_forbidden``
("Extra inputs are not permitted") or OpenAI's "Unrecognized request argument supplied:
X". Such a field is dropped, the request sent again at once (this is not a retry: the host
answered), and the field is not sent again by this ``Sdk`` (one per client).

Each request first waits for the client's rate budgets (``max_requests_per_minute``,
``max_tokens_per_minute``; :meth:`~rank1_integrations._session.HttpSession.acquire`),
retries and resends included; its tokens are :func:`token_estimate`'s upper bound.

Streamed requests ask for ``Connection: close``. llama.cpp's ``llama-server`` (the only
host the transports stream from) closes the connection after every streamed response
while announcing keep-alive; aiohttp, the SDK's fastest HTTP stack, then puts the dead
connection back in its pool, and the next request on it fails to write its body ("Can
not write request body", an ``APITimeoutError``). Asked for ``close``, the server says so
in the response and no stack reuses the connection (which the server would close anyway).

:meth:`Sdk.events` reads a response of Server-Sent Events (rank1-server's ``/rerank``
with ``stream``) one event at a time, through the SDK's own SSE decoder: the caller sees
each event as it arrives, and leaving early closes the response (the server then frees
what the request held).

Every HTTP request sent (``/completions``, ``/chat/completions``, a ``post`` path and the
probes: ``/v1/models``, ``/props``, ``/tokenize``) is counted in the :class:`RequestCount`
of the running judgment, if any (see :func:`counting_requests`): a transport opens one per
judgment (and one while fitting it), so ``Judgment.requests`` holds the probes, retries,
resends and forced answers it took.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import socket
import threading
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable, Iterator, Mapping
from contextvars import ContextVar
from typing import Any, TypeVar

import openai

from .._retry import RetryStep, once
from .._session import AnyOpenAI, HttpSession
from ..errors import BadResponseError

__all__ = [
    "AnyOpenAI", "RequestCount", "Sdk", "counting_requests", "rejected_fields", "token_estimate",
]

logger = logging.getLogger("rank1_integrations")

T = TypeVar("T")

#: Seconds a probe (:meth:`Sdk.probe`) may take: a server that knows its own context and
#: tokenizer answers at once; one that does not must not hold a judgment up.
PROBE_TIMEOUT = 5.0

#: Headers of every streamed request (see the module's docstring).
STREAM_HEADERS = {"Connection": "close"}

#: Statuses with which hosts refuse a request body: 400, and FastAPI's 422 for pydantic
#: validation errors.
_REFUSAL_STATUSES = frozenset({400, 422})
#: Words by which an error says that a field is not accepted at all (not that its value
#: is wrong: a bad value, e.g. an out-of-vocabulary ``allowed_token_ids``, must fail).
_UNKNOWN_FIELD = re.compile(
    r"unrecogni[sz]ed|unknown|extra|not permitted|not allowed|unsupported|not supported"
    r"|unexpected|additional propert|invalid (?:field|param|argument|key)",
    re.IGNORECASE,
)


class RequestCount:
    """HTTP requests sent for one judgment (or one batch of them), so far."""

    __slots__ = ("n",)

    def __init__(self) -> None:
        self.n = 0


#: The count of the judgment being made in this task (each task has its own context).
_REQUESTS: ContextVar[RequestCount | None] = ContextVar("rank1_requests", default=None)


@contextlib.contextmanager
def counting_requests() -> Iterator[RequestCount]:
    """Count the HTTP requests the ``Sdk`` sends inside the block (in this task and the
    tasks it starts), in a new :class:`RequestCount`.

    >>> with counting_requests() as count:
    ...     pass
    >>> count.n
    0
    """
    count = RequestCount()
    token = _REQUESTS.set(count)
    try:
        yield count
    finally:
        _REQUESTS.reset(token)


def _count_request() -> None:
    count = _REQUESTS.get()
    if count is not None:
        count.n += 1


def _dump(obj: Any) -> dict[str, Any]:
    return obj.model_dump() if hasattr(obj, "model_dump") else dict(obj)


def _error_text(exc: openai.APIStatusError) -> str:
    parts = [str(exc.message)]
    try:
        parts.append(exc.response.text)
    except Exception:  # noqa: BLE001 - a body that was not read: the message says enough
        pass
    return "\n".join(parts)


def rejected_fields(exc: BaseException, fields: Iterable[str]) -> set[str]:
    """The fields among ``fields`` that ``exc`` (a 400/422) says the host does not accept.

    >>> import httpx
    >>> response = httpx.Response(400, request=httpx.Request("POST", "http://h/v1"),
    ...     json={"error": {"message": "Unrecognized request argument supplied: top_k"}})
    >>> sorted(rejected_fields(openai.BadRequestError("bad", response=response, body=None),
    ...                        ["top_k", "min_p"]))
    ['top_k']
    """
    if not isinstance(exc, openai.APIStatusError) or exc.status_code not in _REFUSAL_STATUSES:
        return set()
    text = _error_text(exc)
    if not _UNKNOWN_FIELD.search(text):
        return set()
    return {
        name for name in fields
        if re.search(rf"(?<![A-Za-z0-9_]){re.escape(name)}(?![A-Za-z0-9_])", text)
    }


#: vLLM's 400 for more logprobs than its ``--max-logprobs`` (default 20) allows.
_LOGPROBS_LIMIT = re.compile(
    r"(?:sample|top) ?logprobs of (\d+),? which is greater than max allowed: (\d+)"
)


def logprobs_limit(exc: BaseException) -> ValueError | None:
    """A clear error for a server's refusal of the logprobs asked for (vLLM: "Requested
    sample logprobs of 20, which is greater than max allowed: 5"), naming both numbers and
    what to do; ``None`` for any other error.

    >>> import httpx
    >>> response = httpx.Response(400, request=httpx.Request("POST", "http://h/v1"), json={
    ...     "error": {"message": "Requested sample logprobs of 20, which is greater than "
    ...                          "max allowed: 5"}})
    >>> error = logprobs_limit(openai.BadRequestError("bad", response=response, body=None))
    >>> str(error)[:67]
    'the server allows at most 5 logprobs a token and rank1 asked for 20'
    """
    if not isinstance(exc, openai.APIStatusError) or exc.status_code not in _REFUSAL_STATUSES:
        return None
    found = _LOGPROBS_LIMIT.search(_error_text(exc))
    if found is None:
        return None
    asked, allowed = found.groups()
    return ValueError(
        f"the server allows at most {allowed} logprobs a token and rank1 asked for {asked} "
        f"(HTTP {exc.status_code}): rank1 reads the answer from the top-20 as the official "
        "code does; raise the server's limit (vLLM: --max-logprobs 20), or use "
        "two_step='on' on vLLM (it asks for the two answer ids only)"
    )


def token_estimate(body: Mapping[str, Any]) -> int:
    """An upper bound on the tokens one request may cost, for ``max_tokens_per_minute``:
    the UTF-8 bytes of its JSON body (they hold the prompt, and no token is shorter than
    a byte; the JSON around it covers a chat template's few tokens per message), plus what
    it may generate: ``max_tokens`` (``max_completion_tokens``), or on ``/rerank``
    ``max_reasoning_tokens`` + 1 per document.

    >>> token_estimate({"prompt": "abc", "max_tokens": 10})
    45
    """
    size = len(json.dumps(body, ensure_ascii=False, default=str).encode("utf-8"))
    generated = body.get("max_tokens") or body.get("max_completion_tokens") or 0
    if "documents" in body:  # /rerank: every document reasons, then answers
        generated = ((body.get("max_reasoning_tokens") or 0) + 1) * len(body["documents"])
    return size + int(generated)


def _is_event_stream(headers: Mapping[str, str]) -> bool:
    return headers.get("content-type", "").split(";")[0].strip() == "text/event-stream"


def _json_object(data: Any, path: str) -> Any:
    """The SDK's ``cast_to=object`` result as JSON: it hands back the text of a response
    whose content type is not JSON; that text must still parse."""
    if not isinstance(data, str):
        return data
    try:
        return json.loads(data)
    except ValueError:
        raise BadResponseError(
            f"the 200 response to {path} is not JSON: {data[:200]!r}"
        ) from None


class Sdk:
    """Requests through ``session``, the client's :class:`~rank1_integrations._session.HttpSession`:
    it hands out the SDK client to use now (one per event loop) and runs a sync client's
    calls in its worker threads.

    ``retry`` runs each HTTP step under the client's retry policy (default: one try).
    """

    def __init__(self, session: HttpSession, *, retry: RetryStep[Any] = once) -> None:
        self.session = session
        self._lock = threading.Lock()
        self.retry = retry
        #: ``extra_body`` fields this host refused; they are no longer sent.
        self.rejected: frozenset[str] = frozenset()

    def _get_client(self) -> AnyOpenAI:
        return self.session.sdk_client()

    async def _in_thread(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """Run a blocking SDK call in the session's worker pool."""
        return await self.session.in_thread(fn, *args, **kwargs)

    def _resource(self, endpoint: str) -> tuple[Any, bool]:
        client = self._get_client()
        resource = client.completions if endpoint == "completions" else client.chat.completions
        return resource, isinstance(client, openai.AsyncOpenAI)

    async def _without_refused(
        self, extra_body: Mapping[str, Any],
        send: Callable[[dict[str, Any]], Awaitable[T]],
    ) -> T:
        """``send(extra)`` with the ``extra_body`` fields the host accepts; a field that a
        400/422 refuses is dropped and the request sent again (each time with fewer)."""
        while True:
            extra = {k: v for k, v in extra_body.items() if k not in self.rejected}
            try:
                return await send(extra)
            except openai.APIStatusError as exc:
                refused = rejected_fields(exc, extra)
                if not refused:
                    raise
                with self._lock:
                    self.rejected = self.rejected | refused
                logger.warning(
                    "rank1: the host refuses the request field(s) %s (HTTP %d); "
                    "sending without them from now on", sorted(refused), exc.status_code,
                )

    async def _refusals_named(self, step: Callable[[], Awaitable[T]]) -> T:
        """``step`` under the retry policy; a refusal of the logprobs asked for raises
        :func:`logprobs_limit`'s clear error instead of the server's."""
        try:
            return await self.retry(step)
        except openai.APIStatusError as exc:
            clear = logprobs_limit(exc)
            if clear is None:
                raise
            raise clear from exc

    async def create(
        self, endpoint: str, *, parse: Callable[[dict[str, Any]], T] | None = None,
        **params: Any,
    ) -> Any:
        """``POST /completions`` or ``/chat/completions``: the response JSON as a dict, or
        what ``parse`` makes of it.

        ``extra_body`` is merged into the body as the SDK's typed methods do. The raw JSON
        is kept (no typed model in between): it is the server's own fields, extras
        included, and parsing typed models costs more CPU than the rest of a judgment.
        """
        extra_body = params.pop("extra_body", {})  # first: ``**params`` must not hold it
        path = "/completions" if endpoint == "completions" else "/chat/completions"

        async def step() -> Any:
            response = await self._without_refused(
                extra_body, lambda extra: self._post_json(path, {**params, **extra})
            )
            return parse(response) if parse is not None else response

        return await self._refusals_named(step)

    async def stream(
        self, endpoint: str, *, parse: Callable[[list[dict[str, Any]]], T] | None = None,
        **params: Any,
    ) -> Any:
        """The same with ``stream=True``: every chunk as a dict, or what ``parse`` makes
        of the list."""
        extra_body = params.pop("extra_body", {})

        async def step() -> Any:
            chunks = await self._without_refused(
                extra_body, lambda extra: self._collect(endpoint, params, extra)
            )
            return parse(chunks) if parse is not None else chunks

        return await self._refusals_named(step)

    async def _collect(
        self, endpoint: str, params: dict[str, Any], extra_body: dict[str, Any]
    ) -> list[dict[str, Any]]:
        await self.session.acquire(lambda: token_estimate({**params, **extra_body}))
        resource, is_async = self._resource(endpoint)
        kwargs = {**params, "stream": True, "extra_body": extra_body,
                  "extra_headers": STREAM_HEADERS}
        _count_request()
        try:
            if is_async:
                stream = await resource.create(**kwargs)
                return [_dump(chunk) async for chunk in stream]

            def collect() -> list[dict[str, Any]]:
                return [_dump(chunk) for chunk in resource.create(**kwargs)]

            return await self._in_thread(collect)
        except json.JSONDecodeError as exc:
            raise BadResponseError(f"a streamed chunk is not valid JSON: {exc}") from exc

    async def post(self, path: str, body: dict[str, Any]) -> Any:
        """``POST`` any JSON path under the base URL (e.g. ``/rerank``), as one step."""
        return await self.retry(lambda: self._post_json(path, body))

    async def _post_json(self, path: str, body: dict[str, Any]) -> Any:
        await self.session.acquire(lambda: token_estimate(body))
        client = self._get_client()
        _count_request()
        try:
            if isinstance(client, openai.AsyncOpenAI):
                data = await client.post(path, body=body, cast_to=object)
            else:
                data = await self._in_thread(client.post, path, body=body, cast_to=object)
        except json.JSONDecodeError as exc:
            raise BadResponseError(
                f"the 200 response to {path} is not valid JSON: {exc}"
            ) from exc
        return _json_object(data, path)

    async def events(self, path: str, body: dict[str, Any]) -> AsyncGenerator[Any, None]:
        """``POST`` ``body`` to ``path``, a path that answers Server-Sent Events: each
        event's data (decoded JSON) as it arrives. One try, counted, after the rate budgets
        (the caller runs it under :attr:`retry`, and may resend only what is missing).

        A host that answers plain JSON instead (one that ignores ``stream``) yields that
        JSON as its one item. An ``error`` event raises
        :class:`~rank1_integrations.errors.BadResponseError` (retried like a 5xx); a broken
        connection the SDK's ``APIConnectionError``. Close the generator when leaving early
        (``contextlib.aclosing``): that closes the response at once::

            async with contextlib.aclosing(sdk.events("/rerank", body)) as events:
                async for data in events:
                    ...
        """
        await self.session.acquire(lambda: token_estimate(body))
        client = self._get_client()
        options: Any = {"headers": STREAM_HEADERS}
        _count_request()
        try:
            if isinstance(client, openai.AsyncOpenAI):
                stream = await client.post(
                    path, body=body, cast_to=object, options=options, stream=True,
                    stream_cls=openai.AsyncStream[object],
                )
                async with stream:
                    if not _is_event_stream(stream.response.headers):
                        raw = await stream.response.aread()
                        yield _json_object(raw.decode("utf-8", "replace"), path)
                        return
                    async for data in stream:
                        yield data
                return
            opening = asyncio.ensure_future(self._in_thread(
                client.post, path, body=body, cast_to=object, options=options, stream=True,
                stream_cls=openai.Stream[object],
            ))
            try:
                sync_stream = await asyncio.shield(opening)
            except asyncio.CancelledError:
                # left before the answer began: the worker thread still gets it; close
                # it then, or the server generates for nobody
                opening.add_done_callback(_abort_opened)
                raise
            finished = False
            try:
                if not _is_event_stream(sync_stream.response.headers):
                    raw = await self._in_thread(sync_stream.response.read)
                    yield _json_object(raw.decode("utf-8", "replace"), path)
                    finished = True
                    return
                items = iter(sync_stream)
                end = object()
                while (data := await self._in_thread(next, items, end)) is not end:
                    yield data
                finished = True
            finally:
                if finished:
                    await self._in_thread(sync_stream.close)
                else:
                    # left early (a deadline, the caller stopped, a cancel): a worker
                    # thread may be blocked reading the next event, so not queued behind
                    # it in the pool: aborted here, at once
                    _abort_sync(sync_stream.response)
        except json.JSONDecodeError as exc:
            raise BadResponseError(f"an event of {path} is not valid JSON: {exc}") from exc
        except openai.APIError as exc:
            if isinstance(exc, (openai.APIStatusError, openai.APIConnectionError)):
                raise
            raise BadResponseError(  # the server's ``error`` event
                f"the stream of {path} ended with an error: {exc.message}"
            ) from exc

    async def get(self, path: str) -> Any:
        """``GET`` a path under the base URL (e.g. ``/models``), or an absolute URL; the
        decoded JSON. Counted like every request; one try (no retry policy)."""
        return await self.probe(path)

    async def probe(
        self, path: str, body: dict[str, Any] | None = None, *,
        timeout: float = PROBE_TIMEOUT,
    ) -> Any:
        """A best-effort request about the server itself (``GET /v1/models``, ``/props``;
        ``POST /tokenize`` when ``body`` is given): one try, whatever the retry policy
        (and the injected SDK client's own ``max_retries``), at most ``timeout`` seconds,
        counted in the running judgment's :class:`RequestCount` like every request sent.
        Raises what the SDK raises; the caller decides what a failure means."""
        await self.session.acquire(lambda: token_estimate(body) if body else 0)
        client = self._get_client()
        options: Any = {"max_retries": 0, "timeout": timeout}
        _count_request()
        if body is None:
            if isinstance(client, openai.AsyncOpenAI):
                data = await client.get(path, cast_to=object, options=options)
            else:
                data = await self._in_thread(client.get, path, cast_to=object, options=options)
        elif isinstance(client, openai.AsyncOpenAI):
            data = await client.post(path, body=body, cast_to=object, options=options)
        else:
            data = await self._in_thread(
                client.post, path, body=body, cast_to=object, options=options
            )
        return _json_object(data, path)

    def base_url(self) -> str:
        """The base URL of the SDK client in use now (e.g. ``http://host:8000/v1/``)."""
        return str(self._get_client().base_url)


def _abort_sync(response: Any) -> None:
    """Close a sync streamed ``httpx.Response`` at once, even while a worker thread is
    blocked reading it: the socket is shut down first (the blocked read returns, and the
    server sees the client leave now, not at its next event), then the response closed."""
    network = response.extensions.get("network_stream")
    sock = network.get_extra_info("socket") if network is not None else None
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(Exception):  # the reader thread may be closing it too
        response.close()


def _abort_opened(opening: asyncio.Future[Any]) -> None:
    """Done callback of a streamed request whose caller left while it was being sent."""
    if not opening.cancelled() and opening.exception() is None:
        _abort_sync(opening.result().response)
