"""``POST /v1/rerank``: Jina's and Cohere v1's rerank API in one route (and what
rank1's own client sends), in :mod:`rank1_integrations.wire`'s
:class:`~rank1_integrations.wire.CohereV1RerankRequest`; rank1's verdict per document as
extra keys. Results best first, ``top_n`` of them (:mod:`~rank1_server.reranking`).

* ``return_documents`` (default true, as Jina's): ``document`` is ``{"text": ...}`` for
  a string, the object as given for an object; without it the key is left out.
* ``rank_fields``: the object fields judged; ``max_chunks_per_doc``: a passage cut of
  that many 512-token chunks (rank1 judges one passage per document, never chunks).
* The answer carries Jina's ``usage`` and Cohere's ``meta``; errors carry Cohere's
  ``message`` beside OpenAI's ``error`` object.
"""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response

from rank1_integrations.wire import CohereMeta, CohereV1RerankRequest, RerankResponse

from ..deps import State, require_key
from ..errors import COHERE_AND_OPENAI, error_shape
from ..rank1 import Document
from ..reranking import rerank
from ..streaming import stream_rerank

__all__ = ["PATH", "router"]

PATH = "/v1/rerank"
error_shape(PATH, COHERE_AND_OPENAI)

router = APIRouter(dependencies=[Depends(require_key)])


@router.post(PATH)
async def rerank_v1(
    body: CohereV1RerankRequest, request: Request, state: State
) -> Response:
    docs = [Document(text, title) for text, title in body.passages()]
    if body.stream:
        return await stream_rerank(
            state, body, docs, body.max_reasoning_tokens or state.config.max_reasoning_tokens
        )
    ranked = await rerank(
        request, state, body.query, docs, top_n=body.top_n, instruction=body.instruction,
        max_reasoning_tokens=body.max_reasoning_tokens,
        max_passage_tokens=body.max_passage_tokens(), deadline=body.deadline,
        on_error=body.on_error,
    )
    response = RerankResponse(
        id=f"rerank-{uuid.uuid4().hex}", model=state.model_name,
        results=ranked.results(body.returned_document if body.return_documents else None),
        usage=ranked.usage(),
        meta=CohereMeta.of("1", ranked.documents, ranked.prompt_tokens,
                           ranked.completion_tokens),
        **ranked.extras(),
    )
    return JSONResponse(response.model_dump(exclude_unset=True))
