"""What every transport receives and must provide.

A transport speaks one API shape (``/v1/completions``, ``/v1/chat/completions``,
``/v1/rerank``). It turns a :class:`JudgeCall` into a :class:`~rank1_integrations.Judgment`
and knows nothing of retries, concurrency or caching: the client wraps it with the last
two and hands its :class:`~.sdk.Sdk` the retry policy, which the Sdk applies to each HTTP
step on its own. It raises the SDK's exceptions for HTTP failures and
:class:`~rank1_integrations.errors.NoVerdictError` when the model gives no verdict.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

from ..judgment import Judgment

__all__ = ["JudgeCall", "Transport", "BatchTransport"]


@dataclass(frozen=True)
class JudgeCall:
    """One (query, passage) pair, ready to send."""

    #: Position of the passage in the caller's input.
    index: int
    #: The query as the caller gave it (before any instruction is applied).
    query: str
    #: The passage after truncation (without its title).
    passage: str
    title: str | None
    instruction: str | None
    #: The full rank1 prompt built from the fields above.
    prompt: str
    #: True when ``passage`` was cut to the budget.
    truncated: bool
    #: Most tokens the model may spend reasoning.
    max_reasoning_tokens: int


class Transport(ABC):
    """Judges one pair per call."""

    #: Name used in cache keys and error messages (``"completions"``, ``"chat"``, ...).
    name: str = ""

    @abstractmethod
    async def judge(self, call: JudgeCall) -> Judgment:
        """Judge one pair; the returned judgment's ``index`` is ``call.index``."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release what the transport holds (nothing by default)."""


class BatchTransport(Transport):
    """A transport that can also judge all passages of one query in one request."""

    @abstractmethod
    async def judge_batch(self, calls: Sequence[JudgeCall]) -> list[Judgment]:
        """Judge ``calls`` (all for one query); return one judgment per call, in order."""
