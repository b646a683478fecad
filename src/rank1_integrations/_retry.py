"""One retry policy for every transport: tenacity, exponential backoff with jitter,
``Retry-After`` honoured. The openai SDK's own retries are switched off by the client so
that this is the only policy.

It applies to each HTTP step on its own (see :func:`with_retries`): the client hands it to
the transports' :class:`~rank1_integrations.transports.sdk.Sdk`, so a failed forced-answer
request is retried alone, without regenerating the reasoning chain before it.
"""

from __future__ import annotations

import contextlib
import contextvars
import email.utils
import math
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import TypeVar

import httpx
import openai
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    stop_any,
)
from tenacity.wait import wait_exponential, wait_random

from .errors import BadResponseError

__all__ = [
    "RETRY_STATUSES", "RetryStep", "current_deadline", "deadline_scope", "is_retryable", "once",
    "retry_after_seconds", "retrying", "with_retries",
]

T = TypeVar("T")
#: Runs one step (a coroutine function) under a retry policy and returns its result.
RetryStep = Callable[[Callable[[], Awaitable[T]]], Awaitable[T]]

#: HTTP statuses worth another try: timeouts, conflicts, rate limits, server errors.
RETRY_STATUSES = frozenset({408, 409, 429})
#: Longest wait a server's Retry-After may impose.
MAX_RETRY_AFTER = 60.0


#: When the judging call running in this context must be over (``time.monotonic()``), if
#: it has a deadline: a retry never sleeps past it. Set by the client around each judgment.
_DEADLINE: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "rank1_deadline", default=None
)


def current_deadline() -> float | None:
    """The ``time.monotonic()`` by which the running judgment must be over, or ``None``."""
    return _DEADLINE.get()


@contextlib.contextmanager
def deadline_scope(at: float | None) -> Iterator[None]:
    """Run the block (and the tasks created in it) under the deadline ``at``
    (``time.monotonic()``; ``None``: none)."""
    token = _DEADLINE.set(at)
    try:
        yield
    finally:
        _DEADLINE.reset(token)


def is_retryable(exc: BaseException) -> bool:
    """Connection errors, timeouts, 408/409/429, 5xx and a 200 that is not what was asked
    for (:class:`~rank1_integrations.errors.BadResponseError`) are retried; nothing else."""
    if isinstance(exc, (openai.APIConnectionError, httpx.TransportError, BadResponseError)):
        return True  # APITimeoutError is an APIConnectionError
    if isinstance(exc, openai.APIStatusError):
        return exc.status_code in RETRY_STATUSES or exc.status_code >= 500
    return False


def retry_after_seconds(exc: BaseException) -> float | None:
    """The wait a server asked for (``retry-after-ms`` or ``Retry-After``), if any."""
    response = getattr(exc, "response", None)
    if response is None:
        return None
    headers = response.headers
    if (ms := headers.get("retry-after-ms")) is not None:
        try:
            wait = _bounded(float(ms) / 1000.0)
        except ValueError:
            wait = None
        if wait is not None:
            return wait  # else Retry-After may still say
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:  # an HTTP date; anything unparseable falls back to the backoff
            parsed = email.utils.parsedate_to_datetime(value) if value else None
        except (TypeError, ValueError):
            parsed = None
        if parsed is None:
            return None
        seconds = parsed.timestamp() - time.time()
    return _bounded(seconds)


def _bounded(seconds: float) -> float | None:
    """A server's wait clamped to [0, MAX_RETRY_AFTER]; ``None`` (use the backoff) for NaN,
    which would otherwise slip through the clamp as a zero wait."""
    if math.isnan(seconds):
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


def retrying(
    max_retries: int, *, backoff: float = 0.5, max_backoff: float = 20.0,
    deadline: float | None = None,
) -> AsyncRetrying:
    """An ``AsyncRetrying`` that makes ``max_retries`` further tries after the first and
    re-raises the last exception.

    With a ``deadline`` (``time.monotonic()``), a try whose wait would end at or past it
    is not made: the last exception is re-raised at once instead of sleeping past it."""
    # backoff * 2**(n-1), capped, plus up to ``backoff`` of jitter. (Not
    # wait_exponential_jitter: its ``initial`` is deprecated in tenacity 9.2 and the
    # ``multiplier`` that replaces it does not exist in the tenacity>=8.2 we support.)
    jitter = wait_exponential(multiplier=backoff, max=max_backoff) + wait_random(0, backoff)

    def wait(state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        asked = retry_after_seconds(exc) if exc is not None else None
        seconds = asked if asked is not None else jitter(state)
        if deadline is not None:  # never past it (tenacity < 9 decides to stop before this)
            seconds = min(seconds, max(deadline - time.monotonic(), 0.0))
        return seconds

    def past_deadline(state: RetryCallState) -> bool:
        if deadline is None:
            return False
        upcoming = state.upcoming_sleep or 0.0
        return time.monotonic() + upcoming >= deadline

    return AsyncRetrying(
        # tenacity takes a plain predicate as a stop (its StopBaseT); stop_any's stub says
        # stop_base only
        stop=stop_any(stop_after_attempt(max_retries + 1), past_deadline),  # type: ignore[arg-type]
        wait=wait,
        retry=retry_if_exception(is_retryable),
        reraise=True,
    )


async def with_retries(
    step: Callable[[], Awaitable[T]], max_retries: int, *, backoff: float = 0.5,
    deadline: float | None = None,
) -> T:
    """Run ``step`` and, while it fails retryably, up to ``max_retries`` more times; the
    last exception is re-raised. No wait runs past ``deadline`` (``time.monotonic()``;
    default: the one of the running judgment, :func:`current_deadline`)."""
    if deadline is None:
        deadline = current_deadline()
    async for attempt in retrying(max_retries, backoff=backoff, deadline=deadline):
        with attempt:
            return await step()
    raise AssertionError("unreachable")  # pragma: no cover - reraise=True raises first


async def once(step: Callable[[], Awaitable[T]]) -> T:
    """The :data:`RetryStep` that tries once (for transports used without a client)."""
    return await step()
