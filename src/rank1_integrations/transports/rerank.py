"""``/v1/rerank`` of the bundled ``rank1-server``: all passages of a query in one request.

The server runs the whole rank1 protocol in-process (reasoning, answer position, forced
answer) and returns one result per document with the rank1 fields beside the usual
Jina/Cohere ones (``relevance_score``, ``index``): ``relevant``, ``reasoning``, ``source``,
``score_estimated``, ``truncated``, ``reasoning_tokens``, ``prompt_tokens``. Passages
arrive already cut by the client; the server may cut them further to fit its context,
and says so.

Other hosts' ``/v1/rerank`` (vLLM, TEI, llama-server) serve classifier rerankers, not
rank1: their results lack ``source`` and are refused with a clear error.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import ValidationError

from ..errors import NoVerdictError, Rank1Error
from ..judgment import Judgment
from ..wire import RerankDocument, RerankRequest, RerankResult
from .base import BatchTransport, JudgeCall
from .sdk import Sdk, counting_requests

__all__ = ["RerankTransport"]


class RerankTransport(BatchTransport):
    """Judges with ``POST /rerank`` (one request per query)."""

    name = "rerank"

    def __init__(self, sdk: Sdk, model: str) -> None:
        self.sdk = sdk
        self.model = model

    async def judge(self, call: JudgeCall) -> Judgment:
        (judgment,) = await self.judge_batch([call])
        return judgment

    async def judge_batch(self, calls: Sequence[JudgeCall]) -> list[Judgment]:
        if not calls:
            return []
        first = calls[0]
        for call in calls[1:]:
            if (call.query, call.instruction, call.max_reasoning_tokens) != (
                first.query, first.instruction, first.max_reasoning_tokens
            ):
                raise ValueError("one /rerank request holds the passages of a single query")
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
        )
        body = request.model_dump(exclude_none=True)
        with counting_requests() as count:
            response = await self.sdk.post("/rerank", body)
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
        out = []
        for position, call in enumerate(calls):
            found = by_index.get(position)
            if found is None:
                raise NoVerdictError(f"the /rerank response has no result for document {position}")
            # the request is shared: counted once, on the first judgment
            out.append(found.to_judgment(
                call.index, truncated=call.truncated, requests=count.n if position == 0 else 0
            ))
        return out

