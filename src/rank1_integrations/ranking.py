"""The one ranking rule: score descending, ties in input order, the unscored last.

Every ranked list of judgments is ordered by :func:`rank_order`: ``Rank1Client.rerank``
(and ``arerank``, ``rerank_many``), the rerankers' selection
(``_adapter.select``), ``rank1 eval``'s final order (``evaluation.runner.final_order``)
and ``rank1-server``'s ``/v1/rerank`` results.

Usage::

    >>> rank_order(["a", "b", "c", "d"], {"a": 0.2, "b": None, "c": 0.9, "d": 0.2}.get)
    ['c', 'a', 'd', 'b']
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TypeVar

__all__ = ["rank_order"]

T = TypeVar("T")


def rank_order(items: Iterable[T], score: Callable[[T], float | None]) -> list[T]:
    """``items`` best first: by ``score`` descending, equal scores in input order (a stable
    sort, never broken at random); items whose score is ``None`` (failed judgments: no
    score is invented for them) after all scored ones, in input order."""
    scored: list[tuple[float, T]] = []
    unscored: list[T] = []
    for item in items:
        value = score(item)
        if value is None:
            unscored.append(item)
        else:
            scored.append((value, item))
    scored.sort(key=lambda pair: -pair[0])
    return [item for _, item in scored] + unscored
