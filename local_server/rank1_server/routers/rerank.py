"""``POST /v1/rerank`` (and ``/rerank``): the Jina/Cohere shape with rank1's verdict per
document, in :mod:`rank1_integrations.wire`'s models; results best first
(:func:`~rank1_integrations.ranking.rank_order`), ``top_n`` of them."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response

from rank1_integrations.ranking import rank_order
from rank1_integrations.wire import (
    RerankDocument,
    RerankRequest,
    RerankResponse,
    RerankResult,
    RerankUsage,
)

from ..deps import State, require_key, until_disconnect
from ..engine import QueueFull
from ..errors import ApiError, queue_full
from ..rank1 import Document, NoRoom
from ..streaming import stream_rerank

__all__ = ["router"]

router = APIRouter(dependencies=[Depends(require_key)])


@router.post("/v1/rerank")
@router.post("/rerank", include_in_schema=False)
async def rerank(
    body: RerankRequest, request: Request, state: State
) -> Response:
    state.ready()
    judge = state.judge
    if judge is None:
        raise ApiError(400, f"this model cannot run rank1: {state.rank1_error}",
                       param="model", code="model_not_supported")
    limit = state.config.max_queue
    if len(body.documents) > limit:
        raise ApiError(413, f"{len(body.documents)} documents in one request; the limit "
                       f"is {limit}", param="documents", code="too_many_documents")
    docs = [
        Document(d.text, d.title) if isinstance(d, RerankDocument) else Document(d)
        for d in body.documents
    ]
    budget = body.max_reasoning_tokens or state.config.max_reasoning_tokens
    if body.stream:
        return await stream_rerank(state, body, docs, budget)
    try:
        result = await until_disconnect(request, judge.judge_many(
            body.query, docs, instruction=body.instruction, max_reasoning_tokens=budget,
        ))
    except QueueFull as exc:
        raise queue_full(exc) from exc
    except NoRoom as exc:
        raise ApiError(400, str(exc), param="query", code="context_length_exceeded") from exc
    except ValueError as exc:
        raise ApiError(400, str(exc), param="max_reasoning_tokens") from exc
    order = rank_order(result.judgments, lambda j: j.score)
    if body.top_n is not None:
        order = order[: body.top_n]
    results = [
        RerankResult.from_judgment(
            j, reasoning_budget=result.reasoning_budgets[j.index],
            document=_document(docs[j.index]) if body.return_documents else None,
        )
        for j in order
    ]
    response = RerankResponse(
        id=f"rerank-{uuid.uuid4().hex}", model=state.model_name, results=results,
        usage=RerankUsage(
            prompt_tokens=result.prompt_tokens,
            completion_tokens=result.completion_tokens,
            total_tokens=result.prompt_tokens + result.completion_tokens,
        ),
    )
    return JSONResponse(response.model_dump(exclude_unset=True))


def _document(doc: Document) -> RerankDocument:
    """A document as written back (``title`` only when it has one)."""
    if doc.title is None:
        return RerankDocument(text=doc.text)
    return RerankDocument(text=doc.text, title=doc.title)
