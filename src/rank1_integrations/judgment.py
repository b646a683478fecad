"""The result of one rank1 judgment."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from .protocol import VerdictSource

__all__ = ["Judgment"]


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
    #: True when the passage was cut to fit the budget before it was sent.
    truncated: bool = False
    #: What went wrong, for judgments kept under ``on_error="keep"``.
    error: str | None = None

    @property
    def ok(self) -> bool:
        """True when the judgment carries a verdict."""
        return self.error is None and self.score is not None
