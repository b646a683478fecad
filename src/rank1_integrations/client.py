"""``Rank1Client``: rank1 against any OpenAI-compatible server, with retries, bounded
concurrency and a judgment cache.

Usage::

    from rank1_integrations import Rank1Client

    client = Rank1Client(base_url="http://127.0.0.1:8000/v1", model="jhu-clsp/rank1-7b")
    judgments = client.rerank("what causes tides?", ["The Moon's gravity ...", "Tidal ..."])
    best = judgments[0]                        # best first; best.index: its input position
    in_order = client.judge_all(query, passages)   # the same judgments in input order

    # or, inside an event loop
    judgments = await client.arerank(query, passages)

    # within a budget: what is not judged in 5 s comes back unjudged (no score, ``state``)
    judgments = client.rerank(query, passages, deadline=5.0, stop_after_relevant=3)
    async for judgment in client.arerank_iter(query, passages):   # as they complete
        ...
    per_query = client.rerank_many([(query, passages), (other_query, other_passages)])

The client is a facade: the settings are :class:`~.settings.ClientSettings`, a call's
input and options one :class:`~._inputs.CallInput`, judging one unit (cache, fitting,
retries, the concurrency slot) :class:`~._judging.Judging`, the scheduling of a call
(deadlines, early exit, cancellation) :class:`~._scheduler.Scheduler`, the HTTP side
:class:`~._session.HttpSession`, the spans :mod:`.telemetry`.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, Awaitable, Callable, Coroutine, Sequence
from typing import Any, Generic, TypeVar, overload

from typing_extensions import Unpack

from . import telemetry
from ._inputs import (
    RELEVANT_THRESHOLD,
    CallInput,
    CallOptions,
    OnDeadline,
    PassageInput,
    passage_of,
)
from ._judging import Judging
from ._retry import with_retries
from ._scheduler import Job, Scheduler
from ._session import HttpSession, InjectedClient
from .cache import JudgmentCache, MemoryCache
from .errors import JudgmentError
from .judgment import Judgment
from .passage import Passage
from .ranking import rank_order
from .settings import (
    DEFAULT_BASE_URL,
    DEFAULT_MODEL,
    DEFAULTS,
    ClientSettings,
    Mode,
    OnError,
    TwoStep,
)
from .transports import ChatTransport, CompletionsTransport, RerankTransport, Transport
from .transports.sdk import Sdk

__all__ = [
    "Rank1Client", "Mode", "OnDeadline", "OnError", "PassageInput", "DEFAULT_BASE_URL",
    "DEFAULT_MODEL", "RELEVANT_THRESHOLD",
]

T = TypeVar("T")
V = TypeVar("V")

#: Settings a client reads at each call, so they may change on a live client; the rest
#: (where and how it connects) are fixed when it is made.
_LIVE = frozenset({
    "instruction", "max_reasoning_tokens", "concurrency", "max_retries", "on_error",
    "max_passage_chars", "retry_backoff",
})


def _score(judgment: Judgment) -> float | None:
    return judgment.score


class _Setting(Generic[V]):
    """A client attribute that is its setting in ``client.settings`` (validated on set)."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, obj: None, owner: type) -> _Setting[V]: ...
    @overload
    def __get__(self, obj: Rank1Client, owner: type) -> V: ...
    def __get__(self, obj: Rank1Client | None, owner: type) -> V | _Setting[V]:
        if obj is None:
            return self
        value: V = getattr(obj.settings, self.name)
        return value

    def __set__(self, obj: Rank1Client, value: V) -> None:
        obj._update(self.name, value)


class Rank1Client:
    """Judge (query, passage) pairs with rank1 on an OpenAI-compatible server.

    Every setting is a field of :class:`~rank1_integrations.settings.ClientSettings`
    (its description, default and check; the README's settings table), held validated
    in ``client.settings`` and readable as ``client.<name>``; ``base_url``, ``api_key``
    and ``model`` come from ``RANK1_BASE_URL``, ``RANK1_API_KEY``, ``RANK1_MODEL`` when
    not given. Those read at each call (``concurrency``, ``instruction``,
    ``max_reasoning_tokens``, ``max_retries``, ``retry_backoff``, ``on_error``,
    ``max_passage_chars``) may be set on a live client; the rest are fixed when it is made.

    Besides the settings:

        cache: ``True`` for an in-memory LRU cache (the default), ``None``/``False`` for
            none, or any :class:`~rank1_integrations.cache.JudgmentCache`.
        client: an ``openai.AsyncOpenAI`` / ``openai.OpenAI`` to use as is, or an
            ``httpx.AsyncClient`` / ``httpx.Client`` to build one on.

    A client pickles (e.g. inside a LangChain reranker, after use): its settings travel;
    its HTTP session, event loops and in-memory cache do not (the copy makes new ones,
    lazily); nor does its API key, which is never written out: the copy takes
    ``RANK1_API_KEY`` (or ``"EMPTY"``), so set that variable where it is unpickled. A
    client on an injected HTTP client (``client=``) does not pickle (TypeError).
    """

    base_url = _Setting[str]()
    api_key = _Setting[str]()
    model = _Setting[str]()
    mode = _Setting[Mode]()
    max_reasoning_tokens = _Setting[int]()
    instruction = _Setting[str | None]()
    concurrency = _Setting[int]()
    timeout = _Setting[float]()
    max_retries = _Setting[int]()
    on_error = _Setting[OnError]()
    max_passage_chars = _Setting[int]()
    answer_token_ids = _Setting[tuple[int, int] | None]()
    retry_backoff = _Setting[float]()
    allow_text_only = _Setting[bool]()
    two_step = _Setting[TwoStep]()
    max_requests_per_minute = _Setting[int | None]()
    max_tokens_per_minute = _Setting[int | None]()

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        model: str | None = None,
        *,
        mode: Mode = DEFAULTS.mode,
        max_reasoning_tokens: int = DEFAULTS.max_reasoning_tokens,
        instruction: str | None = DEFAULTS.instruction,
        concurrency: int = DEFAULTS.concurrency,
        timeout: float = DEFAULTS.timeout,
        max_retries: int = DEFAULTS.max_retries,
        on_error: OnError = DEFAULTS.on_error,
        cache: bool | JudgmentCache | None = True,
        max_passage_chars: int = DEFAULTS.max_passage_chars,
        answer_token_ids: tuple[int, int] | None = DEFAULTS.answer_token_ids,
        client: InjectedClient | None = None,
        retry_backoff: float = DEFAULTS.retry_backoff,
        allow_text_only: bool = DEFAULTS.allow_text_only,
        two_step: TwoStep = DEFAULTS.two_step,
        max_requests_per_minute: int | None = DEFAULTS.max_requests_per_minute,
        max_tokens_per_minute: int | None = DEFAULTS.max_tokens_per_minute,
    ) -> None:
        #: The settings in use (validated, the environment's applied).
        self.settings = ClientSettings.model_validate(dict(
            base_url=base_url, api_key=api_key, model=model, mode=mode,
            max_reasoning_tokens=max_reasoning_tokens, instruction=instruction,
            concurrency=concurrency, timeout=timeout, max_retries=max_retries,
            on_error=on_error, max_passage_chars=max_passage_chars,
            answer_token_ids=answer_token_ids, retry_backoff=retry_backoff,
            allow_text_only=allow_text_only, two_step=two_step,
            max_requests_per_minute=max_requests_per_minute,
            max_tokens_per_minute=max_tokens_per_minute,
        ))
        settings = self.settings
        if cache is True:
            cache = MemoryCache()
        #: SDK clients per event loop, the concurrency bound, the sync API's loop.
        self._session = HttpSession(
            self, base_url=settings.base_url, api_key=settings.api_key,
            timeout=settings.timeout, concurrency=settings.concurrency, client=client,
            max_requests_per_minute=settings.max_requests_per_minute,
            max_tokens_per_minute=settings.max_tokens_per_minute,
        )
        self._sdk = Sdk(self._session, retry=self._retry)
        # not ``cache or None``: an empty MemoryCache has len() 0, so it is falsy
        self._judging = Judging(
            settings, self._session, self._make_transport(self._sdk),
            None if cache is None or cache is False else cache,
        )
        #: Schedules this client's calls (used by ``rank1 eval``'s runner too).
        self.scheduler = Scheduler(self._judging)

    # ------------------------------------------------------------------ plumbing

    def _make_transport(self, sdk: Sdk) -> Transport:
        settings = self.settings
        if settings.mode == "completions":
            return CompletionsTransport(
                sdk, settings.model, answer_token_ids=settings.answer_token_ids,
                allow_text_only=settings.allow_text_only, two_step=settings.two_step,
            )
        if settings.mode == "chat":
            return ChatTransport(sdk, settings.model)
        return RerankTransport(sdk, settings.model)

    def _update(self, name: str, value: Any) -> None:
        """Set setting ``name`` on this live client (validated), or say why it cannot."""
        if name not in _LIVE:
            raise AttributeError(
                f"{name} is fixed when a Rank1Client is made; make a new one: "
                f"Rank1Client(**{{**client.settings.model_dump(), {name!r}: ...}})"
            )
        self.settings = ClientSettings.model_validate(
            {**self.settings.model_dump(), name: value}
        )
        self._judging.settings = self.settings
        if name == "concurrency":
            self._session.set_concurrency(self.settings.concurrency)

    @property
    def transport(self) -> Transport:
        """The transport judging goes through (one API shape, see :mod:`.transports`)."""
        return self._judging.transport

    @transport.setter
    def transport(self, transport: Transport) -> None:
        self._judging.transport = transport

    @property
    def cache(self) -> JudgmentCache | None:
        """The judgment cache, or ``None``."""
        return self._judging.cache

    @property
    def span_endpoint(self) -> telemetry.Endpoint:
        """What this client's spans say about where calls go."""
        return telemetry.Endpoint(self.settings.base_url, self.settings.model,
                                  self.settings.mode)

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine from sync code on the session's background loop."""
        return self._session.run(coro)

    async def _retry(self, step: Callable[[], Awaitable[T]]) -> T:
        """The retry policy, applied by the transports' ``Sdk`` to each HTTP step."""
        settings = self.settings
        return await with_retries(step, settings.max_retries, backoff=settings.retry_backoff)

    def _plan(self, call: CallInput, *, early: bool) -> tuple[list[Job], OnError]:
        """``call``'s jobs and error policy; ``early``: the caller acts on each verdict
        as it lands (then rank1-server's ``/rerank`` is streamed)."""
        return self.scheduler.plan(call, early=early), call.on_error or self.settings.on_error

    # ------------------------------------------------------------------ public API

    async def ajudge(
        self, query: str, passage: PassageInput, *, title: str | None = None,
        instruction: str | None = None, max_reasoning_tokens: int | None = None,
    ) -> Judgment:
        """Judge one pair. Raises :class:`JudgmentError` when it fails after retries.

        ``instruction`` and ``max_reasoning_tokens`` override the client's for this call."""
        if title is not None:
            passage = Passage(passage_of(0, passage).text, title)
        call = CallInput.of([(query, [passage])], instruction=instruction,
                            max_reasoning_tokens=max_reasoning_tokens)
        (job,) = self.scheduler.plan(call)
        self._session.check_loop()  # an injected async client on a foreign loop fails here
        endpoint = self.span_endpoint
        with telemetry.rerank_span(endpoint, 1, name=telemetry.JUDGE_SPAN_NAME) as record:
            (outcome,) = await self._judging.unit(job.calls, shared=False)
            record.record([outcome])
            if isinstance(outcome, JudgmentError):
                raise outcome  # the span records it
        return outcome

    def judge(
        self, query: str, passage: PassageInput, *, title: str | None = None,
        instruction: str | None = None, max_reasoning_tokens: int | None = None,
    ) -> Judgment:
        """Sync twin of :meth:`ajudge`."""
        return self._run(self.ajudge(
            query, passage, title=title, instruction=instruction,
            max_reasoning_tokens=max_reasoning_tokens,
        ))

    async def arerank(
        self, query: str, passages: Sequence[PassageInput], *,
        on_judgment: Callable[[Judgment], None] | None = None, **options: Unpack[CallOptions],
    ) -> list[Judgment]:
        """:meth:`ajudge_all`'s judgments best first, as a reranker's ``rerank`` returns
        them: by score descending, ties in input order, passages without a score (failed,
        or left unjudged by a budget) last in input order (:func:`~.ranking.rank_order`);
        each judgment's ``index`` is its passage's position in ``passages``::

            best = (await client.arerank(query, passages))[0]
            passages[best.index]
        """
        judged = await self.ajudge_all(query, passages, on_judgment=on_judgment, **options)
        return rank_order(judged, _score)

    def rerank(
        self, query: str, passages: Sequence[PassageInput], *,
        on_judgment: Callable[[Judgment], None] | None = None, **options: Unpack[CallOptions],
    ) -> list[Judgment]:
        """Sync twin of :meth:`arerank`: judgments best first (still concurrent: it runs
        on a background loop)."""
        return self._run(self.arerank(query, passages, on_judgment=on_judgment, **options))

    async def ajudge_all(
        self, query: str, passages: Sequence[PassageInput], *,
        on_judgment: Callable[[Judgment], None] | None = None, **options: Unpack[CallOptions],
    ) -> list[Judgment]:
        """Judge every passage concurrently; judgments come back in input order
        (:meth:`arerank` gives them best first).

        ``on_judgment`` is called with each judgment as it completes (failed ones under
        ``"keep"`` and passages left unjudged included), e.g. to drive a progress bar;
        with ``mode="rerank"`` as each verdict arrives on rank1-server's stream.
        ``options`` (:class:`~._inputs.CallOptions`): ``on_error``, and ``instruction``
        and ``max_reasoning_tokens`` for this call (``None``: the client's), and budgets
        (see the README's "Interactive budgets"):

        * ``deadline``: seconds for the whole call. When they pass, the requests in flight
          are cancelled and every passage not judged by then comes back in its place with
          no score and ``state`` ``DEADLINE`` (``on_deadline="fallback"``), or
          :class:`~rank1_integrations.errors.DeadlineExceeded` is raised (``"raise"``).
          No retry sleeps past it.
        * ``stop_after_relevant``: once that many judgments have ``score >=
          relevant_threshold``, nothing new starts and what is in flight is cancelled;
          the rest comes back unjudged (``state`` ``STOPPED_EARLY``). Passages start in
          input (first-stage) order.

        Passages left unjudged are kept whatever ``on_error`` says: they did not fail.
        """
        call = CallInput.of([(query, passages)], **options)
        jobs, policy = self._plan(call, early=on_judgment is not None)
        if not jobs[0].calls:
            return []
        out: list[Judgment] = []
        with telemetry.rerank_span(self.span_endpoint, len(jobs[0].calls)) as record:
            jobs[0].record = record
            judgments = self.scheduler.judgments(jobs, call, policy, single=True)
            async with contextlib.aclosing(judgments):
                async for _, judgment in judgments:
                    out.append(judgment)
                    if on_judgment is not None:
                        on_judgment(judgment)
        out.sort(key=lambda j: j.index)
        return out

    def judge_all(
        self, query: str, passages: Sequence[PassageInput], *,
        on_judgment: Callable[[Judgment], None] | None = None, **options: Unpack[CallOptions],
    ) -> list[Judgment]:
        """Sync twin of :meth:`ajudge_all`: judgments in input order."""
        return self._run(self.ajudge_all(query, passages, on_judgment=on_judgment, **options))

    async def arerank_iter(
        self, query: str, passages: Sequence[PassageInput], **options: Unpack[CallOptions],
    ) -> AsyncGenerator[Judgment, None]:
        """:meth:`ajudge_all`, one judgment at a time as each completes (``index`` says
        which passage); passages left unjudged by a budget come last, in input order.

        Under ``"raise"`` the first failure raises from the iterator, under ``"keep"`` it
        is yielded (no score, ``error``), under ``"drop"`` skipped. Leaving the loop early
        cancels what is still in flight (at once with ``contextlib.aclosing``). With
        ``mode="rerank"`` (rank1-server) the call is one streamed request: each judgment
        is yielded as the server's ``result`` event for it arrives, and closing the
        stream frees the server's slots::

            async for judgment in client.arerank_iter(query, passages):
                print(judgment.index, judgment.score)
        """
        call = CallInput.of([(query, passages)], **options)
        jobs, policy = self._plan(call, early=True)
        if not jobs[0].calls:
            return
        # not current: a generator must not leave its span on its consumer's context
        with telemetry.rerank_span(self.span_endpoint, len(jobs[0].calls),
                                   current=False) as record:
            jobs[0].record = record
            judgments = self.scheduler.judgments(jobs, call, policy, single=True)
            async with contextlib.aclosing(judgments):
                async for _, judgment in judgments:
                    yield judgment

    async def arerank_many(
        self, requests: Sequence[tuple[str, Sequence[PassageInput]]], *,
        on_judgment: Callable[[int, Judgment], None] | None = None,
        **options: Unpack[CallOptions],
    ) -> list[list[Judgment]]:
        """:meth:`ajudge_many`, each query's judgments best first (as :meth:`arerank`)."""
        per_query = await self.ajudge_many(requests, on_judgment=on_judgment, **options)
        return [rank_order(judged, _score) for judged in per_query]

    def rerank_many(
        self, requests: Sequence[tuple[str, Sequence[PassageInput]]], *,
        on_judgment: Callable[[int, Judgment], None] | None = None,
        **options: Unpack[CallOptions],
    ) -> list[list[Judgment]]:
        """Sync twin of :meth:`arerank_many`: each query's judgments best first."""
        return self._run(self.arerank_many(requests, on_judgment=on_judgment, **options))

    async def ajudge_many(
        self, requests: Sequence[tuple[str, Sequence[PassageInput]]], *,
        on_judgment: Callable[[int, Judgment], None] | None = None,
        **options: Unpack[CallOptions],
    ) -> list[list[Judgment]]:
        """Judge many ``(query, passages)`` at once under one concurrency bound: the
        next query's passages start while the last of the previous one are still
        reasoning. One list of judgments per query, in input order, each as
        :meth:`ajudge_all` would return it (same options, same error policy).

        ``deadline`` is for the whole call; ``stop_after_relevant`` applies per query.
        ``on_judgment(query_position, judgment)`` sees each judgment as it completes.
        One span ``rank1.rerank_many`` per call, with a child ``rank1.rerank`` per query.
        """
        call = CallInput.of(requests, **options)
        jobs, policy = self._plan(call, early=on_judgment is not None)
        out: list[list[Judgment]] = [[] for _ in jobs]
        if not any(job.calls for job in jobs):
            return out
        endpoint = self.span_endpoint
        sizes = [len(job.calls) for job in jobs]
        with telemetry.rerank_span(endpoint, sum(sizes), name=telemetry.MANY_SPAN_NAME) as parent:
            for job, record in zip(jobs, telemetry.child_records(parent, endpoint, sizes),
                                   strict=True):
                job.record = record
            judgments = self.scheduler.judgments(jobs, call, policy)
            async with contextlib.aclosing(judgments):
                async for number, judgment in judgments:
                    out[number].append(judgment)
                    if on_judgment is not None:
                        on_judgment(number, judgment)
            parent.record([j for judged in out for j in judged])
        for judged in out:
            judged.sort(key=lambda j: j.index)
        return out

    def judge_many(
        self, requests: Sequence[tuple[str, Sequence[PassageInput]]], *,
        on_judgment: Callable[[int, Judgment], None] | None = None,
        **options: Unpack[CallOptions],
    ) -> list[list[Judgment]]:
        """Sync twin of :meth:`ajudge_many`: each query's judgments in input order."""
        return self._run(self.ajudge_many(requests, on_judgment=on_judgment, **options))

    # ------------------------------------------------------------------ lifecycle

    async def aclose(self) -> None:
        """Close the SDK clients this client created on the running loop."""
        await self._session.aclose()

    def close(self) -> None:
        """Close the background loop and what it holds.

        Optional for the sync API: a client never closed has its background loop closed
        when it is garbage-collected or at interpreter exit."""
        self._session.close()

    def __enter__(self) -> Rank1Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> Rank1Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __getstate__(self) -> dict[str, Any]:
        """What a pickle holds: the settings in use, without the API key (see the class
        docstring), and the cache unless it is the in-memory one (a new one replaces it)."""
        if self._session._injected is not None:
            raise TypeError(
                "a Rank1Client built on an injected HTTP client (client=...) cannot be "
                "pickled: the HTTP client is the caller's; pickle one built from its settings"
            )
        settings = self.settings.model_dump(exclude={"api_key"})
        cache: Any = self.cache
        if isinstance(cache, MemoryCache):  # holds a lock; the copy starts empty
            return {"settings": settings, "memory_cache": cache.maxsize}
        return {"settings": settings, "cache": cache}

    def __deepcopy__(self, memo: dict[int, Any]) -> Rank1Client:
        """A copy in this process (e.g. a framework's deep copy of a reranker): like the
        pickle's, with new session, loops and in-memory cache, but the API key kept (it is
        not written out)."""
        state = self.__getstate__()
        state["settings"]["api_key"] = self.api_key
        copy = type(self).__new__(type(self))
        copy.__setstate__(state)
        memo[id(self)] = copy
        return copy

    def __copy__(self) -> Rank1Client:
        return self.__deepcopy__({})

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Rebuild from :meth:`__getstate__`'s settings: new session, loops and cache;
        the API key from ``RANK1_API_KEY``."""
        cache = (
            MemoryCache(state["memory_cache"]) if "memory_cache" in state else state["cache"]
        )
        self.__init__(**state["settings"], cache=cache)  # type: ignore[misc]  # re-init: rebuild in place

    def __repr__(self) -> str:
        return f"Rank1Client(base_url={self.base_url!r}, model={self.model!r}, mode={self.mode!r})"
