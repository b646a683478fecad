"""``POST /v1/rerank`` with ``"stream": true``: the judgments as Server-Sent Events.

The event shapes live in :mod:`rank1_integrations.wire` (shared with the client):
``reasoning`` pieces per document as the engine generates them, a ``result`` per document
as its verdict lands (the same object as the non-streamed ``results`` hold), then ``done``
with the ranking (``top_n`` input indices, best first) and the usage; ``error`` instead of
``done`` when the work fails after the stream began. Errors found before any work starts
(queue full, no room in a slot, a bad budget) are answered as plain HTTP errors, exactly
as without ``stream``.

The engine calls back on its own thread; the pieces are handed to the event loop with
``call_soon_threadsafe``, so a document's pieces always precede its ``result``. A client
that goes away ends the response: the judging task is cancelled and the engine frees the
slots (:meth:`~rank1_server.rank1.Rank1Judge.judge_many` cancels its requests).

Usage (from the rerank route)::

    if body.stream:
        return await stream_rerank(state, body, docs, budget)
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any

from fastapi.responses import StreamingResponse

from rank1_integrations.judgment import Judgment
from rank1_integrations.protocol import THINK_END, THINK_START
from rank1_integrations.wire import (
    CohereV1RerankRequest,
    RerankResult,
    RerankStreamDone,
    RerankStreamError,
    RerankStreamReasoning,
    RerankStreamResult,
    stream_event,
)

from .engine import QueueFull
from .errors import ApiError
from .rank1 import Document
from .reranking import Ranked, engine_judge, engine_refusal
from .state import ServerState

__all__ = ["ReasoningFilter", "stream_rerank"]

class ReasoningFilter:
    """Turns a document's generated text, piece by piece, into reasoning pieces: the text
    before ``</think>`` (never the tag or the answer after it), without a leading
    ``<think>``. A tail that may be the start of a tag is held back until it is not."""

    def __init__(self) -> None:
        self._pending = ""
        self._closed = False
        self._started = False

    def feed(self, piece: str) -> str:
        if self._closed:
            return ""
        text = self._pending + piece
        if not self._started:
            stripped = text.lstrip()
            if THINK_START.startswith(stripped) and len(stripped) < len(THINK_START):
                self._pending = text
                return ""
            if stripped.startswith(THINK_START):
                text = stripped[len(THINK_START):]
            self._started = True
        at = text.find(THINK_END)
        if at != -1:
            self._closed = True
            self._pending = ""
            return text[:at]
        keep = 0
        for k in range(min(len(THINK_END) - 1, len(text)), 0, -1):
            if THINK_END.startswith(text[-k:]):
                keep = k
                break
        self._pending = text[len(text) - keep:]
        return text[: len(text) - keep]

    def flush(self) -> str:
        """What is still held back (the generation ended without ``</think>``)."""
        out, self._pending = ("" if self._closed else self._pending), ""
        return out


def _api_error(exc: BaseException) -> ApiError | None:
    """The HTTP error for a failure of the judging call (as the non-streamed route)."""
    return engine_refusal(exc) if isinstance(exc, (QueueFull, ValueError)) else None


async def stream_rerank(
    state: ServerState, body: CohereV1RerankRequest, docs: Sequence[Document], budget: int
) -> StreamingResponse:
    """Start judging ``docs`` and answer the events as they come (see module doc)."""
    if state.gateway is not None:
        raise ApiError(400, "streaming is not served in gateway mode (--upstream): send "
                       "the request without \"stream\"", param="stream",
                       code="not_supported")
    if body.deadline is not None:
        raise ApiError(400, "a stream takes no \"deadline\": close the stream to stop it "
                       "(its work is cancelled), or send the request without \"stream\"",
                       param="deadline", code="not_supported")
    judge = engine_judge(state, docs)
    loop = asyncio.get_running_loop()
    # (index, piece) from the engine thread, (judgment, budget) per verdict, None: finished
    queue: asyncio.Queue[tuple[Any, Any] | None] = asyncio.Queue()
    filters = [ReasoningFilter() for _ in docs]

    def on_text(index: int, piece: str) -> None:  # engine thread
        loop.call_soon_threadsafe(queue.put_nowait, (index, piece))

    def on_verdict(judgment: Judgment, reasoning_budget: int) -> None:  # event loop
        queue.put_nowait((judgment, reasoning_budget))

    task = asyncio.ensure_future(judge.judge_many(
        body.query, docs, instruction=body.instruction, max_reasoning_tokens=budget,
        max_passage_tokens=body.max_passage_tokens(),
        on_text=None if body.stream_reasoning is False else on_text, on_verdict=on_verdict,
    ))
    task.add_done_callback(lambda _: queue.put_nowait(None))
    # The prompts are prepared and queued before the task's first await: errors found
    # there (queue full, no room) are plain HTTP errors, not a stream.
    await asyncio.sleep(0)
    if task.done() and task.exception() is not None:
        exc = task.exception()
        assert exc is not None
        err = _api_error(exc)
        raise (err or exc) from exc

    async def events() -> AsyncIterator[str]:
        try:
            while True:
                item = await queue.get()
                if item is None:
                    break
                if isinstance(item[0], int):
                    index, piece = item
                    delta = filters[index].feed(piece)
                    if delta:
                        yield stream_event(RerankStreamReasoning(index=index, delta=delta))
                    continue
                judgment: Judgment = item[0]
                reasoning_budget: int = item[1]
                rest = filters[judgment.index].flush()
                if rest:
                    yield stream_event(RerankStreamReasoning(index=judgment.index, delta=rest))
                yield stream_event(RerankStreamResult(result=RerankResult.from_judgment(
                    judgment, reasoning_budget=reasoning_budget,
                    document=body.returned_document(judgment.index) if body.return_documents
                    else None,
                )))
            exc = task.exception()
            if exc is not None:
                err = _api_error(exc) or ApiError(500, f"{type(exc).__name__}: {exc}")
                yield stream_event(RerankStreamError(error={
                    "message": err.message, "type": err.type, "param": err.param,
                    "code": err.code,
                }))
                return
            ranked = Ranked.of(task.result(), body.top_n)
            yield stream_event(RerankStreamDone(
                id=f"rerank-{uuid.uuid4().hex}", model=state.model_name,
                ranking=[j.index for j in ranked.order], usage=ranked.usage(),
            ))
        finally:
            # The client went away (or the response ended): free the slots.
            if not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)

    return StreamingResponse(
        events(), media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
