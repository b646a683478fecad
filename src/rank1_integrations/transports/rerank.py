"""``/v1/rerank`` of the bundled ``rank1-server``: all passages of a query in one request.

The server runs the whole rank1 protocol in-process (reasoning, answer position, forced
answer) and returns one result per document with the rank1 fields beside the usual
Jina/Cohere ones (``relevance_score``, ``index``): ``relevant``, ``reasoning``, ``source``,
``score_estimated``, ``truncated``, ``reasoning_tokens``, ``prompt_tokens``. Passages
arrive already cut by the client; the server may cut them further to fit its context,
and says so.

When the caller listens for each verdict (``on_judgments``: the client's scheduler passes
it for a call that acts on each, i.e. ``arerank_iter``, an ``on_judgment`` callback, a
deadline or ``stop_after_relevant``), the request asks for ``"stream": true`` and each
verdict is handed on as its ``result`` event arrives (the same result object as the
non-streamed answer's), still one request per query. A stream
cut short is resent for the documents still missing only, under the retry policy. A
server that refuses ``stream`` (rank1-server in gateway mode: 400, ``param: stream``) is
asked without it from then on; one that ignores it answers JSON, read as usual.

Other hosts' ``/v1/rerank`` (vLLM, TEI, llama-server) serve classifier rerankers, not
rank1: their results lack ``source`` and are refused with a clear error.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Sequence
from typing import Any

import openai
from pydantic import ValidationError

from ..errors import BadResponseError, NoVerdictError, Rank1Error
from ..judgment import Judgment
from ..wire import (
    RerankDocument,
    RerankRequest,
    RerankResult,
    RerankStreamResult,
)
from .base import BatchTransport, JudgeCall
from .sdk import RequestCount, Sdk, counting_requests

logger = logging.getLogger("rank1_integrations")

__all__ = ["RerankTransport"]


class RerankTransport(BatchTransport):
    """Judges with ``POST /rerank`` (one request per query)."""

    name = "rerank"
    reports_early = True

    def __init__(self, sdk: Sdk, model: str) -> None:
        self.sdk = sdk
        self.model = model
        #: Whether to ask for a stream when the caller listens for each verdict (until
        #: the server refuses one).
        self.streams = True

    async def judge(self, call: JudgeCall) -> Judgment:
        (judgment,) = await self.judge_batch([call])
        return judgment

    async def judge_batch(
        self, calls: Sequence[JudgeCall],
        on_judgments: Callable[[list[Judgment]], None] | None = None,
    ) -> list[Judgment]:
        if not calls:
            return []
        first = calls[0]
        for call in calls[1:]:
            if (call.query, call.instruction, call.max_reasoning_tokens) != (
                first.query, first.instruction, first.max_reasoning_tokens
            ):
                raise ValueError("one /rerank request holds the passages of a single query")
        with counting_requests() as count:
            landing = _Landing(calls, on_judgments, count)
            if on_judgments is not None and self.streams:
                try:
                    await self.sdk.retry(lambda: self._stream(landing))
                    return landing.all()
                except openai.BadRequestError as exc:
                    if landing.landed or _param(exc) != "stream":
                        raise
                    # rank1-server in gateway mode serves no stream: ask for whole answers
                    logger.warning("rank1: the server refuses \"stream\" on /rerank (%s); "
                                   "asking for whole answers from now on", exc.message)
                    self.streams = False
            landing.answer(await self.sdk.post("/rerank", self._body(calls)), calls)
            return landing.all()

    async def _stream(self, landing: _Landing) -> None:
        """One try: a streamed request for the documents not landed yet; each verdict
        lands as its ``result`` event arrives."""
        pending = landing.pending()
        if not pending:  # all landed before the stream broke off
            return
        body = self._body(pending, stream=True)
        async with contextlib.aclosing(self.sdk.events("/rerank", body)) as events:
            async for data in events:
                kind = data.get("type") if isinstance(data, dict) else None
                if kind is None:  # a JSON answer: the host ignored ``stream``
                    landing.answer(data, pending)
                    return
                if kind == "done":
                    return
                if kind != "result":
                    continue  # ``reasoning``: it is in each result as well
                try:
                    result = RerankStreamResult.model_validate(data).result
                except ValidationError as exc:
                    raise BadResponseError(
                        f"a /rerank result event is not in the rerank shape: "
                        f"{str(data)[:200]} ({exc})"
                    ) from exc
                if not 0 <= result.index < len(pending):
                    raise BadResponseError(f"a /rerank result event names document "
                                           f"{result.index}, not one of the {len(pending)} sent")
                landing.land([(pending[result.index], result)])
                if len(landing.landed) == len(landing.calls):
                    return  # ``done`` holds the ranking and usage: the client makes its own
        raise BadResponseError("the /rerank stream ended before its done event")

    def _body(self, calls: Sequence[JudgeCall], *, stream: bool = False) -> dict[str, Any]:
        """The request for ``calls`` (all of one query; their order is the documents')."""
        first = calls[0]
        request = RerankRequest(
            model=self.model,
            query=first.query,
            documents=[
                RerankDocument(text=c.passage, title=c.title) if c.title is not None else c.passage
                for c in calls
            ],
            return_documents=False,
            instruction=first.instruction or None,
            max_reasoning_tokens=first.max_reasoning_tokens,
            stream=True if stream else None,
            # the client reads only the verdicts: no event per reasoning token to parse
            stream_reasoning=False if stream else None,
        )
        return request.model_dump(exclude_none=True)


class _Landing:
    """The judgments of one ``judge_batch`` as they land, handed to ``on_judgments``; each
    request sent is counted on the first judgment that lands after it (``requests``)."""

    def __init__(
        self, calls: Sequence[JudgeCall], on_judgments: Callable[[list[Judgment]], None] | None,
        count: RequestCount,
    ) -> None:
        self.calls = calls
        self.on_judgments = on_judgments
        self.landed: dict[int, Judgment] = {}  # by ``call.index``
        self.count = count  # the requests sent so far
        self.counted = 0  # of which counted on a judgment

    def pending(self) -> list[JudgeCall]:
        return [c for c in self.calls if c.index not in self.landed]

    def land(self, found: list[tuple[JudgeCall, RerankResult]]) -> None:
        """``found`` land together (one ``on_judgments`` call)."""
        group = []
        for call, result in found:
            if call.index in self.landed:
                raise BadResponseError(f"the /rerank answer judges document {call.index} twice")
            group.append(result.to_judgment(
                call.index, truncated=call.truncated, requests=self.count.n - self.counted,
            ))
            self.counted = self.count.n
        for judgment in group:
            self.landed[judgment.index] = judgment
        if group and self.on_judgments is not None:
            self.on_judgments(group)

    def answer(self, response: Any, sent: Sequence[JudgeCall]) -> None:
        """A whole (non-streamed) answer to the request for ``sent``: its results land
        together (those it has, when it lacks some)."""
        by_index = _results(response)
        self.land([(call, by_index[i]) for i, call in enumerate(sent) if i in by_index])

    def all(self) -> list[Judgment]:
        """Every call's judgment, in order; a document without one raises."""
        for position, call in enumerate(self.calls):
            if call.index not in self.landed:
                raise NoVerdictError(f"the /rerank response has no result for document {position}")
        return [self.landed[c.index] for c in self.calls]


def _results(response: Any) -> dict[int, RerankResult]:
    """A non-streamed ``/rerank`` answer's results, by document index."""
    results = response.get("results") if isinstance(response, dict) else None
    if not isinstance(results, list):
        raise Rank1Error(f"the /rerank response has no results: {str(response)[:200]}")
    by_index: dict[int, RerankResult] = {}
    for item in results:
        try:
            result = RerankResult.model_validate(item)
        except ValidationError as exc:
            raise Rank1Error(
                f"a /rerank result is not in the rerank shape: {str(item)[:200]} ({exc})"
            ) from exc
        by_index[result.index] = result
    return by_index


def _param(exc: openai.APIStatusError) -> str | None:
    """The ``param`` an error body names, if any."""
    body: Any = exc.body
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        body = body["error"]
    param = body.get("param") if isinstance(body, dict) else None
    return param if isinstance(param, str) else None
