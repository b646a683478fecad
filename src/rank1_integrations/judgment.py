"""The result of one rank1 judgment."""

from __future__ import annotations

from collections.abc import Iterable
from enum import Enum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from .protocol import VerdictSource

__all__ = ["Judgment", "JudgmentState", "total_usage"]


class JudgmentState(str, Enum):
    """Whether a passage was judged, failed, or was left unjudged by a budget.

    >>> JudgmentState.DEADLINE.judged, JudgmentState.DEADLINE.unjudged
    (False, True)
    """

    #: rank1 gave its verdict (``score`` set).
    JUDGED = "judged"
    #: The judgment failed after its retries (kept under ``on_error="keep"``).
    FAILED = "failed"
    #: Not judged: the call's ``deadline`` passed first.
    DEADLINE = "deadline"
    #: Not judged: ``stop_after_relevant`` relevant judgments were in first.
    STOPPED_EARLY = "stopped_early"

    @property
    def judged(self) -> bool:
        return self is JudgmentState.JUDGED

    @property
    def unjudged(self) -> bool:
        """Left unjudged by a budget (it did not fail: it was never finished)."""
        return self in (JudgmentState.DEADLINE, JudgmentState.STOPPED_EARLY)


class Judgment(BaseModel):
    """rank1's verdict on one (query, passage) pair.

    ``score`` is P(true) renormalised over the two answer tokens, a plain ``float`` in
    [0, 1]; ``relevant`` is ``score >= 0.5``. A judgment that failed under
    ``on_error="keep"`` has ``error`` set and ``score``/``relevant`` set to ``None``: no
    score is ever invented.

    >>> j = Judgment(index=0, relevant=True, score=0.91, reasoning="...",
    ...              source="answer_logprobs")
    >>> j.ok
    True
    """

    model_config = ConfigDict(frozen=True)

    #: Position of the passage in the caller's input.
    index: int = 0
    relevant: bool | None
    score: float | None = Field(default=None, ge=0.0, le=1.0)
    reasoning: str = ""
    #: How the verdict was obtained; ``None`` only for failed judgments.
    source: VerdictSource | None = None
    #: True when an exact answer token was missing from the top-k and its probability was
    #: bounded by the smallest listed one, or read from a case/space variant such as
    #: ``" True"`` (see ``protocol.read_answer``).
    score_estimated: bool = False
    #: Tokens the model spent on its reasoning (generated tokens of the first request).
    reasoning_tokens: int = 0
    #: Tokens of the prompt as the server counted them (its ``usage.prompt_tokens`` for
    #: the judgment's first request; rank1-server's ``/v1/rerank`` reports it per
    #: document); 0 when the server does not say.
    prompt_tokens: int = 0
    #: HTTP requests the judgment took: the first, a forced answer, a streamed repeat,
    #: every retry and every resend without a field the host refused. A request shared
    #: by several judgments (``/v1/rerank`` sends one per query) counts once, on the
    #: first of them in input order, so that sums over judgments count HTTP requests.
    #: 0 for a judgment served from the cache.
    requests: int = 0
    #: True when the judgment came from the client's cache (no request was sent; the
    #: token counts are those of the judgment when it was made).
    cached: bool = False
    #: True when the passage was cut to fit the budget before it was sent.
    truncated: bool = False
    #: What went wrong, for judgments kept under ``on_error="keep"``, or why a budget
    #: left the passage unjudged.
    error: str | None = None
    #: Judged, failed, or left unjudged by a budget (and which). A judgment made with
    #: ``error`` set and no state counts as failed.
    state: JudgmentState = JudgmentState.JUDGED

    @model_validator(mode="before")
    @classmethod
    def _failed_by_default(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("error") is not None and "state" not in data:
            return {**data, "state": JudgmentState.FAILED}
        return data

    @property
    def ok(self) -> bool:
        """True when the judgment carries a verdict."""
        return self.state is JudgmentState.JUDGED and self.score is not None


def total_usage(judgments: Iterable[Judgment]) -> dict[str, int]:
    """What a call spent: ``prompt_tokens``, ``reasoning_tokens`` and ``requests`` summed
    over the judgments that were not cached, and ``cached``, how many came from the cache
    (their tokens were spent by an earlier call, so they are not counted again).

    >>> total_usage([Judgment(relevant=True, score=0.9, prompt_tokens=120,
    ...                       reasoning_tokens=40, requests=1),
    ...              Judgment(relevant=False, score=0.1, prompt_tokens=100,
    ...                       reasoning_tokens=30, cached=True)])
    {'prompt_tokens': 120, 'reasoning_tokens': 40, 'requests': 1, 'cached': 1}
    """
    usage = {"prompt_tokens": 0, "reasoning_tokens": 0, "requests": 0, "cached": 0}
    for judgment in judgments:
        if judgment.cached:
            usage["cached"] += 1
            continue
        usage["prompt_tokens"] += judgment.prompt_tokens
        usage["reasoning_tokens"] += judgment.reasoning_tokens
        usage["requests"] += judgment.requests
    return usage
