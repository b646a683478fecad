"""``Rank1Client``: rank1 against any OpenAI-compatible server, with retries, bounded
concurrency and a judgment cache.

Usage::

    from rank1_integrations import Rank1Client

    client = Rank1Client(base_url="http://127.0.0.1:8000/v1", model="jhu-clsp/rank1-7b")
    judgments = client.rerank("what causes tides?", ["The Moon's gravity ...", "Tidal ..."])
    best = max(judgments, key=lambda j: j.score)

    # or, inside an event loop
    judgments = await client.arerank(query, passages)

    # within a budget: what is not judged in 5 s comes back unjudged (no score, ``error``)
    judgments = client.rerank(query, passages, deadline=5.0, stop_after_relevant=3)
    async for judgment in client.arerank_iter(query, passages):   # as they complete
        ...
    per_query = client.rerank_many([(query, passages), (other_query, other_passages)])
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal, TypeVar, get_args

from . import protocol, telemetry
from .cache import JudgmentCache, MemoryCache, cache_key
from .errors import DeadlineExceeded, JudgmentError
from .judgment import Judgment
from .passage import Passage
from .protocol import build_prompt, fit_passage
from .retry import deadline_scope, with_retries
from .session import HttpSession, InjectedClient
from .settings import DEFAULT_BASE_URL, DEFAULT_MODEL, DEFAULTS, ClientSettings, Mode, OnError
from .settings import from_environment as _from_environment
from .transports import (
    ChatTransport,
    CompletionsTransport,
    JudgeCall,
    RerankTransport,
    Transport,
)
from .transports.sdk import Sdk
from .transports.server_info import ServerProbe

__all__ = [
    "Rank1Client", "Mode", "OnDeadline", "OnError", "PassageInput", "DEFAULT_BASE_URL",
    "DEFAULT_MODEL", "RELEVANT_THRESHOLD",
]

logger = logging.getLogger("rank1_integrations")

#: A passage: its text, a :class:`~rank1_integrations.Passage`, or a mapping with
#: ``"text"`` and optionally ``"title"``.
PassageInput = str | Passage | Mapping[str, Any]

#: What a call does when its ``deadline`` passes: return the unjudged passages marked
#: (``"fallback"``) or raise :class:`~rank1_integrations.errors.DeadlineExceeded`.
OnDeadline = Literal["fallback", "raise"]

#: The score from which a judgment counts as relevant for ``stop_after_relevant`` when no
#: other threshold is given (rank1's own verdict, ``protocol.is_relevant``).
RELEVANT_THRESHOLD = 0.5

_MODES: tuple[str, ...] = get_args(Mode)
_ON_ERROR: tuple[str, ...] = get_args(OnError)
_ON_DEADLINE: tuple[str, ...] = get_args(OnDeadline)

T = TypeVar("T")


class Rank1Client:
    """Judge (query, passage) pairs with rank1 on an OpenAI-compatible server.

    Every setting can come from the environment: ``RANK1_BASE_URL``, ``RANK1_API_KEY``,
    ``RANK1_MODEL``. See the README's settings table for the rest; their defaults are
    :class:`~rank1_integrations.settings.ClientSettings`', and ``settings`` holds the
    ones in use. The HTTP side (SDK clients per event loop, the concurrency bound, the
    sync API's background loop) is the client's :class:`~.session.HttpSession`.

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
        max_requests_per_minute: a hosted endpoint's request rate limit: each HTTP
            request (retries included) waits until it fits, instead of drawing a 429.
            At most this many go out in any 60 seconds, evenly spread (per event loop).
        max_tokens_per_minute: the same for tokens, each request counted at an upper
            bound of what it may cost (its JSON body's UTF-8 bytes plus its
            ``max_tokens``, see :func:`~.transports.sdk.token_estimate`); one request
            may take at most half of it.

    A client pickles (e.g. inside a LangChain reranker, after use): its settings travel;
    its HTTP session, event loops and in-memory cache do not (the copy makes new ones,
    lazily); nor does its API key, which is never written out: the copy takes
    ``RANK1_API_KEY`` (or ``"EMPTY"``), so set that variable where it is unpickled. A
    client on an injected HTTP client (``client=``) does not pickle (TypeError).
    """

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
        max_requests_per_minute: int | None = DEFAULTS.max_requests_per_minute,
        max_tokens_per_minute: int | None = DEFAULTS.max_tokens_per_minute,
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
        for name, limit in (("max_requests_per_minute", max_requests_per_minute),
                            ("max_tokens_per_minute", max_tokens_per_minute)):
            if limit is not None and (
                not isinstance(limit, int) or isinstance(limit, bool) or limit < 1
            ):
                raise ValueError(f"{name} must be a positive integer or None, got {limit!r}")
        #: The settings in use (checked above, the environment's applied); as given,
        #: not validated again.
        self.settings = ClientSettings.model_construct(
            base_url=_from_environment("base_url", base_url),
            api_key=_from_environment("api_key", api_key),
            model=_from_environment("model", model),
            mode=mode, max_reasoning_tokens=max_reasoning_tokens, instruction=instruction,
            concurrency=concurrency, timeout=timeout, max_retries=max_retries,
            on_error=on_error, max_passage_chars=max_passage_chars,
            answer_token_ids=answer_token_ids, retry_backoff=retry_backoff,
            allow_text_only=allow_text_only, max_requests_per_minute=max_requests_per_minute,
            max_tokens_per_minute=max_tokens_per_minute,
        )
        self.base_url = self.settings.base_url
        self.api_key = self.settings.api_key
        self.model = self.settings.model
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
        self.max_requests_per_minute = max_requests_per_minute
        self.max_tokens_per_minute = max_tokens_per_minute
        if cache is True:
            cache = MemoryCache()
        # not ``cache or None``: an empty MemoryCache has len() 0, so it is falsy
        self.cache: JudgmentCache | None = None if cache is None or cache is False else cache
        #: SDK clients per event loop, the concurrency bound, the sync API's loop.
        self._session = HttpSession(
            self, base_url=self.base_url, api_key=self.api_key, timeout=timeout,
            concurrency=concurrency, client=client,
            max_requests_per_minute=max_requests_per_minute,
            max_tokens_per_minute=max_tokens_per_minute,
        )
        self._sdk = Sdk(self._session, retry=self._retry)
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

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine from sync code on the session's background loop."""
        return self._session.run(coro)

    def _call(self, index: int, query: str, passage: PassageInput,
              instruction: str | None, max_reasoning_tokens: int | None = None) -> JudgeCall:
        fitted, truncated = fit_passage(
            _passage_of(index, passage), max_chars=self.max_passage_chars
        )
        text, title = fitted.text, fitted.title
        instruction = self.instruction if instruction is None else instruction
        return JudgeCall(
            index=index, query=query, passage=text, title=title, instruction=instruction,
            prompt=build_prompt(query, text, title=title, instruction=instruction),
            truncated=truncated,
            max_reasoning_tokens=(
                self.max_reasoning_tokens if max_reasoning_tokens is None
                else max_reasoning_tokens
            ),
        )

    def _key(self, call: JudgeCall) -> str:
        """The cache key of ``call``: over the endpoint the requests really reach (an
        injected client's), the rules' version and everything else that sets the answer."""
        return cache_key(
            protocol_version=protocol.PROTOCOL_VERSION,
            base_url=self._session.endpoint, mode=self.mode, model=self.model,
            prompt=call.prompt, max_reasoning_tokens=call.max_reasoning_tokens,
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
        return hit.model_copy(update={  # a hit sends nothing: requests=0, cached=True
            "index": call.index, "truncated": call.truncated or hit.truncated,
            "requests": 0, "cached": True,
        })

    async def _fit(self, call: JudgeCall) -> JudgeCall:
        """Fit ``call`` to what the server says about itself (its answer token ids, its
        context); part of each try."""
        probe = self._server_probe
        if probe is None:
            return call
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
        return call

    async def _judge_fitted(self, calls: list[JudgeCall]) -> list[Judgment]:
        """One try: fit ``calls`` to the server, then judge them with one batch call."""
        return await self.transport.judge_batch([await self._fit(call) for call in calls])

    async def _judge_unit(
        self, calls: list[JudgeCall], policy: OnError,
        on_judgment: Callable[[Judgment], None] | None, *, shared: bool,
    ) -> list[Judgment | JudgmentError]:
        """Judge ``calls``, the passages that go to the transport's batch call together:
        one passage, or all of a query's for a transport whose batch is one request
        (``shared``: a failure of that request fails each of them, named).

        A passage that cannot be sent fails alone and a cached one is not sent; the rest
        hold one slot of the concurrency bound. ``on_judgment`` sees each judgment, then
        under ``"raise"`` the first failure (input order) is raised, else failures are
        returned in place.
        """
        outcomes: list[Judgment | JudgmentError | None] = [None] * len(calls)
        keys = [""] * len(calls)
        todo: list[int] = []
        for i, call in enumerate(calls):
            if (bad := _unencodable(call)) is not None:
                outcomes[i] = bad  # that passage fails; the others are still sent
                continue
            if self.cache is not None:
                keys[i] = self._key(call)
            outcomes[i] = self._cached(call, keys[i])
            if outcomes[i] is None:
                todo.append(i)
        if todo:
            batch = [calls[i] for i in todo]
            judged: list[Judgment] | list[JudgmentError]
            async with self._session.semaphore():
                try:
                    judged = await self._with_retries(
                        batch[0].index, lambda: self._judge_fitted(batch)
                    )
                except JudgmentError as exc:
                    judged = (
                        [JudgmentError(c.index, str(exc.__cause__ or exc)) for c in batch]
                        if shared else [exc]
                    )
            for i, judgment in zip(todo, judged, strict=True):
                outcomes[i] = judgment
                if isinstance(judgment, Judgment) and self.cache is not None:
                    self.cache.put(keys[i], judgment)
        if on_judgment is not None:
            for outcome in outcomes:
                if isinstance(outcome, Judgment):
                    on_judgment(outcome)
        if policy == "raise":
            for outcome in outcomes:
                if isinstance(outcome, JudgmentError):
                    raise outcome
        return outcomes  # type: ignore[return-value]

    def _jobs(
        self, requests: Sequence[tuple[str, Sequence[PassageInput]]], *,
        instruction: str | None, deadline: float | None,
        stop_after_relevant: int | None, relevant_threshold: float,
        max_reasoning_tokens: int | None = None,
    ) -> list[_Job]:
        """One :class:`_Job` per ``(query, passages)``, checked (a bad input raises before
        anything is sent); a deadline counts from now, the same for every query."""
        at = None if deadline is None else time.monotonic() + deadline
        jobs = []
        for query, passages in requests:
            _check_query(query)
            if isinstance(passages, (str, bytes)) or not isinstance(passages, Sequence):
                raise TypeError(
                    "passages must be a sequence of strings or mappings, got "
                    f"{type(passages).__name__}"
                )
            calls = [self._call(i, query, p, instruction, max_reasoning_tokens)
                     for i, p in enumerate(passages)]
            jobs.append(_Job(
                calls=calls, shared=self.transport.one_request, deadline=deadline,
                deadline_at=at, stop_after=stop_after_relevant, threshold=relevant_threshold,
            ))
        return jobs

    async def _outcomes(
        self, jobs: list[_Job], *, workers: int | None = None,
    ) -> AsyncIterator[tuple[int, Judgment | JudgmentError | _NotJudged]]:
        """Judge the jobs' passages; ``(job number, outcome)`` as each completes.

        The one scheduler of every multi-passage call (``arerank``, ``arerank_iter``,
        ``arerank_many`` and ``rank1 eval``'s runner): ``workers`` (default
        ``concurrency``) take the units in order, job after job, so passages start in
        first-stage order and the next query's start while the last of the previous one
        are still reasoning. A unit is one passage, or all of a job's for a transport
        whose batch is one request. Failures come as :class:`JudgmentError` (the caller
        applies its policy). When a job's deadline passes or its ``stop_after`` relevant
        judgments are in, its requests in flight are cancelled, nothing more of it starts
        and each passage not reported yet comes as :class:`_NotJudged`, in input order.
        Closing the iterator early cancels everything still running.
        """
        loop = asyncio.get_running_loop()
        ready: asyncio.Queue[tuple[_Job, list[Judgment | JudgmentError]] | _Job] = (
            asyncio.Queue()
        )
        units = [
            (job, unit) for job in jobs
            for unit in ([job.calls] if job.shared else [[c] for c in job.calls])
            if unit
        ]
        todo = iter(units)

        def halt(job: _Job, reason: str, *, deadline: bool = False) -> None:
            if job.halted is not None or job.finished:
                return
            job.halted, job.by_deadline = reason, deadline
            for task in job.inflight:
                task.cancel()  # a cancelled request closes its connection
            ready.put_nowait(job)  # wakes the reader at once

        async def worker() -> None:
            for job, unit in todo:  # a shared iterator: each unit goes to one worker
                if job.halted is not None:
                    continue
                with deadline_scope(job.deadline_at):  # the task inherits it: retries see it
                    task = asyncio.ensure_future(
                        self._judge_unit(unit, "keep", None, shared=job.shared)
                    )
                job.inflight.add(task)
                try:
                    await asyncio.wait([task])
                finally:
                    job.inflight.discard(task)
                    if not task.done():  # this worker was cancelled
                        task.cancel()
                if task.cancelled():
                    continue
                if (exc := task.exception()) is not None:  # not a judgment failure: a bug
                    raise exc
                judged = task.result()
                ready.put_nowait((job, judged))
                if job.stop_after is not None:  # here, before this worker starts another
                    job.relevant += sum(
                        1 for j in judged
                        if isinstance(j, Judgment) and j.score is not None
                        and j.score >= job.threshold
                    )
                    if job.relevant >= job.stop_after:
                        halt(job, (
                            f"not judged: stopped early after {job.relevant} relevant "
                            f"judgment(s) (stop_after_relevant={job.stop_after})"
                        ))

        timers = [
            loop.call_later(max(job.deadline_at - time.monotonic(), 0.0), functools.partial(
                halt, job, f"not judged: the deadline of {job.deadline:g} s passed first",
                deadline=True,
            ))
            for job in jobs if job.deadline_at is not None and job.deadline is not None
        ]
        count = min(workers or self.concurrency, len(units))
        running = [asyncio.ensure_future(worker()) for _ in range(count)]
        done_workers = asyncio.ensure_future(asyncio.gather(*running))
        numbers = {id(job): n for n, job in enumerate(jobs)}
        left = sum(1 for job in jobs if job.calls)
        for job in jobs:
            job.finished = not job.calls
        getter: asyncio.Future[Any] | None = None
        try:
            while left:
                getter = asyncio.ensure_future(ready.get())
                await asyncio.wait([getter, done_workers], return_when=asyncio.FIRST_COMPLETED)
                if not getter.done():
                    getter.cancel()
                    if done_workers.exception() is not None:
                        raise done_workers.exception()  # type: ignore[misc]
                    if ready.empty():
                        raise AssertionError("the workers ended before every job was done")
                    continue
                item = getter.result()
                if isinstance(item, _Job):
                    job = item
                    if job.finished:
                        continue
                    job.finished = True
                    left -= 1
                    for i, outcome in enumerate(job.outcomes):
                        if outcome is None:
                            job.outcomes[i] = _NotJudged(job.calls[i].index, job.halted or "")
                            yield numbers[id(job)], job.outcomes[i]  # type: ignore[misc]
                    continue
                job, judged = item
                if job.finished:
                    continue  # halted meanwhile: reported as not judged
                for outcome in judged:
                    job.outcomes[outcome.index] = outcome
                    job.reported += 1
                    yield numbers[id(job)], outcome
                if job.reported == len(job.calls):
                    job.finished = True
                    left -= 1
        finally:
            if getter is not None and not getter.done():
                getter.cancel()
            for timer in timers:
                timer.cancel()
            for task in running:
                task.cancel()
            for job in jobs:
                for task in job.inflight:
                    task.cancel()
            await asyncio.gather(*running, return_exceptions=True)
            done_workers.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await done_workers

    async def _iterate(
        self, jobs: list[_Job], policy: OnError, on_deadline: OnDeadline, *,
        workers: int | None = None, single: bool = False,
    ) -> AsyncIterator[tuple[int, Judgment]]:
        """:meth:`_outcomes` with the error and deadline policies applied: failures raised,
        kept (no score, ``error``) or dropped (logged); passages not judged kept, marked;
        under ``on_deadline="raise"`` the passing deadline raises
        :class:`DeadlineExceeded` with what the call would have returned."""
        dropped: list[int] = []
        async with contextlib.aclosing(self._outcomes(jobs, workers=workers)) as outcomes:
            async for number, outcome in outcomes:
                if isinstance(outcome, _NotJudged):
                    job = jobs[number]
                    if job.by_deadline and on_deadline == "raise":
                        partial = _partial(jobs, policy)
                        raise DeadlineExceeded(
                            job.deadline or 0.0, partial[0] if single else partial
                        )
                    yield number, outcome.judgment()
                elif isinstance(outcome, JudgmentError):
                    if policy == "raise":
                        raise outcome
                    if policy == "drop":
                        dropped.append(outcome.index)
                        continue
                    yield number, _failed(outcome)
                else:
                    yield number, outcome
        if dropped:
            logger.warning(
                "rank1: dropped %d failed judgment(s), passages %s", len(dropped), dropped
            )

    # ------------------------------------------------------------------ public API

    async def ajudge(
        self, query: str, passage: PassageInput, *, title: str | None = None,
        instruction: str | None = None, max_reasoning_tokens: int | None = None,
    ) -> Judgment:
        """Judge one pair. Raises :class:`JudgmentError` when it fails after retries.

        ``instruction`` and ``max_reasoning_tokens`` override the client's for this call."""
        _check_query(query)
        _check_budget(max_reasoning_tokens)
        if title is not None:
            passage = Passage(_passage_of(0, passage).text, title)
        call = self._call(0, query, passage, instruction, max_reasoning_tokens)
        self._session.check_loop()  # an injected async client on a foreign loop fails here
        (judgment,) = await self._judge_unit([call], "raise", None, shared=False)
        return judgment  # type: ignore[return-value]  # under "raise", never a failure

    def judge(
        self, query: str, passage: PassageInput, *, title: str | None = None,
        instruction: str | None = None, max_reasoning_tokens: int | None = None,
    ) -> Judgment:
        """Sync twin of :meth:`ajudge`."""
        return self._run(self.ajudge(
            query, passage, title=title, instruction=instruction,
            max_reasoning_tokens=max_reasoning_tokens,
        ))

    def _checked(
        self, on_error: OnError | None, on_deadline: OnDeadline, deadline: float | None,
        stop_after_relevant: int | None, relevant_threshold: float,
    ) -> OnError:
        """The error policy in force; a ValueError names a bad budget option."""
        policy = on_error or self.on_error
        if policy not in _ON_ERROR:
            raise ValueError(f"on_error must be one of {_ON_ERROR}, got {policy!r}")
        if on_deadline not in _ON_DEADLINE:
            raise ValueError(f"on_deadline must be one of {_ON_DEADLINE}, got {on_deadline!r}")
        if deadline is not None and (
            isinstance(deadline, bool) or not isinstance(deadline, (int, float))
            or not math.isfinite(deadline) or deadline <= 0
        ):
            raise ValueError(f"deadline must be a positive number of seconds, got {deadline!r}")
        if stop_after_relevant is not None and (
            isinstance(stop_after_relevant, bool) or not isinstance(stop_after_relevant, int)
            or stop_after_relevant < 1
        ):
            raise ValueError(
                f"stop_after_relevant must be a positive integer, got {stop_after_relevant!r}"
            )
        if isinstance(relevant_threshold, bool) or not isinstance(
            relevant_threshold, (int, float)
        ) or not 0.0 <= relevant_threshold <= 1.0:
            raise ValueError(f"relevant_threshold must be in [0, 1], got {relevant_threshold!r}")
        return policy

    async def arerank(
        self,
        query: str,
        passages: Sequence[PassageInput],
        *,
        on_error: OnError | None = None,
        instruction: str | None = None,
        on_judgment: Callable[[Judgment], None] | None = None,
        max_reasoning_tokens: int | None = None,
        deadline: float | None = None,
        on_deadline: OnDeadline = "fallback",
        stop_after_relevant: int | None = None,
        relevant_threshold: float = RELEVANT_THRESHOLD,
    ) -> list[Judgment]:
        """Judge every passage concurrently; judgments come back in input order.

        ``on_judgment`` is called with each judgment as it completes (failed ones under
        ``"keep"`` and passages left unjudged included), e.g. to drive a progress bar.

        Budgets (see the README's "Interactive budgets"):

        * ``deadline``: seconds for the whole call. When they pass, the requests in flight
          are cancelled and every passage not judged by then comes back in its place with
          no score and ``error`` saying so (``on_deadline="fallback"``), or
          :class:`~rank1_integrations.errors.DeadlineExceeded` is raised (``"raise"``).
          No retry sleeps past it.
        * ``stop_after_relevant``: once that many judgments have ``score >=
          relevant_threshold``, nothing new starts and what is in flight is cancelled;
          the rest comes back unjudged (``error`` says why). Passages start in input
          (first-stage) order.

        Passages left unjudged are kept whatever ``on_error`` says: they did not fail.
        ``instruction`` and ``max_reasoning_tokens`` override the client's for this call.
        """
        _check_budget(max_reasoning_tokens)
        policy = self._checked(on_error, on_deadline, deadline, stop_after_relevant,
                               relevant_threshold)
        jobs = self._jobs([(query, passages)], instruction=instruction, deadline=deadline,
                          stop_after_relevant=stop_after_relevant,
                          relevant_threshold=relevant_threshold,
                          max_reasoning_tokens=max_reasoning_tokens)
        if not jobs[0].calls:
            return []
        self._session.check_loop()  # an injected async client on a foreign loop fails here
        out: list[Judgment] = []
        with telemetry.rerank_span(self, len(jobs[0].calls)) as span:  # OpenTelemetry, if set
            async with contextlib.aclosing(
                self._iterate(jobs, policy, on_deadline, single=True)
            ) as judgments:
                async for _, judgment in judgments:
                    out.append(judgment)
                    if on_judgment is not None:
                        on_judgment(judgment)
            out.sort(key=lambda j: j.index)
            span.record(out)
        return out

    def rerank(
        self,
        query: str,
        passages: Sequence[PassageInput],
        *,
        on_error: OnError | None = None,
        instruction: str | None = None,
        on_judgment: Callable[[Judgment], None] | None = None,
        max_reasoning_tokens: int | None = None,
        deadline: float | None = None,
        on_deadline: OnDeadline = "fallback",
        stop_after_relevant: int | None = None,
        relevant_threshold: float = RELEVANT_THRESHOLD,
    ) -> list[Judgment]:
        """Sync twin of :meth:`arerank` (still concurrent: it runs on a background loop)."""
        return self._run(self.arerank(
            query, passages, on_error=on_error, instruction=instruction, on_judgment=on_judgment,
            max_reasoning_tokens=max_reasoning_tokens,
            deadline=deadline, on_deadline=on_deadline, stop_after_relevant=stop_after_relevant,
            relevant_threshold=relevant_threshold,
        ))

    async def arerank_iter(
        self,
        query: str,
        passages: Sequence[PassageInput],
        *,
        on_error: OnError | None = None,
        instruction: str | None = None,
        max_reasoning_tokens: int | None = None,
        deadline: float | None = None,
        on_deadline: OnDeadline = "fallback",
        stop_after_relevant: int | None = None,
        relevant_threshold: float = RELEVANT_THRESHOLD,
    ) -> AsyncIterator[Judgment]:
        """:meth:`arerank`, one judgment at a time as each completes (``index`` says
        which passage); passages left unjudged by a budget come last, in input order.

        Under ``"raise"`` the first failure raises from the iterator, under ``"keep"`` it
        is yielded (no score, ``error``), under ``"drop"`` skipped. Leaving the loop early
        cancels what is still in flight (at once with ``contextlib.aclosing``)::

            async for judgment in client.arerank_iter(query, passages):
                print(judgment.index, judgment.score)
        """
        _check_budget(max_reasoning_tokens)
        policy = self._checked(on_error, on_deadline, deadline, stop_after_relevant,
                               relevant_threshold)
        jobs = self._jobs([(query, passages)], instruction=instruction, deadline=deadline,
                          stop_after_relevant=stop_after_relevant,
                          relevant_threshold=relevant_threshold,
                          max_reasoning_tokens=max_reasoning_tokens)
        if not jobs[0].calls:
            return
        self._session.check_loop()
        async with contextlib.aclosing(
            self._iterate(jobs, policy, on_deadline, single=True)
        ) as judgments:
            async for _, judgment in judgments:
                yield judgment

    async def arerank_many(
        self,
        requests: Sequence[tuple[str, Sequence[PassageInput]]],
        *,
        on_error: OnError | None = None,
        instruction: str | None = None,
        on_judgment: Callable[[int, Judgment], None] | None = None,
        deadline: float | None = None,
        on_deadline: OnDeadline = "fallback",
        stop_after_relevant: int | None = None,
        relevant_threshold: float = RELEVANT_THRESHOLD,
    ) -> list[list[Judgment]]:
        """Rerank many ``(query, passages)`` at once under one concurrency bound: the
        next query's passages start while the last of the previous one are still
        reasoning. One list of judgments per query, in input order, each as
        :meth:`arerank` would return it (same error policy).

        ``deadline`` is for the whole call; ``stop_after_relevant`` applies per query.
        ``on_judgment(query_position, judgment)`` sees each judgment as it completes.
        """
        policy = self._checked(on_error, on_deadline, deadline, stop_after_relevant,
                               relevant_threshold)
        if isinstance(requests, (str, bytes)) or not isinstance(requests, Sequence):
            raise TypeError(
                f"requests must be a sequence of (query, passages), got {type(requests).__name__}"
            )
        for n, item in enumerate(requests):
            if not isinstance(item, (tuple, list)) or len(item) != 2:
                raise TypeError(f"request {n} must be a (query, passages) pair, got {item!r:.80}")
        jobs = self._jobs(requests, instruction=instruction, deadline=deadline,
                          stop_after_relevant=stop_after_relevant,
                          relevant_threshold=relevant_threshold)
        out: list[list[Judgment]] = [[] for _ in jobs]
        if not any(job.calls for job in jobs):
            return out
        self._session.check_loop()
        async with contextlib.aclosing(self._iterate(jobs, policy, on_deadline)) as judgments:
            async for number, judgment in judgments:
                out[number].append(judgment)
                if on_judgment is not None:
                    on_judgment(number, judgment)
        for judged in out:
            judged.sort(key=lambda j: j.index)
        return out

    def rerank_many(
        self,
        requests: Sequence[tuple[str, Sequence[PassageInput]]],
        *,
        on_error: OnError | None = None,
        instruction: str | None = None,
        on_judgment: Callable[[int, Judgment], None] | None = None,
        deadline: float | None = None,
        on_deadline: OnDeadline = "fallback",
        stop_after_relevant: int | None = None,
        relevant_threshold: float = RELEVANT_THRESHOLD,
    ) -> list[list[Judgment]]:
        """Sync twin of :meth:`arerank_many`."""
        return self._run(self.arerank_many(
            requests, on_error=on_error, instruction=instruction, on_judgment=on_judgment,
            deadline=deadline, on_deadline=on_deadline, stop_after_relevant=stop_after_relevant,
            relevant_threshold=relevant_threshold,
        ))

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
        settings = {
            name: getattr(self, name, getattr(self.settings, name))
            for name in type(self.settings).model_fields if name != "api_key"
        }
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
        self.__init__(**state["settings"], cache=cache)  # type: ignore[misc]

    def __repr__(self) -> str:
        return f"Rank1Client(base_url={self.base_url!r}, model={self.model!r}, mode={self.mode!r})"


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


def _check_budget(max_reasoning_tokens: object) -> None:
    """A per-call ``max_reasoning_tokens``: None (the client's) or a positive integer."""
    if max_reasoning_tokens is not None and (
        not isinstance(max_reasoning_tokens, int) or isinstance(max_reasoning_tokens, bool)
        or max_reasoning_tokens < 1
    ):
        raise ValueError(
            f"max_reasoning_tokens must be a positive integer, got {max_reasoning_tokens!r}"
        )


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


def _passage_of(index: int, passage: object) -> Passage:
    """One input passage as a :class:`Passage`; a TypeError names a bad one's index."""
    if isinstance(passage, str):
        return Passage(passage)
    if isinstance(passage, Passage):
        text, title = passage.text, passage.title
    elif isinstance(passage, Mapping):
        text, title = passage.get("text"), passage.get("title")
    else:
        raise TypeError(
            f"passage {index} must be a string, a Passage or a mapping with 'text', "
            f"got {type(passage).__name__}"
        )
    if not isinstance(text, str):
        raise TypeError(f"passage {index}: 'text' must be a string, got {type(text).__name__}")
    if title is not None and not isinstance(title, str):
        raise TypeError(
            f"passage {index}: 'title' must be a string or None, got {type(title).__name__}"
        )
    return Passage(text, title)


def _failed(error: JudgmentError) -> Judgment:
    """A failure kept under ``on_error="keep"``: no score, ``error`` set."""
    return Judgment(index=error.index, relevant=None, score=None, error=str(error))


@dataclass(frozen=True)
class _NotJudged:
    """A passage a budget left unjudged (the deadline passed, or the early exit)."""

    index: int
    reason: str

    def judgment(self) -> Judgment:
        return Judgment(index=self.index, relevant=None, score=None, error=self.reason)


@dataclass(eq=False)
class _Job:
    """One query of a call, as :meth:`Rank1Client._outcomes` schedules it."""

    calls: list[JudgeCall]
    #: The transport judges all of them in one request.
    shared: bool
    #: The deadline in seconds as given, and when it passes (``time.monotonic()``).
    deadline: float | None
    deadline_at: float | None
    stop_after: int | None
    threshold: float
    outcomes: list[Judgment | JudgmentError | _NotJudged | None] = field(default_factory=list)
    inflight: set[asyncio.Future[Any]] = field(default_factory=set)
    relevant: int = 0
    reported: int = 0
    #: Why the rest is not judged, once a budget stopped the job.
    halted: str | None = None
    by_deadline: bool = False
    finished: bool = False

    def __post_init__(self) -> None:
        self.outcomes = [None] * len(self.calls)


def _partial(jobs: list[_Job], policy: OnError) -> list[list[Judgment]]:
    """What each job would return now under ``on_deadline="fallback"``."""
    out: list[list[Judgment]] = []
    for job in jobs:
        judged: list[Judgment] = []
        for i, outcome in enumerate(job.outcomes):
            if isinstance(outcome, Judgment):
                judged.append(outcome)
            elif isinstance(outcome, JudgmentError):
                if policy == "keep":
                    judged.append(_failed(outcome))
            else:
                reason = outcome.reason if outcome is not None else (job.halted or "not judged")
                judged.append(_NotJudged(job.calls[i].index, reason).judgment())
        out.append(judged)
    return out
