"""``/v1/rerank`` of the bundled ``rank1-server``: all passages of a query in one request.

The server runs the whole rank1 protocol in-process (reasoning, answer position, forced
answer) and returns one result per document with the rank1 fields beside the usual
Jina/Cohere ones (``relevance_score``, ``index``): ``relevant``, ``reasoning``, ``source``,
``score_estimated``, ``truncated``, ``reasoning_tokens``. Passages arrive already cut by
the client; the server may cut them further to fit its context, and says so.

Other hosts' ``/v1/rerank`` (vLLM, TEI, llama-server) serve classifier rerankers, not
rank1: their results lack ``source`` and are refused with a clear error.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..errors import NoVerdictError, Rank1Error
from ..judgment import Judgment
from ..protocol import VerdictSource, is_relevant
from .base import BatchTransport, JudgeCall
from .sdk import Sdk

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
        documents: list[str | dict[str, str]] = [
            {"text": c.passage, "title": c.title} if c.title is not None else c.passage
            for c in calls
        ]
        body: dict[str, Any] = {
            "model": self.model,
            "query": first.query,
            "documents": documents,
            "return_documents": False,
            "max_reasoning_tokens": first.max_reasoning_tokens,
        }
        if first.instruction:
            body["instruction"] = first.instruction
        response = await self.sdk.post("/rerank", body)
        results = response.get("results") if isinstance(response, dict) else None
        if not isinstance(results, list):
            raise Rank1Error(f"the /rerank response has no results: {str(response)[:200]}")
        by_index: dict[int, dict[str, Any]] = {}
        for item in results:
            by_index[int(item["index"])] = item
        out = []
        for position, call in enumerate(calls):
            item = by_index.get(position)
            if item is None:
                raise NoVerdictError(f"the /rerank response has no result for document {position}")
            out.append(_judgment(call, item))
        return out


def _judgment(call: JudgeCall, item: dict[str, Any]) -> Judgment:
    source = item.get("source")
    if source is None:
        raise Rank1Error(
            "this /rerank endpoint is not rank1-server's (its results carry no rank1 "
            "'source'); use mode='completions' for other hosts"
        )
    score = float(item["relevance_score"])
    relevant = item.get("relevant")
    return Judgment(
        index=call.index,
        relevant=bool(relevant) if relevant is not None else is_relevant(score),
        score=score,
        reasoning=item.get("reasoning") or "",
        source=VerdictSource(source),
        score_estimated=bool(item.get("score_estimated", False)),
        reasoning_tokens=int(item.get("reasoning_tokens") or 0),
        truncated=call.truncated or bool(item.get("truncated", False)),
    )
