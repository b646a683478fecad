"""The HTTP session of one :class:`~rank1_integrations.Rank1Client`.

It owns what ties requests to event loops and threads, so that the client only judges
and the transports (through their :class:`~.transports.sdk.Sdk`) only ask it for the SDK
client to use now:

* **One async SDK client per event loop** (async HTTP clients are bound to the loop they
  first ran on), created on first use there, with the concurrency bound of that loop (a
  semaphore).
* **Injected clients** are used as they are: an ``openai.OpenAI`` / ``httpx.Client``
  from any loop (its calls run in a pool of worker threads, one per judgment in flight);
  an ``openai.AsyncOpenAI`` / ``httpx.AsyncClient`` only on the loop it was first used
  on, any other raising a RuntimeError that says why.
* **Rate limits per event loop** (``max_requests_per_minute``, ``max_tokens_per_minute``):
  the :class:`~.transports.sdk.Sdk` asks :meth:`HttpSession.acquire` before it sends
  each HTTP request, which waits on the loop's :class:`~._rate_limit.RateBudgets`.
* **The background loop** of the sync API, and closing at exit: the SDK clients the
  session made are closed when their loop shuts down, and the background loop when the
  owner is closed, garbage-collected or the interpreter exits.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import threading
import weakref
from collections.abc import AsyncGenerator, Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
import openai

from ._rate_limit import RateBudgets

__all__ = ["AnyOpenAI", "HttpSession", "InjectedClient"]

AnyOpenAI = openai.AsyncOpenAI | openai.OpenAI
#: What a caller may hand in as the HTTP client.
InjectedClient = AnyOpenAI | httpx.AsyncClient | httpx.Client

T = TypeVar("T")

@dataclass
class _LoopState:
    """What belongs to one event loop: an async SDK client and the concurrency bound."""

    sdk_client: AnyOpenAI
    semaphore: asyncio.Semaphore
    owned: bool
    #: Keeps the loop-shutdown hook of an owned client alive (see _close_at_loop_shutdown).
    closer: Any = None
    #: The budgets of ``max_requests_per_minute`` / ``max_tokens_per_minute``.
    budgets: RateBudgets | None = None


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


class HttpSession:
    """SDK clients per event loop, the concurrency bound per loop, the worker threads of
    a sync client and the background loop of the sync API.

    ``owner`` is the object whose lifetime bounds the background loop (the client): when
    it is garbage-collected, or at interpreter exit, the loop is stopped and what it holds
    closed. ``client`` is an injected HTTP client (see the module's docstring), used as is.
    """

    def __init__(
        self,
        owner: object,
        *,
        base_url: str,
        api_key: str,
        timeout: float,
        concurrency: int,
        client: InjectedClient | None = None,
        max_requests_per_minute: int | None = None,
        max_tokens_per_minute: int | None = None,
    ) -> None:
        self._owner = weakref.ref(owner)
        self.max_requests_per_minute = max_requests_per_minute
        self.max_tokens_per_minute = max_tokens_per_minute
        self.base_url = base_url
        self.api_key = api_key
        self.timeout = timeout
        self.concurrency = concurrency
        self._injected = client
        #: The endpoint the requests reach, for cache keys: an injected SDK client's own.
        self.endpoint = _endpoint_of(client, base_url)
        #: The loop an injected async client was first used on (it is bound to it).
        self._injected_loop: weakref.ref[asyncio.AbstractEventLoop] | None = None
        self._loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopState] = (
            weakref.WeakKeyDictionary()
        )
        self._background: _BackgroundLoop | None = None
        self._lock = threading.Lock()
        self._executor: ThreadPoolExecutor | None = None

    # ------------------------------------------------------------------ per event loop

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
                # openai's stubs name httpx2's client classes; an httpx client is what it
                # takes at run time (tests/client inject them)
                if isinstance(injected, httpx.Client):
                    sdk_client = openai.OpenAI(http_client=injected, **options)  # type: ignore[arg-type]
                    owned = False
                else:
                    sdk_client = openai.AsyncOpenAI(
                        http_client=injected or _default_async_http_client(),  # type: ignore[arg-type]
                        **options,
                    )
                    owned = injected is None
            state = _LoopState(sdk_client, asyncio.Semaphore(self.concurrency), owned)
            state.budgets = RateBudgets(self.max_requests_per_minute, self.max_tokens_per_minute)
            if owned and isinstance(sdk_client, openai.AsyncOpenAI):
                state.closer = _close_at_loop_shutdown(sdk_client)
                background = self._background
                if background is not None and background.loop is loop:
                    background.closers.append(state.closer)
            self._loops[loop] = state
        return state

    def set_concurrency(self, concurrency: int) -> None:
        """A new concurrency bound: each loop's semaphore is replaced (judgments in flight
        release the old one) and the worker pool of a sync client made anew on next use."""
        with self._lock:
            self.concurrency = concurrency
            for state in self._loops.values():
                state.semaphore = asyncio.Semaphore(concurrency)
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False)

    def check_loop(self) -> None:
        """Set up the running loop's state now: an injected async client on a foreign loop
        fails here, clearly, before anything is judged."""
        self._state()

    def sdk_client(self) -> AnyOpenAI:
        """The SDK client to use on the running loop."""
        return self._state().sdk_client

    def semaphore(self) -> asyncio.Semaphore:
        """The running loop's concurrency bound (``concurrency`` judgments in flight)."""
        return self._state().semaphore

    async def acquire(self, tokens: Callable[[], int]) -> None:
        """Wait until the running loop's rate budgets let one more request through (see
        :meth:`~._rate_limit.RateBudgets.acquire`)."""
        budgets = self._state().budgets
        if budgets is not None:
            await budgets.acquire(tokens)

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

    # ------------------------------------------------------------------ threads

    async def in_thread(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """Run a blocking SDK call (of a sync client) in the session's worker pool.

        The pool has ``concurrency`` threads: asyncio's default pool has only
        ``min(32, cpus + 4)``, which would cap the requests in flight below the configured
        concurrency on small machines.
        """
        with self._lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(
                    self.concurrency, thread_name_prefix="rank1-sdk"
                )
            executor = self._executor
        call = functools.partial(contextvars.copy_context().run, fn, *args, **kwargs)
        return await asyncio.get_running_loop().run_in_executor(executor, call)

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine from sync code on the session's background loop."""
        with self._lock:
            if self._background is None or not self._background.finalizer.alive:
                owner = self._owner()
                # first use, or stopped at exit; bound to the owner's lifetime
                self._background = _BackgroundLoop(owner if owner is not None else self)
            background = self._background
        return background.run(coro)

    # ------------------------------------------------------------------ lifecycle

    async def aclose(self) -> None:
        """Close the SDK clients this session created on the running loop."""
        state = self._loops.pop(asyncio.get_running_loop(), None)
        if state is not None and state.closer is not None:
            await state.closer.aclose()  # runs the generator's ``finally``: closes the client

    def close(self) -> None:
        """Close the background loop and what it holds, and let the worker threads go
        (they finish what they are doing first)."""
        with self._lock:
            background, self._background = self._background, None
        try:
            if background is not None and background.finalizer.alive:
                try:
                    background.run(self.aclose())
                finally:
                    background.finalizer()  # stops the loop, once
        finally:
            with self._lock:
                executor, self._executor = self._executor, None
            if executor is not None:
                executor.shutdown(wait=False)


async def _closing(sdk_client: openai.AsyncOpenAI) -> AsyncGenerator[None, None]:
    try:
        yield
    finally:
        await sdk_client.close()


def _close_at_loop_shutdown(sdk_client: openai.AsyncOpenAI) -> AsyncGenerator[None, None]:
    """Close ``sdk_client`` when its event loop shuts down, even if nobody calls
    :meth:`HttpSession.aclose` (``asyncio.run`` ends with ``loop.shutdown_asyncgens()``,
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
