"""Rate budgets of a hosted endpoint: ``max_requests_per_minute`` and
``max_tokens_per_minute``.

Each HTTP request (retries included) waits until the budgets let it through, instead
of drawing a 429. The :class:`~._session.HttpSession` keeps one :class:`RateBudgets` per
event loop and the :class:`~.transports.sdk.Sdk` asks it before each request.

Usage::

    budgets = RateBudgets(requests_per_minute=100, tokens_per_minute=None)
    await budgets.acquire(lambda: 120)   # returns once one more request fits
"""

from __future__ import annotations

from collections.abc import Callable

from aiolimiter import AsyncLimiter

__all__ = ["BUDGET_WINDOW", "RateBudgets", "minute_budget"]

#: The window of the ``*_per_minute`` budgets, in seconds (tests shorten it).
BUDGET_WINDOW = 60.0


def minute_budget(budget: float, burst: float, window: float | None = None) -> AsyncLimiter:
    """A leaky bucket (aiolimiter's) that lets at most ``budget`` through in any
    ``window`` seconds (60 by default): it holds ``burst`` and drains ``budget - burst``
    per window, so a burst and what drains after it add up to the budget. (A bucket that
    held the whole budget and drained it per minute would let twice the budget through
    in the minute after a burst.) A budget no larger than the burst drains whole per
    window: then one burst per window.

    >>> minute_budget(100, 1).max_rate, minute_budget(100, 1).time_period
    (1, 0.6060606060606061)
    """
    window = BUDGET_WINDOW if window is None else window
    drained = budget - burst if budget > burst else budget
    return AsyncLimiter(burst, window * burst / drained)


class RateBudgets:
    """The budgets of one event loop (aiolimiter's limiters are bound to one).

    Requests go one at a time, evenly spread; a token budget holds half of itself, so
    that one judgment fits and a burst cannot take the whole minute."""

    def __init__(self, requests_per_minute: int | None, tokens_per_minute: int | None) -> None:
        self.tokens_per_minute = tokens_per_minute
        self.requests_budget = (
            None if requests_per_minute is None else minute_budget(requests_per_minute, 1)
        )
        self.tokens_budget = (
            None if tokens_per_minute is None
            else minute_budget(tokens_per_minute, tokens_per_minute / 2)
        )

    async def acquire(self, tokens: Callable[[], int]) -> None:
        """Wait until one more request fits, one that may cost up to ``tokens()`` tokens
        (see :func:`~.transports.sdk.token_estimate`; only called under a token budget,
        so requests without one pay nothing for it), then take them. Without budgets,
        returns at once.

        A request estimated above the token budget's burst can never pass: ValueError,
        naming the numbers (it fails that judgment, not the others)."""
        if self.tokens_budget is not None:
            limiter = self.tokens_budget
            cost = tokens()
            if cost > limiter.max_rate:
                raise ValueError(
                    f"one request may take up to {cost} tokens (estimated), more than "
                    f"the {limiter.max_rate:g} that max_tokens_per_minute="
                    f"{self.tokens_per_minute} lets one request take (half of it)"
                )
            await limiter.acquire(cost)
        if self.requests_budget is not None:
            await self.requests_budget.acquire(1)
