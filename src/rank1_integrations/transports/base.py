"""What every transport receives and must provide.

A transport speaks one API shape (``/v1/completions``, ``/v1/chat/completions``,
``/v1/rerank``). It turns a :class:`JudgeCall` into a :class:`~rank1_integrations.Judgment`
and knows nothing of retries, concurrency or caching: the client wraps it with the last
two and hands its :class:`~.sdk.Sdk` the retry policy, which the Sdk applies to each HTTP
step on its own. It raises the SDK's exceptions for HTTP failures and
:class:`~rank1_integrations.errors.NoVerdictError` when the model gives no verdict.

Every transport has a batch call, :meth:`Transport.judge_batch`: by default a gather of
:meth:`~Transport.judge`, one request per call; a :class:`BatchTransport` sends all the
calls of one query in one request (``/v1/rerank``). The client hands a transport whose
batch is one request all the passages at once, and any other one passage at a time (so
that each judgment holds its own concurrency slot and fails alone).
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import ClassVar, TypeVar

from ..judgment import Judgment

__all__ = ["JudgeCall", "Transport", "BatchTransport", "gather_or_cancel"]

T = TypeVar("T")


@dataclass(frozen=True)
class JudgeCall:
    """One (query, passage) pair, ready to send."""

    #: Position of the passage in the caller's input.
    index: int
    #: The query as the caller gave it (before any instruction is applied).
    query: str
    #: The passage after truncation (without its title).
    passage: str
    title: str | None
    instruction: str | None
    #: The full rank1 prompt built from the fields above.
    prompt: str
    #: True when ``passage`` was cut to the budget.
    truncated: bool
    #: Most tokens the model may spend reasoning.
    max_reasoning_tokens: int
    #: Requests already sent for this call before it is judged: the probes made while
    #: fitting it (:meth:`Transport.fit`), counted in its ``Judgment.requests``.
    requests: int = 0


async def gather_or_cancel(aws: Sequence[Awaitable[T]]) -> list[T]:
    """Await all of ``aws`` concurrently; their results, in order.

    When one raises, the others are cancelled (and waited for), and the failure that comes
    first in input order is raised: nothing more is sent once the outcome is settled.
    """
    if len(aws) == 1:  # nothing to cancel: no task needed
        return [await aws[0]]
    tasks = [asyncio.ensure_future(aw) for aw in aws]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
    finally:
        pending = [t for t in tasks if not t.done()]
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
    for task in tasks:
        if not task.cancelled() and (exc := task.exception()) is not None:
            raise exc
    return [t.result() for t in tasks]


class Transport(ABC):
    """Judges one pair per call."""

    #: Name used in cache keys and error messages (``"completions"``, ``"chat"``, ...).
    name: str = ""
    #: Whether :meth:`judge_batch` sends all its calls in one request.
    one_request: ClassVar[bool] = False
    #: Whether :meth:`judge_batch` takes ``on_judgments`` and hands judgments on as they
    #: land (``/rerank``'s stream); the client passes it only to such transports, so a
    #: custom transport written with ``judge_batch(self, calls)`` keeps working.
    reports_early: ClassVar[bool] = False

    @abstractmethod
    async def judge(self, call: JudgeCall) -> Judgment:
        """Judge one pair; the returned judgment's ``index`` is ``call.index``."""

    async def fit(self, call: JudgeCall) -> JudgeCall:
        """``call`` fitted to what the server says about itself, before each try (the
        completions transport asks the server; others send it as is)."""
        return call

    async def judge_batch(
        self, calls: Sequence[JudgeCall],
        on_judgments: Callable[[list[Judgment]], None] | None = None,
    ) -> list[Judgment]:
        """Judge ``calls`` (all for one query); one judgment per call, in order.

        ``on_judgments``: a transport that can (``/rerank``'s stream) hands it the
        judgments as they land (each verdict of a stream alone), before returning; the
        caller reports the rest from the returned list. By default a gather of
        :meth:`judge` (see :func:`gather_or_cancel`), which reports nothing early."""
        return await gather_or_cancel([self.judge(call) for call in calls])

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release what the transport holds (nothing by default)."""


class BatchTransport(Transport):
    """A transport that judges all passages of one query in one request."""

    one_request: ClassVar[bool] = True

    @abstractmethod
    async def judge_batch(
        self, calls: Sequence[JudgeCall],
        on_judgments: Callable[[list[Judgment]], None] | None = None,
    ) -> list[Judgment]:
        """Judge ``calls`` (all for one query); return one judgment per call, in order
        (``on_judgments``: see :meth:`Transport.judge_batch`)."""
