"""One call's input, checked in one place: its ``(query, passages)`` requests and its
per-call options (:class:`CallInput`, a pydantic model).

A bad input raises before anything is sent, naming the culprit: a ``TypeError`` for a
value of the wrong type (``passage 2 must be a string, ...``), a ``ValueError`` (pydantic's
``ValidationError`` is one) for a bad value (an empty query, ``deadline=0``).

Usage::

    call = CallInput.of([("what causes tides?", ["The Moon ...", {"text": "..."}])],
                        deadline=5.0)
    call.requests[0][1][0]   # Passage("The Moon ...")
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from typing_extensions import TypedDict

from .passage import Passage
from .settings import OnError

__all__ = [
    "RELEVANT_THRESHOLD",
    "CallInput",
    "CallOptions",
    "OnDeadline",
    "PassageInput",
    "check_query",
    "passage_of",
    "surrogate",
]

#: A passage: its text, a :class:`~rank1_integrations.Passage`, or a mapping with
#: ``"text"`` and optionally ``"title"``.
PassageInput = str | Passage | Mapping[str, Any]

#: What a call does when its ``deadline`` passes: return the unjudged passages marked
#: (``"fallback"``) or raise :class:`~rank1_integrations.errors.DeadlineExceeded`.
OnDeadline = Literal["fallback", "raise"]

#: The score from which a judgment counts as relevant for ``stop_after_relevant`` when no
#: other threshold is given (rank1's own verdict, ``protocol.is_relevant``).
RELEVANT_THRESHOLD = 0.5

#: One checked request: the query and its passages.
Request = tuple[str, tuple[Passage, ...]]


class CallOptions(TypedDict, total=False):
    """The per-call options, as keywords (their checks: :class:`CallInput`'s fields)."""

    on_error: OnError | None
    instruction: str | None
    max_reasoning_tokens: int | None
    deadline: float | None
    on_deadline: OnDeadline
    stop_after_relevant: int | None
    relevant_threshold: float


class CallInput(BaseModel):
    """What one ``arerank`` / ``arerank_iter`` / ``arerank_many`` / ``ajudge`` call (or
    ``rank1 eval``'s run) was given, checked. ``None`` options mean the client's."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True, extra="forbid")

    requests: tuple[Request, ...] = Field(description="The (query, passages) pairs.")
    on_error: OnError | None = Field(
        default=None, description="Failed judgments: 'raise', 'keep' or 'drop'."
    )
    instruction: str | None = Field(default=None, description="Relevance definition.")
    max_reasoning_tokens: int | None = Field(
        default=None, ge=1, strict=True, description="Reasoning budget for this call."
    )
    deadline: float | None = Field(
        default=None, gt=0, strict=True, allow_inf_nan=False,
        description="Seconds for the whole call.",
    )
    on_deadline: OnDeadline = Field(
        default="fallback", description="When the deadline passes: 'fallback' or 'raise'."
    )
    stop_after_relevant: int | None = Field(
        default=None, ge=1, strict=True,
        description="Stop a query once this many of its judgments are relevant.",
    )
    relevant_threshold: float = Field(
        default=RELEVANT_THRESHOLD, ge=0.0, le=1.0, strict=True,
        description="The score from which a judgment counts for stop_after_relevant.",
    )

    @classmethod
    def of(cls, requests: Any, **options: Any) -> CallInput:
        """The checked input of a call: ``requests`` as given, ``options`` by name (see
        :class:`CallOptions`; an unknown one is refused)."""
        return cls(requests=requests, **options)

    @field_validator("requests", mode="before")
    @classmethod
    def _check_requests(cls, requests: Any) -> tuple[Request, ...]:
        if isinstance(requests, (str, bytes)) or not isinstance(requests, Sequence):
            raise TypeError(
                f"requests must be a sequence of (query, passages), got {type(requests).__name__}"
            )
        checked = []
        for n, item in enumerate(requests):
            if not isinstance(item, (tuple, list)) or len(item) != 2:
                raise TypeError(f"request {n} must be a (query, passages) pair, got {item!r:.80}")
            query, passages = item
            check_query(query)
            if isinstance(passages, (str, bytes)) or not isinstance(passages, Sequence):
                raise TypeError(
                    "passages must be a sequence of strings or mappings, got "
                    f"{type(passages).__name__}"
                )
            checked.append((query, tuple(passage_of(i, p) for i, p in enumerate(passages))))
        return tuple(checked)


def surrogate(text: str) -> UnicodeEncodeError | None:
    """Why ``text`` cannot be sent as UTF-8 (a lone surrogate, e.g. from a JSON ``\\ud800``
    escape or ``errors="surrogateescape"`` decoding), or ``None`` when it can."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return exc
    return None


def check_query(query: object) -> None:
    """A query: a non-blank string that UTF-8 can encode."""
    if not isinstance(query, str):
        raise TypeError(f"query must be a string, got {type(query).__name__}")
    if not query.strip():
        raise ValueError("query must not be empty")
    if (exc := surrogate(query)) is not None:
        raise ValueError(
            f"query holds {exc.object[exc.start:exc.end]!a} at character {exc.start}, "
            "a lone surrogate that UTF-8 cannot encode"
        )


def passage_of(index: int, passage: object) -> Passage:
    """One input passage as a :class:`Passage`; a TypeError names a bad one's index."""
    if isinstance(passage, str):
        return Passage(passage)
    text: object
    title: object
    if isinstance(passage, Passage):
        text, title = passage.text, passage.title
    elif isinstance(passage, Mapping):
        text, title = passage.get("text"), passage.get("title")
    else:
        raise TypeError(
            f"passage {index} must be a string, a Passage or a mapping with 'text', "
            f"got {type(passage).__name__}"
        )
    if not isinstance(text, str):
        raise TypeError(f"passage {index}: 'text' must be a string, got {type(text).__name__}")
    if title is not None and not isinstance(title, str):
        raise TypeError(
            f"passage {index}: 'title' must be a string or None, got {type(title).__name__}"
        )
    return Passage(text, title)
