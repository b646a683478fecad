"""``Rank1Client``: rank1 against any OpenAI-compatible server, with retries, bounded
concurrency and a judgment cache.

Usage::

    from rank1_integrations import Rank1Client

    client = Rank1Client(base_url="http://127.0.0.1:8000/v1", model="jhu-clsp/rank1-7b")
    judgments = client.rerank("what causes tides?", ["The Moon's gravity ...", "Tidal ..."])
    best = max(judgments, key=lambda j: j.score)

    # or, inside an event loop
    judgments = await client.arerank(query, passages)
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal, TypeVar

import httpx
import openai

from . import protocol
from .cache import JudgmentCache, MemoryCache, cache_key
from .errors import JudgmentError
from .judgment import Judgment
from .protocol import DEFAULT_MAX_PASSAGE_CHARS, build_prompt, truncate_passage
from .retry import with_retries
from .transports import (
    BatchTransport,
    ChatTransport,
    CompletionsTransport,
    JudgeCall,
    RerankTransport,
    Transport,
)
from .transports.sdk import AnyOpenAI, Sdk
from .transports.server_info import ServerProbe

__all__ = ["Rank1Client", "Mode", "OnError", "PassageInput", "DEFAULT_BASE_URL", "DEFAULT_MODEL"]

logger = logging.getLogger("rank1_integrations")

Mode = Literal["completions", "chat", "rerank"]
OnError = Literal["raise", "keep", "drop"]
#: A passage: its text, or a mapping with ``"text"`` and optionally ``"title"``.
PassageInput = str | Mapping[str, Any]

DEFAULT_BASE_URL = "http://127.0.0.1:8000/v1"
DEFAULT_MODEL = "jhu-clsp/rank1-7b"
_MODES = ("completions", "chat", "rerank")
_ON_ERROR = ("raise", "keep", "drop")

T = TypeVar("T")


@dataclass
class _LoopState:
    """What belongs to one event loop: an async SDK client and the concurrency bound."""

    sdk_client: AnyOpenAI
    semaphore: asyncio.Semaphore
    owned: bool
    #: Keeps the loop-shutdown hook of an owned client alive (see _close_at_loop_shutdown).
    closer: Any = None


class _BackgroundLoop:
    """An event loop in a daemon thread, where the sync methods run their coroutines.

    When it stops, its thread ends it the way ``asyncio.run`` ends a loop: leftover tasks
    are cancelled and async generators closed, which closes the SDK clients made on it
    (see :func:`_close_at_loop_shutdown`). The owning client stops it from ``close()``,
    and otherwise when the client is garbage-collected or the interpreter exits
    (``finalizer``), so that a script using only the sync API leaves no HTTP session open.
    """

    #: Longest wait for the loop's thread to wind down, or for a cancelled call to end.
    STOP_TIMEOUT = 5.0

    def __init__(self, owner: object) -> None:
        self.loop = asyncio.new_event_loop()
        #: Shutdown hooks of the SDK clients made on this loop (``_close_at_loop_shutdown``),
        #: held here so they outlive a garbage-collected owner until the loop stops.
        self.closers: list[Any] = []
        self.thread = threading.Thread(target=self._main, name="rank1-client-loop", daemon=True)
        self.thread.start()
        # Holds ``self.stop`` (not the owner): runs once, at the owner's collection, at
        # interpreter exit (while daemon threads still run) or when called.
        self.finalizer = weakref.finalize(owner, self.stop)

    def _main(self) -> None:
        loop = self.loop
        try:
            loop.run_forever()
        finally:
            try:
                tasks = asyncio.all_tasks(loop)
                for task in tasks:
                    task.cancel()
                if tasks:
                    loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
                for closer in self.closers:  # closes the SDK client (no-op if already closed)
                    loop.run_until_complete(closer.aclose())
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.run_until_complete(loop.shutdown_default_executor())
            finally:
                loop.close()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the loop and wait for its result.

        When the wait is interrupted (``KeyboardInterrupt`` from Ctrl-C, or any exception
        raised in the calling thread), the coroutine's task is cancelled, which aborts its
        HTTP requests, and the call waits (boundedly) for it to end before re-raising:
        otherwise the loop would go on sending every remaining request.
        """
        started, ended = threading.Event(), threading.Event()

        async def tracked() -> T:
            started.set()
            try:
                return await coro
            finally:
                ended.set()

        future = asyncio.run_coroutine_threadsafe(tracked(), self.loop)
        try:
            return future.result()
        except BaseException:
            if not future.done():
                future.cancel()  # cancels the task on the loop (asyncio chains the two)
                if started.is_set():
                    ended.wait(self.STOP_TIMEOUT)
            raise

    def stop(self) -> None:
        """Stop the loop and let its thread close it; idempotent, callable from any
        thread (from the loop's own, e.g. a garbage collection there, it does not wait)."""
        if self.loop.is_closed():
            return
        try:
            self.loop.call_soon_threadsafe(self.loop.stop)
        except RuntimeError:  # closed in the meantime
            return
        if threading.current_thread() is not self.thread:
            self.thread.join(timeout=self.STOP_TIMEOUT)


class Rank1Client:
    """Judge (query, passage) pairs with rank1 on an OpenAI-compatible server.

    Every setting can come from the environment: ``RANK1_BASE_URL``, ``RANK1_API_KEY``,
    ``RANK1_MODEL``. See the README's settings table for the rest.

    Args:
        base_url: the server's ``/v1`` URL (default ``RANK1_BASE_URL`` or
            ``http://127.0.0.1:8000/v1``, where ``rank1-server`` listens).
        api_key: bearer token (default ``RANK1_API_KEY``, or ``"EMPTY"``).
        model: served model name (default ``RANK1_MODEL`` or ``jhu-clsp/rank1-7b``).
        mode: ``"completions"`` (faithful raw prompt, the default), ``"chat"`` (hosts with
            only a chat API) or ``"rerank"`` (``/v1/rerank`` of the bundled server).
        max_reasoning_tokens: reasoning budget per judgment (the official code allows
            8192; chains rarely need more than a few hundred tokens).
        instruction: a relevance definition, as text appended to the query or as a
            template holding ``{query}`` / ``FILL_QUERY_HERE``.
        concurrency: requests in flight at once (per event loop).
        timeout: seconds per HTTP request.
        max_retries: further tries after the first, for connection errors, timeouts,
            408/409/429, 5xx and 200s that are not valid JSON or lack the logprobs asked
            for (``Retry-After`` is honoured). Each HTTP request has its own tries: a
            failed forced answer is retried alone, the reasoning is not generated again.
        on_error: what :meth:`rerank` does with a judgment that failed after its retries:
            ``"raise"`` a :class:`~rank1_integrations.errors.JudgmentError` naming the
            passage, ``"keep"`` it with ``error`` set and no score, or ``"drop"`` it
            (logged as a warning with its index).
        cache: ``True`` for an in-memory LRU cache (the default), ``None``/``False`` for
            none, or any :class:`~rank1_integrations.cache.JudgmentCache`.
        max_passage_chars: passages longer than this are cut (the judgment says so).
        answer_token_ids: ids of `` true`` / `` false`` in the served vocabulary, for the
            forced answer's token whitelist (830 and 895 for Qwen2.5-based rank1). In
            completions mode they are otherwise asked of the server's ``/tokenize``, which
            also tells the prompt's length: the reasoning budget is then fitted to the
            context the server publishes (see :mod:`.transports.server_info`).
        allow_text_only: in ``"completions"`` mode, accept a response without logprobs
            and give a text-only verdict (score 1.0 or 0.0, ``source="text_only"``). Off by
            default: such a response is retried, then the judgment fails per
            ``on_error``, because a ranking that mixes calibrated scores with 0/1 ones is
            silently wrong.
        client: an ``openai.AsyncOpenAI`` / ``openai.OpenAI`` to use as is, or an
            ``httpx.AsyncClient`` / ``httpx.Client`` to build one on.
    """

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        model: str | None = None,
        *,
        mode: Mode = "completions",
        max_reasoning_tokens: int = 2048,
        instruction: str | None = None,
        concurrency: int = 8,
        timeout: float = 600.0,
        max_retries: int = 3,
        on_error: OnError = "raise",
        cache: bool | JudgmentCache | None = True,
        max_passage_chars: int = DEFAULT_MAX_PASSAGE_CHARS,
        answer_token_ids: tuple[int, int] | None = None,
        client: AnyOpenAI | httpx.AsyncClient | httpx.Client | None = None,
        retry_backoff: float = 0.5,
        allow_text_only: bool = False,
    ) -> None:
        if mode not in _MODES:
            raise ValueError(f"mode must be one of {_MODES}, got {mode!r}")
        if on_error not in _ON_ERROR:
            raise ValueError(f"on_error must be one of {_ON_ERROR}, got {on_error!r}")
        for name, value in (("max_reasoning_tokens", max_reasoning_tokens),
                            ("concurrency", concurrency), ("max_passage_chars", max_passage_chars)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {max_retries!r}")
        self.base_url = base_url or os.environ.get("RANK1_BASE_URL") or DEFAULT_BASE_URL
        self.api_key = api_key or os.environ.get("RANK1_API_KEY") or "EMPTY"
        self.model = model or os.environ.get("RANK1_MODEL") or DEFAULT_MODEL
        self.mode: Mode = mode
        self.max_reasoning_tokens = max_reasoning_tokens
        self.instruction = instruction
        self.concurrency = concurrency
        self.timeout = timeout
        self.max_retries = max_retries
        self.on_error: OnError = on_error
        self.max_passage_chars = max_passage_chars
        self.answer_token_ids = answer_token_ids
        self.retry_backoff = retry_backoff
        self.allow_text_only = allow_text_only
        if cache is True:
            cache = MemoryCache()
        # not ``cache or None``: an empty MemoryCache has len() 0, so it is falsy
        self.cache: JudgmentCache | None = None if cache is None or cache is False else cache
        self._injected = client
        #: The endpoint the requests reach, for cache keys: an injected SDK client's own.
        self._endpoint = _endpoint_of(client, self.base_url)
        #: The loop an injected async client was first used on (it is bound to it).
        self._injected_loop: weakref.ref[asyncio.AbstractEventLoop] | None = None
        self._loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopState] = (
            weakref.WeakKeyDictionary()
        )
        self._background: _BackgroundLoop | None = None
        self._lock = threading.Lock()
        self._sdk = Sdk(self._sdk_client, max_threads=concurrency, retry=self._retry)
        self.transport: Transport = self._make_transport(self._sdk)
        #: Probes the server once for its context and tokenizer (completions mode).
        self._server_probe = ServerProbe(self._sdk, self.model) if mode == "completions" else None

    # ------------------------------------------------------------------ plumbing

    def _make_transport(self, sdk: Sdk) -> Transport:
        if self.mode == "completions":
            return CompletionsTransport(
                sdk, self.model, answer_token_ids=self.answer_token_ids,
                allow_text_only=self.allow_text_only,
            )
        if self.mode == "chat":
            return ChatTransport(sdk, self.model)
        return RerankTransport(sdk, self.model)

    def _state(self) -> _LoopState:
        """The SDK client and semaphore of the running loop, created on first use there
        (async clients are bound to the loop they first ran on)."""
        loop = asyncio.get_running_loop()
        state = self._loops.get(loop)
        if state is None:
            injected = self._injected
            if isinstance(injected, (openai.AsyncOpenAI, httpx.AsyncClient)):
                self._claim_loop(loop)
            if isinstance(injected, (openai.AsyncOpenAI, openai.OpenAI)):
                sdk_client: AnyOpenAI = injected
                owned = False
            else:
                options: dict[str, Any] = {
                    "base_url": self.base_url, "api_key": self.api_key,
                    "timeout": self.timeout, "max_retries": 0,  # one retry policy: ours
                }
                if isinstance(injected, httpx.Client):
                    sdk_client = openai.OpenAI(http_client=injected, **options)
                    owned = False
                else:
                    sdk_client = openai.AsyncOpenAI(
                        http_client=injected or _default_async_http_client(), **options
                    )
                    owned = injected is None
            state = _LoopState(sdk_client, asyncio.Semaphore(self.concurrency), owned)
            if owned and isinstance(sdk_client, openai.AsyncOpenAI):
                state.closer = _close_at_loop_shutdown(sdk_client)
                background = self._background
                if background is not None and background.loop is loop:
                    background.closers.append(state.closer)
            self._loops[loop] = state
        return state

    def _claim_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        """Bind the injected async client to ``loop`` on its first use; on any other loop
        raise a RuntimeError that says why (instead of the HTTP library's error from deep
        inside, or a silent hang). It cannot be cloned per loop: it is the caller's."""
        with self._lock:
            if self._injected_loop is None:
                self._injected_loop = weakref.ref(loop)
                return
            first = self._injected_loop()
            if first is loop:
                return
            background = self._background.loop if self._background is not None else None
        kind = f"{type(self._injected).__module__.split('.')[0]}.{type(self._injected).__name__}"
        if first is None:
            owner = "an event loop that no longer exists"
        elif first is background:
            owner = "the client's background loop (where the sync judge/rerank run)"
        else:
            owner = f"event loop {first!r}"
        here = (
            "the client's background loop: the sync judge/rerank run there, so use the "
            "async ajudge/arerank with an async client"
            if loop is background else f"event loop {loop!r}"
        )
        raise RuntimeError(
            f"the injected async client ({kind}) belongs to {owner}, where it was first "
            f"used, and cannot be used on {here}; an async HTTP client is bound to one "
            "event loop. Pass a sync client (openai.OpenAI or httpx.Client), which works "
            "from any loop and from the sync methods, or one Rank1Client with its own "
            "async client per event loop"
        )

    def _sdk_client(self) -> AnyOpenAI:
        return self._state().sdk_client

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine from sync code on the client's background loop."""
        with self._lock:
            if self._background is None or not self._background.finalizer.alive:
                self._background = _BackgroundLoop(self)  # first use, or stopped at exit
            background = self._background
        return background.run(coro)

    def _call(self, index: int, query: str, passage: PassageInput,
              instruction: str | None) -> JudgeCall:
        text, title = _passage_fields(index, passage)
        # The model reads f"{title} {text}": the budget covers the title and its space too.
        budget, title_cut = self.max_passage_chars, False
        if title is not None:
            title, title_cut = truncate_passage(title, max_chars=max(budget - 1, 0))
            budget = max(budget - len(title) - 1, 0)
        text, truncated = truncate_passage(text, max_chars=budget)
        truncated = truncated or title_cut
        instruction = self.instruction if instruction is None else instruction
        return JudgeCall(
            index=index, query=query, passage=text, title=title, instruction=instruction,
            prompt=build_prompt(query, text, title=title, instruction=instruction),
            truncated=truncated, max_reasoning_tokens=self.max_reasoning_tokens,
        )

    def _key(self, call: JudgeCall) -> str:
        """The cache key of ``call``: over the endpoint the requests really reach (an
        injected client's), the rules' version and everything else that sets the answer."""
        return cache_key(
            protocol_version=protocol.PROTOCOL_VERSION,
            base_url=self._endpoint, mode=self.mode, model=self.model, prompt=call.prompt,
            max_reasoning_tokens=call.max_reasoning_tokens,
            answer_token_ids=self.answer_token_ids,
            # a text-only verdict must never reach a client that did not opt in to them
            **({"allow_text_only": True} if self.allow_text_only else {}),
        )

    async def _retry(self, step: Callable[[], Awaitable[T]]) -> T:
        """The retry policy, applied by the transports' ``Sdk`` to each HTTP step."""
        return await with_retries(step, self.max_retries, backoff=self.retry_backoff)

    async def _with_retries(self, index: int, fn: Callable[[], Coroutine[Any, Any, T]]) -> T:
        """Run a judgment whose HTTP steps retry on their own (see :meth:`_retry`; the
        judgment as a whole is not tried again); a failure becomes a
        :class:`JudgmentError` naming passage ``index``."""
        try:
            return await fn()
        except JudgmentError:
            raise
        except Exception as exc:
            raise JudgmentError(index, f"{type(exc).__name__}: {exc}") from exc

    def _cached(self, call: JudgeCall, key: str) -> Judgment | None:
        """The judgment cached under ``key`` (``call``'s), given ``call``'s index.

        ``truncated`` is ``call``'s own cut or the one the cached judgment records (the
        same prompt reaches the server, so a cut the server made is made again).
        """
        hit = self.cache.get(key) if self.cache is not None else None
        if hit is None:
            return None
        return hit.model_copy(
            update={"index": call.index, "truncated": call.truncated or hit.truncated}
        )

    async def _judge_call(self, call: JudgeCall) -> Judgment:
        if (bad := _unencodable(call)) is not None:
            raise bad
        key = self._key(call) if self.cache is not None else ""
        if (hit := self._cached(call, key)) is not None:
            return hit
        async with self._state().semaphore:
            judgment = await self._with_retries(call.index, lambda: self._judge_fitted(call))
        if self.cache is not None:
            self.cache.put(key, judgment)
        return judgment

    async def _judge_fitted(self, call: JudgeCall) -> Judgment:
        """One try: fit ``call`` to what the server says about itself (its answer token
        ids, its context), then judge it."""
        probe = self._server_probe
        if probe is not None:
            info = await probe.info()
            transport = self.transport
            if (
                self.answer_token_ids is None
                and info.answer_token_ids is not None
                and isinstance(transport, CompletionsTransport)
            ):
                transport.answer_token_ids = info.answer_token_ids
            if info.llama_server and isinstance(transport, CompletionsTransport):
                transport.stream = True  # one request per judgment, not a repeat
            budget = await probe.fit(call.prompt, call.max_reasoning_tokens, info)
            if budget != call.max_reasoning_tokens:
                call = replace(call, max_reasoning_tokens=budget)
        return await self.transport.judge(call)

    async def _judge_batch(self, calls: list[JudgeCall]) -> list[Judgment | JudgmentError]:
        """All calls in one request (``/v1/rerank``); cached ones are not sent."""
        assert isinstance(self.transport, BatchTransport)
        results: list[Judgment | JudgmentError | None] = [None] * len(calls)
        todo: list[int] = []
        keys = [""] * len(calls)
        for i, call in enumerate(calls):
            if (bad := _unencodable(call)) is not None:
                results[i] = bad  # that passage fails; the others go in the request
                continue
            if self.cache is not None:
                keys[i] = self._key(call)
            results[i] = self._cached(call, keys[i])
            if results[i] is None:
                todo.append(i)
        if todo:
            batch = [calls[i] for i in todo]
            async with self._state().semaphore:
                try:
                    judged = await self._with_retries(
                        batch[0].index, lambda: self.transport.judge_batch(batch)  # type: ignore[attr-defined]
                    )
                except JudgmentError as exc:
                    judged = [JudgmentError(c.index, str(exc.__cause__ or exc)) for c in batch]
            for i, judgment in zip(todo, judged, strict=True):
                results[i] = judgment
                if isinstance(judgment, Judgment) and self.cache is not None:
                    self.cache.put(keys[i], judgment)
        return results  # type: ignore[return-value]

    # ------------------------------------------------------------------ public API

    async def ajudge(
        self, query: str, passage: PassageInput, *, title: str | None = None,
        instruction: str | None = None,
    ) -> Judgment:
        """Judge one pair. Raises :class:`JudgmentError` when it fails after retries."""
        _check_query(query)
        if title is not None:
            passage = {"text": _passage_fields(0, passage)[0], "title": title}
        call = self._call(0, query, passage, instruction)
        self._state()  # an injected async client on a foreign loop fails here, clearly
        return await self._judge_call(call)

    def judge(
        self, query: str, passage: PassageInput, *, title: str | None = None,
        instruction: str | None = None,
    ) -> Judgment:
        """Sync twin of :meth:`ajudge`."""
        return self._run(self.ajudge(query, passage, title=title, instruction=instruction))

    async def arerank(
        self,
        query: str,
        passages: Sequence[PassageInput],
        *,
        on_error: OnError | None = None,
        instruction: str | None = None,
        on_judgment: Callable[[Judgment], None] | None = None,
    ) -> list[Judgment]:
        """Judge every passage concurrently; judgments come back in input order.

        ``on_judgment`` is called with each judgment (failed ones under ``"keep"``
        included) as it completes, e.g. to drive a progress bar.
        """
        _check_query(query)
        policy = on_error or self.on_error
        if policy not in _ON_ERROR:
            raise ValueError(f"on_error must be one of {_ON_ERROR}, got {policy!r}")
        if isinstance(passages, (str, bytes)) or not isinstance(passages, Sequence):
            raise TypeError(
                f"passages must be a sequence of strings or mappings, got {type(passages).__name__}"
            )
        calls = [self._call(i, query, p, instruction) for i, p in enumerate(passages)]
        if not calls:
            return []
        self._state()  # an injected async client on a foreign loop fails here, clearly
        if isinstance(self.transport, BatchTransport):
            outcomes = await self._judge_batch(calls)
            if on_judgment is not None:
                for outcome in outcomes:
                    if isinstance(outcome, Judgment):
                        on_judgment(outcome)
        else:
            outcomes = await self._gather(calls, policy, on_judgment)
        return _apply_policy(outcomes, policy, on_judgment)

    def rerank(
        self,
        query: str,
        passages: Sequence[PassageInput],
        *,
        on_error: OnError | None = None,
        instruction: str | None = None,
        on_judgment: Callable[[Judgment], None] | None = None,
    ) -> list[Judgment]:
        """Sync twin of :meth:`arerank` (still concurrent: it runs on a background loop)."""
        return self._run(self.arerank(
            query, passages, on_error=on_error, instruction=instruction, on_judgment=on_judgment
        ))

    async def _gather(
        self, calls: list[JudgeCall], policy: OnError,
        on_judgment: Callable[[Judgment], None] | None,
    ) -> list[Judgment | JudgmentError]:
        async def one(call: JudgeCall) -> Judgment | JudgmentError:
            try:
                judgment = await self._judge_call(call)
            except JudgmentError as exc:
                if policy == "raise":
                    raise
                return exc
            if on_judgment is not None:
                on_judgment(judgment)
            return judgment

        tasks = [asyncio.ensure_future(one(call)) for call in calls]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        finally:
            pending = [t for t in tasks if not t.done()]
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)
        failed = [t for t in tasks if not t.cancelled() and t.exception() is not None]
        if failed:  # only under "raise": the first failure in input order
            raise min((t.exception() for t in failed), key=lambda e: getattr(e, "index", 0))  # type: ignore[arg-type, return-value]
        return [t.result() for t in tasks]

    # ------------------------------------------------------------------ lifecycle

    async def aclose(self) -> None:
        """Close the SDK clients this client created on the running loop."""
        state = self._loops.pop(asyncio.get_running_loop(), None)
        if state is not None and state.closer is not None:
            await state.closer.aclose()  # runs the generator's ``finally``: closes the client

    def close(self) -> None:
        """Close the background loop and what it holds.

        Optional for the sync API: a client never closed has its background loop closed
        when it is garbage-collected or at interpreter exit."""
        with self._lock:
            background, self._background = self._background, None
        if background is not None and background.finalizer.alive:
            try:
                background.run(self.aclose())
            finally:
                background.finalizer()  # stops the loop, once
        self._sdk.close()

    def __enter__(self) -> Rank1Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> Rank1Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"Rank1Client(base_url={self.base_url!r}, model={self.model!r}, mode={self.mode!r})"


async def _closing(sdk_client: openai.AsyncOpenAI) -> AsyncIterator[None]:
    try:
        yield
    finally:
        await sdk_client.close()


def _close_at_loop_shutdown(sdk_client: openai.AsyncOpenAI) -> AsyncIterator[None]:
    """Close ``sdk_client`` when its event loop shuts down, even if nobody calls
    :meth:`Rank1Client.aclose` (``asyncio.run`` ends with ``loop.shutdown_asyncgens()``,
    which closes every async generator started on the loop). The generator is started
    here, synchronously, up to its ``yield``; the caller keeps a reference to it, because
    the loop only holds it weakly. Without this, a script that runs ``asyncio.run`` with
    the async API leaves the HTTP session open and aiohttp warns about it at exit."""
    gen = _closing(sdk_client)
    step = gen.asend(None)  # registers the generator with the running loop
    try:
        step.send(None)
    except StopIteration:
        pass  # reached the ``yield``
    return gen


def _default_async_http_client() -> Any:
    """The SDK's aiohttp-backed HTTP client where available: it spends about a third of
    the default client's CPU per request (see ``benchmarks/bench_client.py``)."""
    factory = getattr(openai, "DefaultAioHttpClient", None)
    if factory is None:
        return None
    try:
        return factory()
    except RuntimeError:  # aiohttp not installed
        return None


def _endpoint_of(client: object, base_url: str) -> str:
    """Where requests go: an injected SDK client's own ``base_url`` (it is used as is),
    else ``base_url`` (an injected httpx client is only the SDK's transport: the SDK
    sends it absolute URLs under ``base_url``). No trailing slash, so both spell it alike."""
    if isinstance(client, (openai.AsyncOpenAI, openai.OpenAI)):
        return str(client.base_url).rstrip("/")
    return base_url.rstrip("/")


def _surrogate(text: str) -> UnicodeEncodeError | None:
    """Why ``text`` cannot be sent as UTF-8 (a lone surrogate, e.g. from a JSON ``\\ud800``
    escape or ``errors="surrogateescape"`` decoding), or ``None`` when it can."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return exc
    return None


def _unencodable(call: JudgeCall) -> JudgmentError | None:
    """The failure of a call whose text UTF-8 cannot encode: it can be neither hashed for
    the cache nor sent, and fails alone (the caller's ``on_error`` decides), named."""
    if _surrogate(call.prompt) is None:
        return None
    fields = (("passage", call.passage), ("title", call.title),
              ("instruction", call.instruction), ("query", call.query))
    for name, value in fields:
        if value is not None and (exc := _surrogate(value)) is not None:
            char = exc.object[exc.start:exc.end]
            return JudgmentError(
                call.index,
                f"its {name} holds {char!a} at character {exc.start}, a lone surrogate "
                "that UTF-8 cannot encode, so it cannot be sent",
            )
    return JudgmentError(call.index, "its prompt holds a lone surrogate that UTF-8 cannot encode")


def _check_query(query: object) -> None:
    if not isinstance(query, str):
        raise TypeError(f"query must be a string, got {type(query).__name__}")
    if not query.strip():
        raise ValueError("query must not be empty")
    if (exc := _surrogate(query)) is not None:
        raise ValueError(
            f"query holds {exc.object[exc.start:exc.end]!a} at character {exc.start}, "
            "a lone surrogate that UTF-8 cannot encode"
        )


def _passage_fields(index: int, passage: object) -> tuple[str, str | None]:
    """``(text, title)`` of one input passage; a TypeError names a bad one's index."""
    if isinstance(passage, str):
        return passage, None
    if isinstance(passage, Mapping):
        text, title = passage.get("text"), passage.get("title")
        if not isinstance(text, str):
            raise TypeError(
                f"passage {index}: 'text' must be a string, got {type(text).__name__}"
            )
        if title is not None and not isinstance(title, str):
            raise TypeError(
                f"passage {index}: 'title' must be a string or None, got {type(title).__name__}"
            )
        return text, title
    raise TypeError(
        f"passage {index} must be a string or a mapping with 'text', got {type(passage).__name__}"
    )


def _apply_policy(
    outcomes: Sequence[Judgment | JudgmentError], policy: OnError,
    on_judgment: Callable[[Judgment], None] | None = None,
) -> list[Judgment]:
    """Turn failures into what ``on_error`` asks for; order is kept."""
    out: list[Judgment] = []
    dropped: list[int] = []
    for outcome in outcomes:
        if isinstance(outcome, Judgment):
            out.append(outcome)
            continue
        if policy == "raise":
            raise outcome
        if policy == "drop":
            dropped.append(outcome.index)
            continue
        failed = Judgment(index=outcome.index, relevant=None, score=None, error=str(outcome))
        if on_judgment is not None:
            on_judgment(failed)
        out.append(failed)
    if dropped:
        logger.warning("rank1: dropped %d failed judgment(s), passages %s", len(dropped), dropped)
    return out
