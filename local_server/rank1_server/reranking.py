"""What every rerank route does, written once: judge a query's documents on the engine,
rank them (:func:`~rank1_integrations.ranking.rank_order`), cut to ``top_n``, and turn
the engine's refusals into API errors. The route modules (``/v1/rerank``, ``/v2/rerank``,
``/rerank``) only read their request shape and write their response shape.

Usage (in a route)::

    ranked = await rerank(request, state, query, docs, top_n=body.top_n)
    results = ranked.results(document=lambda i: {"text": texts[i]})
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import openai
from fastapi import Request

from rank1_integrations import Rank1Client
from rank1_integrations.errors import Rank1Error
from rank1_integrations.judgment import Judgment
from rank1_integrations.ranking import rank_order
from rank1_integrations.wire import RerankResult, RerankUsage

from .deps import until_disconnect
from .engine import QueueFull
from .errors import ApiError, queue_full
from .rank1 import Document, JudgeResult, NoRoom, Rank1Judge
from .state import ServerState

__all__ = ["Ranked", "engine_judge", "engine_refusal", "rerank"]


@dataclass(frozen=True)
class Ranked:
    """The judged documents: ``order`` best first (``top_n`` of them), ``result`` all of
    them in input order with the tokens they took."""

    order: list[Judgment]
    result: JudgeResult
    documents: int

    @classmethod
    def of(cls, result: JudgeResult, top_n: int | None) -> Ranked:
        """``result``'s judgments ranked (:func:`rank_order`), cut to ``top_n``."""
        order = rank_order(result.judgments, lambda j: j.score)
        return cls(order[:top_n] if top_n is not None else order, result,
                   len(result.judgments))

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
) -> Ranked:
    """Judge ``docs`` for ``query`` (cancelled if the client leaves) and rank them.

    Raises :class:`~rank1_server.errors.ApiError`: 503 while the model loads, 400 when the
    model cannot run rank1 or the query leaves no room for a passage, 413 for more
    documents than the queue holds, 429 (``Retry-After``) when the queue is full; in
    gateway mode (``--upstream``) 502 naming the upstream's failure."""
    if state.gateway is not None:
        return await _through_upstream(
            request, state, state.gateway, query, docs, top_n=top_n, instruction=instruction,
            max_reasoning_tokens=max_reasoning_tokens, max_passage_tokens=max_passage_tokens,
        )
    judge = engine_judge(state, docs)
    budget = max_reasoning_tokens or state.config.max_reasoning_tokens
    try:
        result = await until_disconnect(request, judge.judge_many(
            query, docs, instruction=instruction, max_reasoning_tokens=budget,
            max_passage_tokens=max_passage_tokens,
        ))
    except (QueueFull, ValueError) as exc:  # NoRoom is a ValueError
        raise engine_refusal(exc) from exc
    return Ranked.of(result, top_n)


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
) -> Ranked:
    """Gateway mode: judge at the upstream with :meth:`Rank1Client.ajudge_all` (input
    order), then rank here, as for the engine. Bounded: ``parallel`` documents in flight
    toward the upstream (one client for all requests), ``max_queue`` more waiting, 429
    with ``Retry-After`` beyond."""
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
            on_error="raise",
        ))
    except (Rank1Error, openai.APIError) as exc:
        raise ApiError(502, f"the upstream {cfg.upstream} failed: "
                       f"{type(exc).__name__}: {exc}", type="upstream_error",
                       code="upstream_error") from exc
    finally:
        state.gateway_admitted -= n
    result = JudgeResult(
        judgments, sum(j.prompt_tokens for j in judgments),
        sum(j.reasoning_tokens for j in judgments), tuple(budget for _ in judgments),
    )
    return Ranked.of(result, top_n)
