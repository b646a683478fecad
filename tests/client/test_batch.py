"""Every transport has a batch call, and the client judges through it on one path: one
call per passage for the transports whose batch is a gather of ``judge``, one call for
all passages for a :class:`BatchTransport` (one request, as ``/v1/rerank``)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from rank1_integrations import Judgment, JudgmentError, Rank1Client
from rank1_integrations.transports import BatchTransport, JudgeCall, Transport
from rank1_integrations.transports.base import gather_or_cancel


def call(index: int, passage: str = "p") -> JudgeCall:
    return JudgeCall(index=index, query="q", passage=passage, title=None, instruction=None,
                     prompt=f"q {passage}", truncated=False, max_reasoning_tokens=8)


def verdict(c: JudgeCall) -> Judgment:
    return Judgment(index=c.index, relevant=True, score=0.9, source="answer_logprobs")


class OnePerCall(Transport):
    """Judges after a delay per passage; fails the passages named in ``fail``."""

    name = "fake"

    def __init__(self, fail: Sequence[str] = (), delay: float = 0.0) -> None:
        self.fail, self.delay = set(fail), delay
        self.started: list[int] = []
        self.finished: list[int] = []
        self.cancelled: list[int] = []
        self.in_flight = self.most_in_flight = 0

    async def judge(self, c: JudgeCall) -> Judgment:
        self.started.append(c.index)
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self.delay * (1 + c.index % 3))
            if c.passage in self.fail:
                raise ConnectionError(f"cannot judge {c.passage}")
            self.finished.append(c.index)
            return verdict(c)
        except asyncio.CancelledError:
            self.cancelled.append(c.index)
            raise
        finally:
            self.in_flight -= 1


class OneRequest(BatchTransport):
    name = "fake-batch"

    def __init__(self, fail: bool = False) -> None:
        self.batches: list[list[int]] = []
        self.fail = fail

    async def judge(self, c: JudgeCall) -> Judgment:
        (judgment,) = await self.judge_batch([c])
        return judgment

    # the signature a custom transport had before on_judgments (it must keep working)
    async def judge_batch(self, calls: Sequence[JudgeCall]) -> list[Judgment]:  # type: ignore[override]
        self.batches.append([c.index for c in calls])
        if self.fail:
            raise ConnectionError("the server went away")
        return [verdict(c) for c in calls]


async def test_the_default_batch_is_a_gather_of_judge_in_order() -> None:
    transport = OnePerCall(delay=0.01)
    judgments = await transport.judge_batch([call(i) for i in range(5)])
    assert [j.index for j in judgments] == [0, 1, 2, 3, 4]
    assert transport.most_in_flight == 5  # all at once
    assert not transport.one_request and OneRequest.one_request


async def test_the_default_batch_cancels_the_rest_at_the_first_failure() -> None:
    transport = OnePerCall(fail=["bad"], delay=0.01)
    calls = [call(0, "bad"), call(1), call(2), call(3, "bad")]
    with pytest.raises(ConnectionError, match="cannot judge bad"):
        await transport.judge_batch(calls)
    assert transport.cancelled  # the slower ones did not run on
    assert transport.in_flight == 0  # and were waited for


async def test_gather_or_cancel_raises_the_first_failure_in_input_order() -> None:
    async def fail_after(delay: float, name: str) -> None:
        await asyncio.sleep(delay)
        raise ValueError(name)

    with pytest.raises(ValueError, match="first"):
        await gather_or_cancel([fail_after(0.0, "first"), fail_after(0.0, "second")])
    assert await gather_or_cancel([asyncio.sleep(0, result=1)]) == [1]


def make_client(transport: Transport, **kwargs) -> Rank1Client:
    client = Rank1Client("http://rank1.test/v1", mode="chat", **kwargs)
    client.transport = transport  # the client judges through whatever transport it holds
    return client


async def test_one_call_per_passage_holds_one_slot_each_and_fails_alone() -> None:
    transport = OnePerCall(fail=["bad"], delay=0.01)
    client = make_client(transport, concurrency=2, cache=None)
    judgments = await client.ajudge_all("q", ["a", "bad", "c", "d", "e"], on_error="keep")
    assert transport.most_in_flight == 2  # the concurrency bound, per judgment
    assert [j.index for j in judgments] == [0, 1, 2, 3, 4]
    assert [j.ok for j in judgments] == [True, False, True, True, True]
    assert judgments[1].error == (
        "judgment of passage 1 failed: ConnectionError: cannot judge bad")


async def test_a_custom_batch_transport_without_on_judgments_still_works() -> None:
    """A transport written before ``judge_batch`` took ``on_judgments``: callers that act
    on each verdict (``arerank_iter``, a callback) get its judgments when the batch ends."""
    transport = OneRequest()
    client = make_client(transport, cache=None)
    seen: list[int] = []
    judged = await client.ajudge_all("q", ["a", "b"], on_judgment=lambda j: seen.append(j.index))
    assert [j.ok for j in judged] == [True, True] and sorted(seen) == [0, 1]
    assert sorted([j.index async for j in client.arerank_iter("q", ["c", "d"])]) == [0, 1]
    assert transport.batches == [[0, 1], [0, 1]]


async def test_a_batch_transport_gets_one_call_for_the_uncached_passages() -> None:
    transport = OneRequest()
    client = make_client(transport)
    await client.arerank("q", ["a", "b"])
    judgments = await client.arerank("q", ["a", "b", "c"])  # a and b come from the cache
    assert transport.batches == [[0, 1], [2]]
    assert [j.index for j in judgments] == [0, 1, 2]


async def test_a_failed_batch_request_fails_each_passage_named() -> None:
    client = make_client(OneRequest(fail=True), cache=None)
    judgments = await client.arerank("q", ["a", "b"], on_error="keep")
    assert [j.error for j in judgments] == [
        "judgment of passage 0 failed: the server went away",
        "judgment of passage 1 failed: the server went away",
    ]
    with pytest.raises(JudgmentError) as info:
        await client.arerank("q", ["a", "b"])
    assert info.value.index == 0
