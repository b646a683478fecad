"""Reading logprobs in each server's shape into one form: a list of positions.

* vLLM, llama-cpp-python and the legacy OpenAI completions shape:
  ``{"tokens": [...], "token_logprobs": [...], "top_logprobs": [{text: logprob}, ...]}``.
  llama-cpp-python collapses keys that decode to the same text.
* llama.cpp's ``llama-server`` and every chat completion:
  ``{"content": [{"id", "token", "bytes", "logprob", "top_logprobs": [{"id", "token", ...}]}]}``;
  special tokens may have empty ``token`` text, so entries keep their ids. In streamed
  chunks llama-server also writes ``""`` as the ``token`` of every token it held back for a
  partial stop-string match (the `` true`` that completes ``</think> true`` included);
  that token's text is then read from its own ``top_logprobs`` entry (same id) or from
  its ``bytes``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..protocol import (
    ANSWER_FALSE,
    ANSWER_TRUE,
    THINK_END,
    AnswerReading,
    normalise_answer_token,
    read_answer,
    token_id_in_key,
)

__all__ = [
    "Position", "positions", "answer_at", "closes_on_answer", "find_answer_position",
    "is_answer_token",
]


@dataclass(frozen=True)
class Position:
    """One generated token and the alternatives the server listed for it."""

    token: str
    top: list[tuple[str | int, float]] = field(default_factory=list)
    token_id: int | None = None


def positions(logprobs: Mapping[str, Any] | None) -> list[Position] | None:
    """The positions in a ``logprobs`` object, or ``None`` when the server sent none."""
    if not logprobs:
        return None
    content = logprobs.get("content")
    if content is not None:
        out = []
        for entry in content:
            top: list[tuple[str | int, float]] = []
            for alt in entry.get("top_logprobs") or []:
                top.append((alt.get("token", ""), float(alt["logprob"])))
                if alt.get("id") is not None:
                    top.append((int(alt["id"]), float(alt["logprob"])))
            out.append(Position(_entry_text(entry), top, entry.get("id")))
        return out
    tokens = logprobs.get("tokens") or []
    tops = logprobs.get("top_logprobs") or []
    if not tokens and not tops:
        return None
    out = []
    for i, token in enumerate(tokens):
        top_map = tops[i] if i < len(tops) and tops[i] else {}
        out.append(Position(token, [(k, float(v)) for k, v in top_map.items()]))
    return out


def _entry_text(entry: Mapping[str, Any]) -> str:
    """A chat-style entry's token text; when it is empty (a special token, or one that
    llama-server held back for a partial stop-string match), the text its own
    ``top_logprobs`` entry (same id) or its ``bytes`` give, else ``""``."""
    token = entry.get("token") or ""
    if token:
        return token
    token_id = entry.get("id")
    if token_id is not None:
        for alt in entry.get("top_logprobs") or []:
            if alt.get("id") == token_id and alt.get("token"):
                return str(alt["token"])
    raw = entry.get("bytes")
    if raw:
        try:
            return bytes(raw).decode("utf-8", errors="replace")
        except (TypeError, ValueError):  # not a list of byte values
            return ""
    return ""


def answer_at(
    position: Position, answer_ids: tuple[int, int] | None = None
) -> AnswerReading | None:
    """The reading at one position (``answer_ids`` = ids of `` true`` and `` false``)."""
    ids = {answer_ids[0]: ANSWER_TRUE, answer_ids[1]: ANSWER_FALSE} if answer_ids else None
    return read_answer(position.top, answer_ids=ids)


def is_answer_token(position: Position, answer_ids: tuple[int, int] | None = None) -> bool:
    """True when the token generated at ``position`` is an answer token: its text is an
    answer word, or (with ``answer_ids``) its id, given as ``id`` or ``"token_id:N"``, is
    one of them."""
    if normalise_answer_token(position.token) is not None:
        return True
    if not answer_ids:
        return False
    if position.token_id is not None:
        return position.token_id in answer_ids
    return token_id_in_key(position.token) in answer_ids


def closes_on_answer(items: Sequence[Position], answer_ids: tuple[int, int] | None = None) -> bool:
    """True when a chain ends the way rank1's stop strings (``"</think> true"`` /
    ``"</think> false"``) say: its last token is exactly an answer token (by text, or by
    id with ``answer_ids``) and the tokens before it close the reasoning: their text ends
    with ``</think>``, or the token just before has no text at all, which is how servers
    that do not render special tokens show rank1's ``</think>`` (llama-cpp-python's
    server). A chain that merely ends on a word like ``True`` is not closed: it takes the
    forced answer, as in the official code (its stop strings never matched)."""
    if not items:
        return False
    last = items[-1]
    exact = last.token in (ANSWER_TRUE, ANSWER_FALSE)
    if not exact and answer_ids and last.token_id is not None:
        exact = last.token_id in answer_ids
    if not exact and answer_ids and last.token_id is None:
        exact = token_id_in_key(last.token) in answer_ids
    if not exact or len(items) < 2:
        return False
    if items[-2].token == "":
        return True
    return "".join(p.token for p in items[:-1]).endswith(THINK_END)


def find_answer_position(items: Sequence[Position]) -> Position | None:
    """The position of the answer word, by :func:`~rank1_integrations.protocol.verdict_from_text`'s
    rule: the first answer token after the last ``</think>`` in the tokens' text; without
    the tag, the last answer token (chat replies end with it, maybe followed by an
    end-of-turn token or punctuation)."""
    think_end = "".join(p.token for p in items).rfind(THINK_END)
    if think_end == -1:
        for position in reversed(items):
            if normalise_answer_token(position.token) is not None:
                return position
        return None
    after, offset = think_end + len(THINK_END), 0
    for position in items:
        if offset >= after and normalise_answer_token(position.token) is not None:
            return position
        offset += len(position.token)
    return None
