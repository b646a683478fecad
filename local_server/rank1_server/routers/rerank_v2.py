"""``POST /v2/rerank``: Cohere's v2 rerank API (what ``cohere.ClientV2``, LangChain's and
LlamaIndex's ``CohereRerank`` call), in :mod:`rank1_integrations.wire`'s
:class:`~rank1_integrations.wire.CohereV2RerankRequest`.

Answer ``{id, results: [{index, relevance_score, ...rank1's fields}], meta}``, best first,
``top_n`` of them; ``max_tokens_per_doc`` cuts each passage to that many of the model's
tokens (the result says ``truncated``). Errors in Cohere's shape (``{"message"}``, 400 for a
bad body).
"""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from rank1_integrations.wire import CohereMeta, CohereV2RerankRequest, CohereV2RerankResponse

from ..deps import State, require_key
from ..errors import COHERE, error_shape
from ..rank1 import Document
from ..reranking import rerank

__all__ = ["PATH", "router"]

PATH = "/v2/rerank"
error_shape(PATH, COHERE)

router = APIRouter(dependencies=[Depends(require_key)])


@router.post(PATH)
async def rerank_v2(
    body: CohereV2RerankRequest, request: Request, state: State
) -> JSONResponse:
    ranked = await rerank(
        request, state, body.query, [Document(d) for d in body.documents], top_n=body.top_n,
        instruction=body.instruction, max_reasoning_tokens=body.max_reasoning_tokens,
        max_passage_tokens=body.max_tokens_per_doc, deadline=body.deadline,
        on_error=body.on_error,
    )
    response = CohereV2RerankResponse(
        id=str(uuid.uuid4()), results=ranked.results(),
        meta=CohereMeta.of("2", ranked.documents, ranked.prompt_tokens,
                           ranked.completion_tokens),
        **ranked.extras(),
    )
    return JSONResponse(response.model_dump(exclude_unset=True))
