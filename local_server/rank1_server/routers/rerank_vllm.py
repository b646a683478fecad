"""``POST /rerank``: vLLM's and llama-server's rerank path (litellm's ``hosted_vllm``
provider posts here), in :mod:`rank1_integrations.wire`'s
:class:`~rank1_integrations.wire.RerankRequest`: ``{id, model, results, usage}``, results
best first, ``top_n`` of them, ``document: {text}`` only with ``return_documents``.
Errors in OpenAI's shape, as vLLM writes them.
"""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from rank1_integrations.wire import RerankRequest, RerankResponse

from ..deps import State, require_key
from ..rank1 import Document
from ..reranking import rerank

__all__ = ["PATH", "router"]

PATH = "/rerank"

router = APIRouter(dependencies=[Depends(require_key)])


@router.post(PATH, include_in_schema=False)
async def rerank_vllm(
    body: RerankRequest, request: Request, state: State
) -> JSONResponse:
    docs = [Document(text, title) for text, title in body.passages()]
    ranked = await rerank(
        request, state, body.query, docs, top_n=body.top_n, instruction=body.instruction,
        max_reasoning_tokens=body.max_reasoning_tokens, deadline=body.deadline,
        on_error=body.on_error,
    )
    response = RerankResponse(
        id=f"rerank-{uuid.uuid4().hex}", model=state.model_name,
        results=ranked.results(body.returned_document if body.return_documents else None),
        usage=ranked.usage(),
        **ranked.extras(),
    )
    return JSONResponse(response.model_dump(exclude_unset=True))

