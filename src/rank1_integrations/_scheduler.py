"""The one scheduler of every multi-passage call: ``arerank``, ``arerank_iter``,
``arerank_many`` and ``rank1 eval``'s runner.

A fixed number of workers take the units (one passage, or all of a query's for a
transport whose batch is one request) in order, query after query, so passages start in
first-stage order and the next query's start while the last of the previous one are
still reasoning. Each query (a :class:`Job`) has its budgets: when its ``deadline``
passes or its ``stop_after_relevant`` relevant judgments are in, its requests in flight
are cancelled, nothing more of it starts and each passage not reported yet comes back as
:class:`NotJudged`, in input order. Closing an iterator early cancels what still runs.
Outcomes are reported as they are known: a unit's together, or, for a job whose caller
acts on each verdict (:attr:`Job.early`), each verdict of rank1-server's stream on its own
(one request still judges the whole query).

Usage (``rank1 eval``'s runner; the client's methods do the same)::

    scheduler = client.scheduler
    jobs = scheduler.plan(CallInput.of(requests, stop_after_relevant=3))
    async with contextlib.aclosing(scheduler.outcomes(jobs, workers=8)) as outcomes:
        async for number, outcome in outcomes:   # Judgment | JudgmentError | NotJudged
            ...
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass, field
from typing import Any

from ._inputs import CallInput
from ._judging import Judging, Outcome
from ._retry import deadline_scope
from .errors import DeadlineExceeded, JudgmentError
from .judgment import Judgment, JudgmentState
from .settings import OnError
from .telemetry import CallRecord
from .transports import JudgeCall

__all__ = ["Job", "NotJudged", "Scheduler", "failed"]

logger = logging.getLogger("rank1_integrations")


@dataclass(frozen=True)
class NotJudged:
    """A passage a budget left unjudged (the deadline passed, or the early exit)."""

    index: int
    reason: str
    state: JudgmentState

    def judgment(self) -> Judgment:
        return Judgment(
            index=self.index, relevant=None, score=None, error=self.reason, state=self.state
        )


def failed(error: JudgmentError) -> Judgment:
    """A failure kept under ``on_error="keep"``: no score, ``error`` set."""
    return Judgment(
        index=error.index, relevant=None, score=None, error=str(error),
        state=JudgmentState.FAILED,
    )


@dataclass(eq=False)
class Job:
    """One query of a call, as :meth:`Scheduler.outcomes` schedules it."""

    calls: list[JudgeCall]
    #: The transport judges all of them in one request.
    shared: bool
    #: The deadline in seconds as given, and when it passes (``time.monotonic()``).
    deadline: float | None
    deadline_at: float | None
    stop_after: int | None
    threshold: float
    #: Someone acts on each verdict as it lands (an iterator, a callback, a budget): the
    #: transport then hands them on one by one where it can (rank1-server's stream, a few
    #: ms of client CPU per call); else a shared request's verdicts come together.
    early: bool = False
    #: The query's span (its own, or its call's).
    record: CallRecord = field(default_factory=CallRecord)
    outcomes: list[Outcome | NotJudged | None] = field(default_factory=list)
    inflight: set[asyncio.Future[Any]] = field(default_factory=set)
    relevant: int = 0
    reported: int = 0
    #: Why the rest is not judged, once a budget stopped the job.
    halted: NotJudged | None = None
    finished: bool = False

    def __post_init__(self) -> None:
        self.outcomes = [None] * len(self.calls)

    def unjudged(self, i: int) -> NotJudged:
        halted = self.halted
        reason = halted.reason if halted is not None else "not judged"
        state = halted.state if halted is not None else JudgmentState.DEADLINE
        return NotJudged(self.calls[i].index, reason, state)

    def finish(self) -> None:
        """Tell the query's span what came of it."""
        self.finished = True
        self.record.record([
            o.judgment() if isinstance(o, NotJudged) else o
            for o in self.outcomes if o is not None
        ])


class Scheduler:
    """Schedules a client's calls over its :class:`~._judging.Judging`."""

    def __init__(self, judging: Judging) -> None:
        self.judging = judging

    def plan(
        self, call: CallInput, records: Sequence[CallRecord] | None = None, *,
        early: bool = False,
    ) -> list[Job]:
        """One :class:`Job` per request of ``call`` (already checked); a deadline counts
        from now, the same for every query. ``records``: each query's span. ``early``: the
        caller acts on each verdict as it lands (:attr:`Job.early`; so do budgets)."""
        at = None if call.deadline is None else time.monotonic() + call.deadline
        jobs = []
        for n, (query, passages) in enumerate(call.requests):
            job = Job(
                calls=self.judging.calls(
                    query, passages, instruction=call.instruction,
                    budget=call.max_reasoning_tokens,
                ),
                shared=self.judging.transport.one_request, deadline=call.deadline,
                deadline_at=at, stop_after=call.stop_after_relevant,
                threshold=call.relevant_threshold,
                early=early or call.deadline is not None or call.stop_after_relevant is not None,
            )
            if records is not None:
                job.record = records[n]
            jobs.append(job)
        return jobs

    async def outcomes(
        self, jobs: list[Job], *, workers: int | None = None,
    ) -> AsyncGenerator[tuple[int, Outcome | NotJudged], None]:
        """Judge the jobs' passages; ``(job number, outcome)`` as each completes (see the
        module's docstring). Failures come as :class:`JudgmentError` (the caller applies
        its policy). ``workers``: the client's ``concurrency`` unless given."""
        self.judging.session.check_loop()  # an injected async client on a foreign loop
        loop = asyncio.get_running_loop()
        ready: asyncio.Queue[tuple[Job, list[Outcome]] | Job] = asyncio.Queue()
        units = [
            (job, unit) for job in jobs
            for unit in ([job.calls] if job.shared else [[c] for c in job.calls])
            if unit
        ]
        todo = iter(units)

        def halt(job: Job, why: NotJudged) -> None:
            if job.halted is not None or job.finished:
                return
            job.halted = why
            for task in job.inflight:
                task.cancel()  # a cancelled request closes its connection
            ready.put_nowait(job)  # wakes the reader at once

        def landed(job: Job, judged: list[Outcome]) -> None:
            """Outcomes of ``job`` are in (a unit's, or one verdict of a stream): report
            them; count them towards the early exit, before their worker starts another."""
            ready.put_nowait((job, judged))
            if job.stop_after is None:
                return
            job.relevant += sum(
                1 for j in judged
                if isinstance(j, Judgment) and j.score is not None and j.score >= job.threshold
            )
            if job.relevant >= job.stop_after:
                halt(job, NotJudged(-1, (
                    f"not judged: stopped early after {job.relevant} relevant "
                    f"judgment(s) (stop_after_relevant={job.stop_after})"
                ), JudgmentState.STOPPED_EARLY))

        async def worker() -> None:
            for job, unit in todo:  # a shared iterator: each unit goes to one worker
                if job.halted is not None:
                    continue
                # the task inherits both: retries see the deadline, requests the span
                with deadline_scope(job.deadline_at), job.record.current():
                    task = asyncio.ensure_future(self.judging.unit(
                        unit, shared=job.shared, on_outcomes=functools.partial(landed, job),
                        early=job.early,
                    ))
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

        timers = [
            loop.call_later(max(job.deadline_at - time.monotonic(), 0.0), functools.partial(
                halt, job, NotJudged(
                    -1, f"not judged: the deadline of {job.deadline:g} s passed first",
                    JudgmentState.DEADLINE,
                ),
            ))
            for job in jobs if job.deadline_at is not None and job.deadline is not None
        ]
        count = min(workers or self.judging.settings.concurrency, len(units))
        running = [asyncio.ensure_future(worker()) for _ in range(count)]
        done_workers = asyncio.ensure_future(asyncio.gather(*running))
        numbers = {id(job): n for n, job in enumerate(jobs)}
        left = sum(1 for job in jobs if job.calls)
        for job in jobs:
            if not job.calls:
                job.finish()
        getter: asyncio.Future[Any] | None = None
        try:
            while left:
                getter = asyncio.ensure_future(ready.get())
                await asyncio.wait([getter, done_workers], return_when=asyncio.FIRST_COMPLETED)
                if not getter.done():
                    getter.cancel()
                    if (exc := done_workers.exception()) is not None:
                        raise exc
                    if ready.empty():
                        raise AssertionError("the workers ended before every job was done")
                    continue
                item = getter.result()
                if isinstance(item, Job):
                    job = item
                    if job.finished:
                        continue
                    left -= 1
                    for i, outcome in enumerate(job.outcomes):
                        if outcome is None:
                            unjudged = job.outcomes[i] = job.unjudged(i)
                            yield numbers[id(job)], unjudged
                    job.finish()
                    continue
                job, judged = item
                if job.finished:
                    continue  # halted meanwhile: reported as not judged
                for outcome in judged:
                    job.outcomes[outcome.index] = outcome
                    job.reported += 1
                    yield numbers[id(job)], outcome
                if job.reported == len(job.calls):
                    left -= 1
                    job.finish()
        finally:
            if getter is not None and not getter.done():
                getter.cancel()
            for timer in timers:
                timer.cancel()
            for running_worker in running:
                running_worker.cancel()
            for job in jobs:
                for inflight in job.inflight:
                    inflight.cancel()
                job.record.end()
            await asyncio.gather(*running, return_exceptions=True)
            done_workers.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await done_workers

    async def judgments(
        self, jobs: list[Job], call: CallInput, policy: OnError, *,
        workers: int | None = None, single: bool = False,
    ) -> AsyncGenerator[tuple[int, Judgment], None]:
        """:meth:`outcomes` with ``call``'s error and deadline policies applied: failures
        raised, kept (no score, ``error``) or dropped (logged); passages not judged kept,
        marked; under ``on_deadline="raise"`` the passing deadline raises
        :class:`DeadlineExceeded` with what the call would have returned (``single``: one
        query's list, else one list per query)."""
        dropped: list[int] = []
        async with contextlib.aclosing(self.outcomes(jobs, workers=workers)) as outcomes:
            async for number, outcome in outcomes:
                if isinstance(outcome, NotJudged):
                    if outcome.state is JudgmentState.DEADLINE and call.on_deadline == "raise":
                        partial = _partial(jobs, policy)
                        raise DeadlineExceeded(
                            call.deadline or 0.0, partial[0] if single else partial
                        )
                    yield number, outcome.judgment()
                elif isinstance(outcome, JudgmentError):
                    if policy == "raise":
                        raise outcome
                    if policy == "drop":
                        dropped.append(outcome.index)
                        continue
                    yield number, failed(outcome)
                else:
                    yield number, outcome
        if dropped:
            logger.warning(
                "rank1: dropped %d failed judgment(s), passages %s", len(dropped), dropped
            )


def _partial(jobs: list[Job], policy: OnError) -> list[list[Judgment]]:
    """What each job would return now under ``on_deadline="fallback"``."""
    out: list[list[Judgment]] = []
    for job in jobs:
        judged: list[Judgment] = []
        for i, outcome in enumerate(job.outcomes):
            if isinstance(outcome, Judgment):
                judged.append(outcome)
            elif isinstance(outcome, JudgmentError):
                if policy == "keep":
                    judged.append(failed(outcome))
            elif isinstance(outcome, NotJudged):
                judged.append(outcome.judgment())
            else:
                judged.append(job.unjudged(i).judgment())
        out.append(judged)
    return out
