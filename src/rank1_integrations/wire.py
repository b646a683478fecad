"""The rerank wire formats, written once: what the client sends and reads, and what
``rank1-server`` validates and answers on ``/v1/rerank`` and ``/rerank`` (Jina, Cohere v1,
vLLM) and ``/v2/rerank`` (Cohere v2).

The shape is Jina's / Cohere v2's (``query``, ``documents``, ``top_n``,
``return_documents``; results with ``index`` and ``relevance_score``) plus rank1's own
options (``instruction``, ``max_reasoning_tokens``, and rank1-server's per-request
``deadline`` and ``on_error``) and result fields (``relevant``,
``reasoning``, ``source``, ``score_estimated``, ``truncated``, ``reasoning_tokens``,
``prompt_tokens``, ``reasoning_budget``). Unknown fields are ignored, as vLLM does.

Both sides convert through here: the server with :meth:`RerankResult.from_judgment`, the
client with :meth:`RerankResult.to_judgment`. (The server package imports this module; the
client package never imports the server.)

The Cohere shapes (:class:`CohereV1RerankRequest`, :class:`CohereV2RerankRequest`,
:class:`CohereMeta`) are the server's: the client package speaks ``/v1/rerank`` with
:class:`RerankRequest`. Cohere's passage options map onto one rank1 passage cut
(:meth:`CohereV1RerankRequest.max_passage_tokens`): rank1 judges each document as one
passage, never in chunks.

Usage::

    item = RerankResult.from_judgment(judgment, reasoning_budget=2048)
    item.to_judgment(index=0, truncated=False) == judgment   # for a server judgment
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .errors import Rank1Error
from .judgment import Judgment
from .protocol import VerdictSource, is_relevant

__all__ = [
    "COHERE_CHUNK_TOKENS",
    "CohereMeta",
    "CohereV1RerankRequest",
    "CohereV2RerankResponse",
    "CohereV2RerankRequest",
    "RerankDocument",
    "RerankDropped",
    "RerankOnError",
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


#: A rerank request's ``on_error``: what rank1-server does with a document the upstream
#: failed on (gateway mode): fail the request (``"raise"``) or leave it out (``"drop"``).
RerankOnError = Literal["raise", "drop"]


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
    #: rank1-server only: seconds for the whole request; documents not judged by then
    #: make it answer 504 (their requests are cancelled; nothing is scored in their place).
    #: None (the default) is left out of a dumped request.
    deadline: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    #: rank1-server only: a document the upstream failed on (gateway mode) fails the
    #: request (``"raise"``, the default: 502 naming the upstream error) or is left out of
    #: the results and listed in the answer's ``dropped`` (``"drop"``).
    on_error: RerankOnError | None = None
    #: rank1-server only: answer Server-Sent Events (:class:`RerankStreamReasoning`,
    #: :class:`RerankStreamResult`, then :class:`RerankStreamDone`) instead of one JSON.
    #: None (the default) is left out of a dumped request, so other hosts never see it.
    stream: bool | None = None
    #: rank1-server only, with ``stream``: ``False`` leaves out the ``reasoning`` events
    #: (each ``result`` still carries its whole chain), for a client that wants only the
    #: verdicts as they land. None (the default) streams them.
    stream_reasoning: bool | None = None

    @field_validator("query")
    @classmethod
    def _query_not_blank(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("query must not be blank")
        return v

    def passages(self) -> list[tuple[str, str | None]]:
        """Each document's ``(text, title)`` to judge, in input order."""
        return [(d, None) if isinstance(d, str) else (d.text, d.title) for d in self.documents]

    def returned_document(self, index: int) -> dict[str, Any]:
        """The ``document`` written back for ``return_documents``: ``{"text": ...}`` for a
        string, an object as given."""
        doc: Any = self.documents[index]
        if isinstance(doc, str):
            return {"text": doc}
        return doc.model_dump(exclude_none=True) if isinstance(doc, BaseModel) else dict(doc)


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
    #: Only with ``return_documents`` (the key is left out otherwise, never ``null``):
    #: ``{"text": ...}`` for a string document, an object document as given.
    document: dict[str, Any] | None = None

    @classmethod
    def from_judgment(
        cls, judgment: Judgment, *, reasoning_budget: int,
        document: RerankDocument | dict[str, Any] | None = None,
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
        if isinstance(document, RerankDocument):
            document = document.model_dump(exclude_none=True)
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


class RerankDropped(_Wire):
    """A document left out of the results under ``on_error="drop"``: its input
    ``index`` and the upstream's ``error`` (it has no score: none is invented)."""

    index: int
    error: str


class RerankUsage(_Wire):
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    total_tokens: int | None = None


class RerankResponse(_Wire):
    """The answer to ``POST /v1/rerank`` and ``/rerank``: results best first (``top_n`` of
    them); ``usage`` for Jina and vLLM readers, ``meta`` for Cohere v1's (rank1-server
    writes both on ``/v1/rerank``)."""

    id: str | None = None
    model: str | None = None
    results: list[RerankResult]
    usage: RerankUsage | None = None
    meta: CohereMeta | None = None
    #: Only under ``on_error="drop"`` when a document failed (the key is left out
    #: otherwise): the documents left out of ``results``.
    dropped: list[RerankDropped] | None = None


# ---------------------------------------------------------------------------- Cohere

#: Tokens per chunk of Cohere v1's ``max_chunks_per_doc`` (its documented chunk size).
COHERE_CHUNK_TOKENS = 512


class CohereV1RerankRequest(RerankRequest):
    """``POST /v1/rerank`` as the server reads it: :class:`RerankRequest` (Jina, our
    client) plus Cohere v1's ``rank_fields`` and ``max_chunks_per_doc``; documents may be
    objects with any fields (Cohere v1's structured documents).

    A document object without ``rank_fields`` is judged on its ``text`` (and ``title``, as
    our client sends it); with ``rank_fields`` on those fields, in that order: one field
    is the passage itself, several are written ``field: value`` one a line (the YAML-like
    form Cohere recommends for structured data). A missing or non-text field is an error
    naming the document and the field.
    """

    documents: list[str | dict[str, Any]]  # type: ignore[assignment]  # objects of any fields
    rank_fields: list[str] | None = Field(default=None, min_length=1)
    #: Cohere v1's chunk count; rank1 judges one passage of ``max_chunks_per_doc *``
    #: :data:`COHERE_CHUNK_TOKENS` tokens at most (no per-chunk scores).
    max_chunks_per_doc: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _documents_have_the_fields(self) -> CohereV1RerankRequest:
        self.passages()  # raises ValueError naming the culprit
        return self

    def passages(self) -> list[tuple[str, str | None]]:
        return [_passage(d, i, self.rank_fields) for i, d in enumerate(self.documents)]

    def max_passage_tokens(self) -> int | None:
        """The passage cut asked for (``None``: the server's context is the only limit)."""
        if self.max_chunks_per_doc is None:
            return None
        return self.max_chunks_per_doc * COHERE_CHUNK_TOKENS


def _passage(
    doc: str | dict[str, Any], i: int, rank_fields: list[str] | None
) -> tuple[str, str | None]:
    if isinstance(doc, str):
        return doc, None
    fields = rank_fields or ["text"]
    values = []
    for name in fields:
        value = doc.get(name)
        if not isinstance(value, str):
            what = "has no" if value is None else "has a non-text"
            raise ValueError(f"documents.{i} {what} field {name!r} (rank_fields: {fields})")
        values.append(value)
    if rank_fields is None:
        title = doc.get("title")
        if title is not None and not isinstance(title, str):
            raise ValueError(f"documents.{i} has a non-text field 'title'")
        return values[0], title
    if len(fields) == 1:
        return values[0], None
    return "\n".join(f"{n}: {v}" for n, v in zip(fields, values, strict=True)), None


class CohereV2RerankRequest(_Wire):
    """``POST /v2/rerank``: Cohere v2 (``documents`` are strings) plus rank1's options.
    ``max_tokens_per_doc`` cuts each passage to that many of the model's tokens (the
    judgment says ``truncated``); ``priority`` is accepted and ignored."""

    model: str | None = None
    query: str = Field(min_length=1)
    documents: list[str]
    top_n: int | None = Field(default=None, ge=1)
    max_tokens_per_doc: int | None = Field(default=None, ge=1)
    instruction: str | None = None
    max_reasoning_tokens: int | None = Field(default=None, ge=1)
    #: As :attr:`RerankRequest.deadline` and :attr:`RerankRequest.on_error`.
    deadline: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    on_error: RerankOnError | None = None

    @field_validator("query")
    @classmethod
    def _query_not_blank(cls, v: str) -> str:
        return RerankRequest._query_not_blank(v)


class CohereMeta(_Wire):
    """Cohere's ``meta``: ``api_version``, ``billed_units`` (one search unit per request
    of up to 100 documents, as Cohere counts them) and ``tokens``."""

    api_version: dict[str, str]
    billed_units: dict[str, int]
    tokens: dict[str, int]

    @classmethod
    def of(cls, version: str, documents: int, input_tokens: int, output_tokens: int
           ) -> CohereMeta:
        return cls(
            api_version={"version": version},
            billed_units={"search_units": max(1, -(-documents // 100))},
            tokens={"input_tokens": input_tokens, "output_tokens": output_tokens},
        )


class CohereV2RerankResponse(_Wire):
    """The answer to ``POST /v2/rerank``: ``{id, results, meta}``, results best first
    (``top_n`` of them), each with rank1's fields as extra keys (Cohere's clients keep
    them on the raw response and ignore them)."""

    id: str
    results: list[RerankResult]
    meta: CohereMeta
    #: As :attr:`RerankResponse.dropped` (an extra key Cohere's clients ignore).
    dropped: list[RerankDropped] | None = None


RerankResponse.model_rebuild()


# ------------------------------------------------------------------ streaming (SSE)
#
# ``POST /v1/rerank`` with ``"stream": true`` answers ``text/event-stream``; every event is
# ``event: <type>`` plus ``data: <json>`` whose ``type`` repeats the event name:
#
# * ``reasoning`` - a piece of one document's reasoning as it is generated; a document's
#   pieces, joined, are its chain (``result.reasoning`` is that, stripped). Pieces of
#   different documents interleave. Left out with ``"stream_reasoning": false``.
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
