"""``Passage``: the one passage type, a text and an optional title.

The model reads a titled passage as ``f"{title} {text}"`` (the official rank1 code's join,
kept even for an empty title), see :func:`~rank1_integrations.protocol.build_prompt`.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Passage"]


@dataclass(frozen=True)
class Passage:
    """One passage to judge: its ``text`` and optionally its ``title``."""

    text: str
    title: str | None = None
