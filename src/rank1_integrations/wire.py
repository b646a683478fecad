"""The ``/v1/rerank`` wire format, written once: what the client sends and reads, and
what ``rank1-server`` validates and answers.

The shape is Jina's / Cohere v2's (``query``, ``documents``, ``top_n``,
``return_documents``; results with ``index`` and ``relevance_score``) plus rank1's own
options (``instruction``, ``max_reasoning_tokens``) and result fields (``relevant``,
``reasoning``, ``source``, ``score_estimated``, ``truncated``, ``reasoning_tokens``,
``prompt_tokens``, ``reasoning_budget``). Unknown fields are ignored, as vLLM does.

Both sides convert through here: the server with :meth:`RerankResult.from_judgment`, the
client with :meth:`RerankResult.to_judgment`. (The server package imports this module; the
client package never imports the server.)

Usage::

    item = RerankResult.from_judgment(judgment, reasoning_budget=2048)
    item.to_judgment(index=0, truncated=False) == judgment   # for a server judgment
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from .errors import Rank1Error
from .judgment import Judgment
from .protocol import VerdictSource, is_relevant

__all__ = [
    "RerankDocument",
    "RerankRequest",
    "RerankResponse",
    "RerankResult",
    "RerankStreamDone",
    "RerankStreamError",
    "RerankStreamReasoning",
    "RerankStreamResult",
    "RerankUsage",
    "parse_stream_event",
    "stream_event",
]


class _Wire(BaseModel):
    model_config = ConfigDict(extra="ignore")


class RerankDocument(_Wire):
    """A document given as an object (a plain string is a document too)."""

    text: str
    title: str | None = None


class RerankRequest(_Wire):
    """``POST /v1/rerank``: the Jina / Cohere v2 shape plus rank1's options."""

    model: str | None = None
    query: str = Field(min_length=1)
    documents: list[str | RerankDocument]
    top_n: int | None = Field(default=None, ge=0)
    return_documents: bool = True
    #: Relevance definition: text appended to the query, or a template with ``{query}``.
    instruction: str | None = None
    #: Most tokens rank1 may spend reasoning per document (server default if omitted).
    max_reasoning_tokens: int | None = Field(default=None, ge=1)
    #: rank1-server only: answer Server-Sent Events (:class:`RerankStreamReasoning`,
    #: :class:`RerankStreamResult`, then :class:`RerankStreamDone`) instead of one JSON.
    #: None (the default) is left out of a dumped request, so other hosts never see it.
    stream: bool | None = None

    @field_validator("query")
    @classmethod
    def _query_not_blank(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("query must not be blank")
        return v


class RerankResult(_Wire):
    """One document's result. The rank1 fields are optional so that another host's
    ``/rerank`` answer still parses, and is then refused by :meth:`to_judgment`."""

    index: int
    relevance_score: float
    relevant: bool | None = None
    reasoning: str | None = None
    #: How the verdict was obtained (a :class:`~.protocol.VerdictSource` value); only
    #: rank1-server writes it.
    source: str | None = None
    score_estimated: bool | None = None
    #: True when the server cut the passage to fit its context.
    truncated: bool | None = None
    reasoning_tokens: int | None = None
    #: Tokens of the document's prompt (its first request; a forced answer's is not added).
    prompt_tokens: int | None = None
    #: The reasoning budget the document ran with, after fitting the server's context.
    reasoning_budget: int | None = None
    #: Only with ``return_documents``.
    document: RerankDocument | None = None

    @classmethod
    def from_judgment(
        cls, judgment: Judgment, *, reasoning_budget: int, document: RerankDocument | None = None
    ) -> RerankResult:
        """The server's result for one judgment (``document`` when the request asked for
        documents back)."""
        fields: dict[str, Any] = {
            "index": judgment.index,
            "relevance_score": judgment.score,
            "relevant": judgment.relevant,
            "reasoning": judgment.reasoning,
            "source": judgment.source.value if judgment.source else None,
            "score_estimated": judgment.score_estimated,
            "truncated": judgment.truncated,
            "reasoning_tokens": judgment.reasoning_tokens,
            "prompt_tokens": judgment.prompt_tokens,
            "reasoning_budget": reasoning_budget,
        }
        if document is not None:
            fields["document"] = document
        return cls(**fields)

    def wire(self) -> dict[str, object]:
        """The JSON object written on the wire (``document`` only when set)."""
        return self.model_dump(exclude_unset=True)

    def to_judgment(self, index: int, *, truncated: bool = False, requests: int = 0) -> Judgment:
        """The client's judgment for the passage at ``index`` of its input; ``truncated``
        says the client cut the passage (the server's cut is added to it); ``requests``
        the HTTP requests to count on it.

        Raises :class:`~.errors.Rank1Error` for a result without rank1's ``source``: it
        came from another host's ``/rerank`` (a classifier reranker, not rank1)."""
        if self.source is None:
            raise Rank1Error(
                "this /rerank endpoint is not rank1-server's (its results carry no rank1 "
                "'source'); use mode='completions' for other hosts"
            )
        score = float(self.relevance_score)
        return Judgment(
            index=index,
            relevant=self.relevant if self.relevant is not None else is_relevant(score),
            score=score,
            reasoning=self.reasoning or "",
            source=VerdictSource(self.source),
            score_estimated=bool(self.score_estimated),
            reasoning_tokens=self.reasoning_tokens or 0,
            prompt_tokens=self.prompt_tokens or 0,
            requests=requests,
            truncated=truncated or bool(self.truncated),
        )


class RerankUsage(_Wire):
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    total_tokens: int | None = None


class RerankResponse(_Wire):
    """The answer to ``POST /v1/rerank``: results best first (``top_n`` of them)."""

    id: str | None = None
    model: str | None = None
    results: list[RerankResult]
    usage: RerankUsage | None = None


# ------------------------------------------------------------------ streaming (SSE)
#
# ``POST /v1/rerank`` with ``"stream": true`` answers ``text/event-stream``; every event is
# ``event: <type>`` plus ``data: <json>`` whose ``type`` repeats the event name:
#
# * ``reasoning`` - a piece of one document's reasoning as it is generated; a document's
#   pieces, joined, are its chain (``result.reasoning`` is that, stripped). Pieces of
#   different documents interleave.
# * ``result`` - one document's verdict as it lands (every document, in the order they
#   finish): the same object as in the non-streamed ``results``.
# * ``done`` - last: ``ranking`` (input indices best first, ``top_n`` of them: the
#   non-streamed ``results`` are the ``result`` events in that order) and ``usage``.
# * ``error`` - instead of ``done`` when the request fails after the stream began.


class RerankStreamReasoning(_Wire):
    """``event: reasoning``: a piece of document ``index``'s reasoning."""

    type: Literal["reasoning"] = "reasoning"
    index: int
    delta: str


class RerankStreamResult(_Wire):
    """``event: result``: document ``result.index``'s verdict, as in ``results``."""

    type: Literal["result"] = "result"
    result: RerankResult


class RerankStreamDone(_Wire):
    """``event: done``: the ranking (input indices, best first, ``top_n``) and usage."""

    type: Literal["done"] = "done"
    id: str | None = None
    model: str | None = None
    ranking: list[int]
    usage: RerankUsage | None = None


class RerankStreamError(_Wire):
    """``event: error``: the request failed after the stream began (OpenAI error shape)."""

    type: Literal["error"] = "error"
    error: dict[str, object]


#: Any one event of the stream.
RerankStreamEvent = (
    RerankStreamReasoning | RerankStreamResult | RerankStreamDone | RerankStreamError
)

_STREAM_EVENTS: dict[str, type[_Wire]] = {
    "reasoning": RerankStreamReasoning,
    "result": RerankStreamResult,
    "done": RerankStreamDone,
    "error": RerankStreamError,
}


def stream_event(event: RerankStreamEvent) -> str:
    """One event as Server-Sent Events text (``event:``, ``data:``, blank line)."""
    data = {"type": event.type, **event.model_dump(exclude_unset=True)}
    return f"event: {event.type}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


def parse_stream_event(data: str) -> RerankStreamEvent:
    """An event from one SSE ``data:`` payload (its ``type`` says which)."""
    raw = json.loads(data)
    kind = raw.get("type") if isinstance(raw, dict) else None
    model = _STREAM_EVENTS.get(kind)  # type: ignore[arg-type]
    if model is None:
        raise Rank1Error(f"unknown /v1/rerank stream event: {data[:200]!r}")
    return model.model_validate(raw)  # type: ignore[return-value]
