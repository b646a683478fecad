"""What every rerank route does, written once: judge a query's documents on the engine
(or, in gateway mode, at the upstream), rank them
(:func:`~rank1_integrations.ranking.rank_order`), cut to ``top_n``, and turn refusals and
failures into API errors. The route modules (``/v1/rerank``, ``/v2/rerank``, ``/rerank``)
only read their request shape and write their response shape.

The per-request options, one rule for every route:

* ``deadline`` (seconds, engine and gateway): the whole request must be judged by then;
  otherwise the work still running is cancelled (engine slots freed, upstream requests
  closed) and the request is answered 504 ``deadline_exceeded``. No score is invented
  for a document not judged in time.
* ``on_error`` (``"raise"`` default, or ``"drop"``): a document the upstream failed on
  (gateway mode) fails the request with 502 naming the upstream and its error, or is
  left out of the results and listed in the answer's ``dropped`` (``index``, ``error``).
  On the engine no document fails alone (an engine failure fails the whole request), so
  there is nothing for ``"drop"`` to drop: it is accepted and has no effect.

Usage (in a route)::

    ranked = await rerank(request, state, query, docs, top_n=body.top_n)
    results = ranked.results(document=lambda i: {"text": texts[i]})
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import openai
from fastapi import Request

from rank1_integrations import Rank1Client
from rank1_integrations.errors import DeadlineExceeded, Rank1Error
from rank1_integrations.judgment import Judgment
from rank1_integrations.ranking import rank_order
from rank1_integrations.wire import RerankDropped, RerankOnError, RerankResult, RerankUsage

from .deps import until_disconnect
from .engine import QueueFull
from .errors import ApiError, queue_full
from .rank1 import Document, JudgeResult, NoRoom, Rank1Judge
from .state import ServerState

__all__ = ["Ranked", "deadline_exceeded", "engine_judge", "engine_refusal", "rerank"]

T = TypeVar("T")


@dataclass(frozen=True)
class Ranked:
    """The judged documents: ``order`` best first (``top_n`` of them), ``result`` all of
    them in input order with the tokens they took; ``dropped`` the documents left out
    under ``on_error="drop"`` (gateway mode), ``documents`` all those of the request."""

    order: list[Judgment]
    result: JudgeResult
    documents: int
    dropped: tuple[RerankDropped, ...] = ()

    @classmethod
    def of(cls, result: JudgeResult, top_n: int | None,
           dropped: Sequence[RerankDropped] = ()) -> Ranked:
        """``result``'s judgments ranked (:func:`rank_order`), cut to ``top_n``."""
        order = rank_order(result.judgments, lambda j: j.score)
        return cls(order[:top_n] if top_n is not None else order, result,
                   len(result.judgments) + len(dropped), tuple(dropped))

    def extras(self) -> dict[str, Any]:
        """The response's optional keys: ``dropped`` when a document was left out (the
        key is absent otherwise)."""
        return {"dropped": list(self.dropped)} if self.dropped else {}

    def results(
        self, document: Callable[[int], dict[str, Any]] | None = None
    ) -> list[RerankResult]:
        """The result items, best first; ``document(index)`` is written back when given
        (never ``null``: the key is left out otherwise)."""
        return [
            RerankResult.from_judgment(
                j, reasoning_budget=self.result.reasoning_budgets[j.index],
                document=document(j.index) if document is not None else None,
            )
            for j in self.order
        ]

    def usage(self) -> RerankUsage:
        """Jina's and vLLM's ``usage``."""
        prompt, completion = self.result.prompt_tokens, self.result.completion_tokens
        return RerankUsage(prompt_tokens=prompt, completion_tokens=completion,
                           total_tokens=prompt + completion)

    @property
    def prompt_tokens(self) -> int:
        return self.result.prompt_tokens

    @property
    def completion_tokens(self) -> int:
        return self.result.completion_tokens


async def rerank(
    request: Request,
    state: ServerState,
    query: str,
    docs: Sequence[Document],
    *,
    top_n: int | None = None,
    instruction: str | None = None,
    max_reasoning_tokens: int | None = None,
    max_passage_tokens: int | None = None,
    deadline: float | None = None,
    on_error: RerankOnError | None = None,
) -> Ranked:
    """Judge ``docs`` for ``query`` (cancelled if the client leaves) and rank them;
    ``deadline`` and ``on_error`` as the module says.

    Raises :class:`~rank1_server.errors.ApiError`: 503 while the model loads, 400 when the
    model cannot run rank1 or the query leaves no room for a passage, 413 for more
    documents than the queue holds, 429 (``Retry-After``) when the queue is full, 504 past
    the ``deadline``; in gateway mode (``--upstream``) 502 naming the upstream's failure."""
    if state.gateway is not None:
        return await _through_upstream(
            request, state, state.gateway, query, docs, top_n=top_n, instruction=instruction,
            max_reasoning_tokens=max_reasoning_tokens, max_passage_tokens=max_passage_tokens,
            deadline=deadline, on_error=on_error or "raise",
        )
    judge = engine_judge(state, docs)
    budget = max_reasoning_tokens or state.config.max_reasoning_tokens
    try:
        result = await until_disconnect(request, _within(deadline, judge.judge_many(
            query, docs, instruction=instruction, max_reasoning_tokens=budget,
            max_passage_tokens=max_passage_tokens,
        )))
    except asyncio.TimeoutError as exc:  # wait_for's; the builtin TimeoutError from 3.11
        assert deadline is not None  # only wait_for raises it
        raise deadline_exceeded(deadline, len(docs)) from exc
    except (QueueFull, ValueError) as exc:  # NoRoom is a ValueError
        raise engine_refusal(exc) from exc
    return Ranked.of(result, top_n)


async def _within(deadline: float | None, work: Awaitable[T]) -> T:
    """``await work``; past ``deadline`` seconds it is cancelled and
    :class:`asyncio.TimeoutError` raised."""
    if deadline is None:
        return await work
    return await asyncio.wait_for(work, deadline)


def deadline_exceeded(deadline: float, documents: int, judged: int | None = None
                      ) -> ApiError:
    """The 504 for a request whose ``deadline`` passed before every document was judged
    (the work left was cancelled; no score stands in for a missing verdict)."""
    done = "" if judged is None else f" ({judged} of {documents} judged)"
    return ApiError(504, f"the deadline of {deadline:g} s passed before the {documents} "
                    f"documents were judged{done}; the rest was cancelled", type="timeout_error",
                    param="deadline", code="deadline_exceeded")


def engine_refusal(exc: QueueFull | ValueError) -> ApiError:
    """The API error for the engine refusing a judging call: 429 (``Retry-After``) when
    its queue is full, 400 when the query leaves no room for a passage or the budget is
    bad. The rerank routes and the stream answer these alike."""
    if isinstance(exc, QueueFull):
        return queue_full(exc)
    if isinstance(exc, NoRoom):
        return ApiError(400, str(exc), param="query", code="context_length_exceeded")
    return ApiError(400, str(exc), param="max_reasoning_tokens")


def engine_judge(state: ServerState, docs: Sequence[Document]) -> Rank1Judge:
    """The engine's judge for ``docs``, or the API error that refuses them: 503 while the
    model loads, 400 when it cannot run rank1, 413 for more documents than the queue
    holds."""
    state.ready()
    judge = state.judge
    if judge is None:
        raise ApiError(400, f"this model cannot run rank1: {state.rank1_error}",
                       param="model", code="model_not_supported")
    _check_count(state, docs)
    return judge


def _check_count(state: ServerState, docs: Sequence[Document]) -> None:
    limit = state.config.max_queue
    if len(docs) > limit:
        raise ApiError(413, f"{len(docs)} documents in one request; the limit "
                       f"is {limit}", param="documents", code="too_many_documents")


async def _through_upstream(
    request: Request,
    state: ServerState,
    client: Rank1Client,
    query: str,
    docs: Sequence[Document],
    *,
    top_n: int | None,
    instruction: str | None,
    max_reasoning_tokens: int | None,
    max_passage_tokens: int | None,
    deadline: float | None,
    on_error: RerankOnError,
) -> Ranked:
    """Gateway mode: judge at the upstream with :meth:`Rank1Client.ajudge_all` (input
    order), then rank here, as for the engine. Bounded: ``parallel`` documents in flight
    toward the upstream (one client for all requests), ``max_queue`` more waiting, 429
    with ``Retry-After`` beyond. The client's own ``deadline`` (``on_deadline="raise"``)
    cancels the upstream requests still running; ``on_error="drop"`` keeps the failed
    judgments (``"keep"``) to name them in ``dropped``."""
    _check_count(state, docs)
    if max_passage_tokens is not None:
        raise ApiError(400, "a gateway has no tokenizer to cut passages by tokens: "
                       "max_tokens_per_doc / max_chunks_per_doc are not served with --upstream",
                       param="max_tokens_per_doc", code="not_supported")
    budget = max_reasoning_tokens or state.config.max_reasoning_tokens
    # The client's concurrency (``parallel``) bounds the documents in flight toward the
    # upstream; at most ``max_queue`` more may wait: a request that does not fit is
    # refused whole (429, Retry-After), the engine's rule.
    n, cfg = len(docs), state.config
    waiting = max(0, state.gateway_admitted - cfg.parallel)
    if state.gateway_admitted + n - cfg.parallel > cfg.max_queue:
        raise queue_full(QueueFull(f"{waiting} documents wait for the upstream; the "
                                   f"limit is {cfg.max_queue}"))
    state.gateway_admitted += n
    try:
        judgments = await until_disconnect(request, client.ajudge_all(
            query, docs, instruction=instruction, max_reasoning_tokens=budget,
            on_error="raise" if on_error == "raise" else "keep",
            deadline=deadline, on_deadline="raise",
        ))
    except DeadlineExceeded as exc:  # before Rank1Error: it is one
        assert deadline is not None  # only a deadline raises it
        judged = sum(1 for j in exc.judgments if j.score is not None)
        raise deadline_exceeded(deadline, n, judged) from exc
    except (Rank1Error, openai.APIError) as exc:
        raise ApiError(502, f"the upstream {cfg.upstream} failed: "
                       f"{type(exc).__name__}: {exc}", type="upstream_error",
                       code="upstream_error") from exc
    finally:
        state.gateway_admitted -= n
    kept = [j for j in judgments if j.error is None and j.score is not None]
    dropped = [
        RerankDropped(index=j.index, error=f"the upstream {cfg.upstream} failed: "
                      f"{j.error or 'no verdict'}")
        for j in judgments if j.error is not None or j.score is None
    ]
    state.metrics.dropped_documents.inc(len(dropped))
    result = JudgeResult(
        kept, sum(j.prompt_tokens for j in kept),
        sum(j.reasoning_tokens for j in kept), (budget,) * n,
    )
    return Ranked.of(result, top_n, dropped)
