"""Exceptions raised by rank1-integrations."""

from __future__ import annotations

from typing import Any

__all__ = [
    "Rank1Error", "JudgmentError", "NoVerdictError", "BadResponseError", "DeadlineExceeded",
]


class Rank1Error(Exception):
    """Base class for every error this package raises on purpose."""


class NoVerdictError(Rank1Error):
    """The model gave no verdict: neither answer token, even after the forced answer."""


class BadResponseError(Rank1Error):
    """A 200 response that is not what was asked for: a body that is not valid JSON (cut
    or rewritten by a proxy), or a completion without the logprobs requested. Retried like
    a 5xx."""


class JudgmentError(Rank1Error):
    """A judgment failed after the last try. ``index`` names the passage in the input.

    The original exception is chained as ``__cause__``.
    """

    def __init__(self, index: int, message: str) -> None:
        super().__init__(f"judgment of passage {index} failed: {message}")
        self.index = index
        self.message = message

    def __reduce__(self) -> tuple[type[JudgmentError], tuple[int, str]]:
        return (type(self), (self.index, self.message))  # picklable (e.g. across processes)


class DeadlineExceeded(Rank1Error, TimeoutError):
    """A call's ``deadline`` passed under ``on_deadline="raise"``.

    The requests still in flight were cancelled first. ``judgments`` holds what the call
    would have returned under ``on_deadline="fallback"`` (the judged passages, and the
    others with no score and ``error`` set); for ``rerank_many`` a list per query.
    """

    def __init__(self, deadline: float, judgments: list[Any] | None = None) -> None:
        super().__init__(f"the deadline of {deadline:g} s passed before every passage was judged")
        self.deadline = deadline
        self.judgments = judgments if judgments is not None else []

    def __reduce__(self) -> tuple[type[DeadlineExceeded], tuple[float, list[Any]]]:
        return (type(self), (self.deadline, self.judgments))
