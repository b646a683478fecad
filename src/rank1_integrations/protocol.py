"""The rank1 protocol as pure functions: prompt, instruction, truncation, score, forced answer.

Nothing here does I/O. Every rank1 rule lives in this module once; the client's transports
and the bundled server (``rank1_server``) both call it.

The reference is the official ``orionw/rank1`` code (``rank1.py`` at 30585c2). Where this
module departs from it, the departure is a documented fix, marked ``FIX:`` below and listed
in the README.

Usage::

    >>> from rank1_integrations.protocol import build_prompt, score_from_logprobs
    >>> prompt = build_prompt("what is rank1?", "rank1 is a reasoning reranker.")
    >>> prompt.endswith("<think>")
    True
    >>> round(score_from_logprobs(-0.1, -2.4), 4)
    0.9089
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum

from .passage import Passage

__all__ = [
    "ANSWER_FALSE",
    "ANSWER_TRUE",
    "DEFAULT_MAX_PASSAGE_CHARS",
    "PROTOCOL_VERSION",
    "FORCED_ANSWER_MARGIN",
    "LOGPROB_FLOOR",
    "STOP_STRINGS",
    "THINK_END",
    "THINK_START",
    "AnswerReading",
    "VerdictSource",
    "apply_instruction",
    "build_prompt",
    "clean_reasoning",
    "extract_reasoning",
    "fit_passage",
    "fit_reasoning_budget",
    "forced_answer_prompt",
    "is_relevant",
    "normalise_answer_token",
    "parse_forced_answer_prompt",
    "parse_prompt",
    "read_answer",
    "score_from_logprobs",
    "token_id_in_key",
    "token_id_key",
    "truncate_passage",
    "verdict_from_text",
]

THINK_START = "<think>"
THINK_END = "</think>"
#: The answer tokens, with their leading space (Qwen2.5 ids 830 and 895).
ANSWER_TRUE = " true"
ANSWER_FALSE = " false"
#: The official stop strings: the generation ends on the answer token itself.
STOP_STRINGS: tuple[str, str] = (THINK_END + ANSWER_TRUE, THINK_END + ANSWER_FALSE)

#: Character budget for a passage when no tokenizer is known. rank1 was trained on
#: sequences cut at 2500 tokens; ~4 characters per token leaves room for the reasoning.
#: FIX: the official code never cuts a passage (a long one overflows the context).
DEFAULT_MAX_PASSAGE_CHARS = 6000

#: vLLM's stand-in for a log probability of -inf (JSON has no infinity): servers write no
#: logprob below it, and :func:`read_answer` takes it as a value like any other.
LOGPROB_FLOOR = -9999.0

#: The version of the rules above, part of every judgment cache key (memory and the SQLite
#: ``JudgmentStore``). Bump it whenever a fix changes what a judgment comes out as (prompt,
#: answer reading, score, verdict, forced answer): a stored judgment made under the old
#: rules is then never reused.
PROTOCOL_VERSION = 1

_PROMPT_HEAD = (
    "Determine if the following passage is relevant to the query. "
    "Answer only with 'true' or 'false'.\n"
    "Query: "
)
_PROMPT_MID = "\nPassage: "
_PROMPT_TAIL = "\n" + THINK_START

_QUERY_PLACEHOLDERS = ("{query}", "FILL_QUERY_HERE")


class VerdictSource(str, Enum):
    """How a judgment's verdict was obtained."""

    #: Read from the answer position's logprobs after the model closed its reasoning.
    ANSWER_LOGPROBS = "answer_logprobs"
    #: The reasoning did not end in an answer (budget spent, no ``</think>``): a second,
    #: one-token request on the forced-answer prompt gave the verdict.
    FORCED_ANSWER = "forced_answer"
    #: The host returned no logprobs: the verdict is the answer word in the text, and the
    #: score is 1.0 or 0.0, uncalibrated.
    TEXT_ONLY = "text_only"


# --------------------------------------------------------------------------- prompt


def apply_instruction(query: str, instruction: str | None) -> str:
    """Return the text that fills the prompt's query slot.

    * ``instruction`` holding ``{query}`` or the official placeholder ``FILL_QUERY_HERE`` is
      a template (like the paper's per-dataset prompts): the whole filled template replaces
      the query. Only the placeholder is replaced; braces elsewhere are kept as written.
    * Any other instruction is free text appended the official way:
      ``f"{query} {instruction}".strip()``, unless the two are equal once stripped (the
      official ``q.strip() != i.strip()``): then the stripped query alone.
    * ``None`` or an empty instruction leaves the query as it is. (FIX: the official code
      crashes when an instruction is None.)
    """
    if not instruction:
        return query
    for placeholder in _QUERY_PLACEHOLDERS:
        if placeholder in instruction:
            return instruction.replace(placeholder, query)
    if instruction.strip() == query.strip():
        return query.strip()
    return f"{query} {instruction}".strip()


def build_prompt(
    query: str,
    passage: str,
    *,
    title: str | None = None,
    instruction: str | None = None,
) -> str:
    """Build the official rank1 prompt, byte for byte.

    User text is concatenated, never run through ``str.format``: braces, ``%``, newlines and
    think tags in the query or passage reach the model unchanged. A ``title`` joins the
    passage as ``f"{title} {passage}"`` like the official code (a space even when the title
    is empty).

    >>> print(build_prompt("q", "p"))
    Determine if the following passage is relevant to the query. Answer only with 'true' or 'false'.
    Query: q
    Passage: p
    <think>
    """
    if title is not None:
        passage = f"{title} {passage}"
    query_slot = apply_instruction(query, instruction)
    return _PROMPT_HEAD + query_slot + _PROMPT_MID + passage + _PROMPT_TAIL


def parse_prompt(prompt: str) -> tuple[str, str] | None:
    """The inverse of :func:`build_prompt`: ``(query slot, passage)`` of a rank1 prompt, or
    ``None`` for any other text.

    The query slot is the query with its instruction applied; a title is part of the
    passage, as :func:`build_prompt` joined it. A query or passage holding the prompt's
    own ``"\\nPassage: "`` is ambiguous: the split is at its last occurrence.

    >>> parse_prompt(build_prompt("q", "p", title="T"))
    ('q', 'T p')
    >>> parse_prompt("hello") is None
    True
    """
    if not (prompt.startswith(_PROMPT_HEAD) and prompt.endswith(_PROMPT_TAIL)):
        return None
    query_slot, mid, passage = prompt[len(_PROMPT_HEAD) : -len(_PROMPT_TAIL)].rpartition(
        _PROMPT_MID
    )
    if not mid:
        return None
    return query_slot, passage


# --------------------------------------------------------------------------- truncation


def truncate_passage(
    passage: str,
    *,
    max_tokens: int | None = None,
    tokenize: Callable[[str], Sequence[int]] | None = None,
    detokenize: Callable[[Sequence[int]], str] | None = None,
    max_chars: int = DEFAULT_MAX_PASSAGE_CHARS,
) -> tuple[str, bool]:
    """Cut a passage to a budget; return ``(passage, was_truncated)``.

    Only the passage is cut, never the prompt around it, so the trailing ``<think>``
    always survives (FIX: a published port truncates the whole prompt and can cut it off).

    With ``max_tokens`` and a ``tokenize``/``detokenize`` pair the budget is in tokens.
    Otherwise it is ``max_chars`` characters, cut back to the last whitespace so no word
    is split (when there is whitespace in the last fifth of the budget).
    """
    if max_tokens is not None and tokenize is not None and detokenize is not None:
        if max_tokens < 0:
            raise ValueError(f"max_tokens must be >= 0, got {max_tokens}")
        ids = list(tokenize(passage))
        if len(ids) <= max_tokens:
            return passage, False
        return detokenize(ids[:max_tokens]), True
    if max_chars < 0:
        raise ValueError(f"max_chars must be >= 0, got {max_chars}")
    if len(passage) <= max_chars:
        return passage, False
    cut = passage[:max_chars]
    space = max(cut.rfind(" "), cut.rfind("\n"))
    if space >= max_chars * 4 // 5:
        cut = cut[:space]
    return cut, True


def fit_passage(
    passage: Passage, *, max_chars: int = DEFAULT_MAX_PASSAGE_CHARS
) -> tuple[Passage, bool]:
    """Cut a passage and its title to ``max_chars`` characters in all; return
    ``(passage, was_truncated)``.

    The model reads ``f"{title} {text}"``, so the budget covers the title and its space
    too: the title is cut to ``max_chars - 1`` first, then the text to what is left (by
    :func:`truncate_passage`'s rule).

    >>> fit_passage(Passage("a b c d e", title="T"), max_chars=6)
    (Passage(text='a b', title='T'), True)
    """
    budget, title, title_cut = max_chars, passage.title, False
    if title is not None:
        title, title_cut = truncate_passage(title, max_chars=max(budget - 1, 0))
        budget = max(budget - len(title) - 1, 0)
    text, truncated = truncate_passage(passage.text, max_chars=budget)
    return Passage(text, title), truncated or title_cut


# --------------------------------------------------------------------------- score


def score_from_logprobs(logprob_true: float, logprob_false: float) -> float:
    """P(true) renormalised over the two answers: ``sigmoid(lt - lf)``, a plain float.

    FIX: the official ``exp(lt) / (exp(lt) + exp(lf))`` divides 0/0 when both underflow.
    """
    diff = float(logprob_true) - float(logprob_false)
    if diff >= 0:
        return 1.0 / (1.0 + math.exp(-diff))
    e = math.exp(diff)
    return e / (1.0 + e)


def is_relevant(score: float) -> bool:
    """The verdict a score stands for: relevant when P(true) >= 0.5 (``true`` is at least
    as likely as ``false``)."""
    return score >= 0.5


def normalise_answer_token(token: str) -> str | None:
    """Map a logprob key to ``ANSWER_TRUE``/``ANSWER_FALSE``, or ``None``.

    The rule for variants, in one place:

    * exact ``" true"`` / ``" false"`` are the answer tokens;
    * a variant that differs only by case or by surrounding whitespace (``"true"``,
      ``" True"``, ``"FALSE"``, ``" true\\n"``) counts as the same answer word, but
      :func:`read_answer` lets it stand in only for an exact token that is absent from the
      top-k (the exact one is what the model was trained to write), and marks that
      reading ``estimated``;
    * keys a server writes as ids (``"token_id:830"``) cannot be mapped by text: callers
      pass ``answer_ids`` to :func:`read_answer` for them.
    """
    word = token.strip().lower()
    if word == "true":
        return ANSWER_TRUE
    if word == "false":
        return ANSWER_FALSE
    return None


_TOKEN_ID_KEY = re.compile(r"^token_id:(\d+)$")


def token_id_in_key(key: str) -> int | None:
    """The id of a logprob key a server wrote as ``"token_id:N"``, else ``None``.

    >>> token_id_in_key("token_id:830"), token_id_in_key(" true")
    (830, None)
    """
    m = _TOKEN_ID_KEY.match(key)
    return int(m.group(1)) if m else None


def token_id_key(token: int) -> str:
    """The logprob key of a token written as its id (vLLM's
    ``return_tokens_as_token_ids``); :func:`token_id_in_key` reads it back.

    >>> token_id_key(830)
    'token_id:830'
    """
    return f"token_id:{token}"


@dataclass(frozen=True)
class AnswerReading:
    """The verdict read at an answer position.

    ``estimated`` is True when an exact answer token was absent from the top-k: its log
    probability was then bounded from above by the smallest log probability in the top-k
    (it cannot be more likely than anything listed), or taken from a case/space variant
    (``" True"``, ``"true"``) that was listed instead. Either way ``score`` is an
    estimate, not a measurement.
    """

    score: float
    logprob_true: float
    logprob_false: float
    estimated: bool = False


def read_answer(
    top_logprobs: Mapping[str, float] | Sequence[tuple[str | int, float]],
    *,
    answer_ids: Mapping[int, str] | None = None,
) -> AnswerReading | None:
    """Read P(true) from one position's top logprobs.

    ``top_logprobs`` is either a mapping ``{token_text: logprob}`` (vLLM, OpenAI legacy,
    llama-cpp-python) or a sequence of ``(token_text_or_id, logprob)`` pairs (llama.cpp's
    chat-style list, where special tokens have empty text and must be matched by id).
    ``answer_ids`` maps token ids to :data:`ANSWER_TRUE` / :data:`ANSWER_FALSE` and is
    checked first for integer keys and ``"token_id:N"`` keys.

    Exact keys (`` true``/`` false``, or their ids) always win. A case/space variant
    (``"True"``, ``" TRUE"``, ``"true"``...) fills in only for an exact token that is
    absent, and marks the reading ``estimated``. (FIX: the official code reads the two
    exact ids only and scores 0.5 when one is missing; a variant never overrides the
    exact token's own logprob, as stripping and lowercasing every key would.)

    Returns ``None`` when neither answer is present, exactly or as a variant (no verdict
    at this position). When one is missing altogether, it is bounded by the smallest
    listed logprob and the reading is marked ``estimated``. Values of
    :data:`LOGPROB_FLOOR` (vLLM's -inf) count as present with that value.
    """
    pairs = top_logprobs.items() if isinstance(top_logprobs, Mapping) else top_logprobs
    exact: dict[str, float] = {}
    variant: dict[str, float] = {}
    floor = math.inf
    for key, value in pairs:
        value = float(value)
        floor = min(floor, value)
        answer: str | None = None
        is_exact = True
        if isinstance(key, int):
            answer = (answer_ids or {}).get(key)
        elif (token_id := token_id_in_key(key)) is not None:
            answer = (answer_ids or {}).get(token_id)
        else:
            answer = normalise_answer_token(key)
            is_exact = key == answer
        found = exact if is_exact else variant
        if answer is not None and value > found.get(answer, -math.inf):
            found[answer] = value
    if not exact and not variant:
        return None
    estimated = False
    values: dict[str, float] = {}
    for answer in (ANSWER_TRUE, ANSWER_FALSE):
        if answer in exact:
            values[answer] = exact[answer]
        else:
            values[answer] = variant.get(answer, floor)
            estimated = True
    lt, lf = values[ANSWER_TRUE], values[ANSWER_FALSE]
    return AnswerReading(
        score=score_from_logprobs(lt, lf),
        logprob_true=lt,
        logprob_false=lf,
        estimated=estimated,
    )


def verdict_from_text(text: str) -> bool | None:
    """The verdict written after ``</think>`` (or the last word, if no tag): True, False or None."""
    tail = text.rsplit(THINK_END, 1)[1] if THINK_END in text else text
    words = re.findall(r"[A-Za-z]+", tail)
    if THINK_END not in text:
        words = words[-1:]
    for word in words:
        low = word.lower()
        if low in ("true", "false"):
            return low == "true"
    return None


# --------------------------------------------------------------------------- reasoning


def extract_reasoning(text: str) -> str:
    """The reasoning chain from generated text: what precedes ``</think>``, minus any
    leading ``<think>``, stripped. Text without ``</think>`` is all reasoning."""
    head = text.split(THINK_END, 1)[0]
    head = head.lstrip()
    if head.startswith(THINK_START):
        head = head[len(THINK_START) :]
    return head.strip()


def clean_reasoning(text: str) -> str:
    """Clean an unfinished chain the official way: cut back to the last sentence end.

    ``rstrip``; unless it ends in ``.``, ``!`` or ``?``, cut after the last of them (keep
    everything when there is none); ``strip``.
    """
    text = text.rstrip()
    if text and text[-1] not in ".!?":
        last = max(text.rfind("."), text.rfind("!"), text.rfind("?"))
        if last != -1:
            text = text[: last + 1]
    return text.strip()


def forced_answer_prompt(prompt: str, reasoning: str) -> str:
    """The prompt that forces a one-token answer after an unfinished chain.

    ``f"{prompt}\\n{cleaned}\\n</think>"`` with the official cleaning. FIX: when the chain
    already holds ``</think>`` it is cut there, so the prompt never has two.
    """
    if THINK_END in reasoning:
        reasoning = reasoning.split(THINK_END, 1)[0]
    return f"{prompt}\n{clean_reasoning(reasoning)}\n{THINK_END}"


def parse_forced_answer_prompt(text: str) -> tuple[str, str] | None:
    """The inverse of :func:`forced_answer_prompt`: ``(prompt, cleaned reasoning)``, or
    ``None`` when ``text`` is not a forced-answer prompt built on a rank1 prompt.

    The prompt ends at the last ``"\\n<think>\\n"``: a reasoning chain that itself holds
    one is ambiguous.

    >>> prompt = build_prompt("q", "p")
    >>> parse_forced_answer_prompt(forced_answer_prompt(prompt, "So. And")) == (prompt, "So.")
    True
    """
    end = "\n" + THINK_END
    if not text.endswith(end):
        return None
    cut = text.rfind(_PROMPT_TAIL + "\n", 0, len(text) - len(end))
    if cut < 0:
        return None
    prompt = text[: cut + len(_PROMPT_TAIL)]
    if parse_prompt(prompt) is None:
        return None
    return prompt, text[cut + len(_PROMPT_TAIL) + 1 : -len(end)]


# --------------------------------------------------------------------------- context


#: Tokens of a context kept free beyond the prompt and the reasoning, for the forced
#: answer: the room it really needs. Its prompt adds ``"\n"`` before the reasoning and
#: ``"\n</think>"`` after it (3 tokens in rank1's Qwen2 vocabulary, where ``</think>`` is
#: one added token; ``"\n"`` one each), and it generates one answer token: 4. Another 4
#: cover re-tokenising the reasoning's text (a chain the model spelt in tokens that the
#: tokenizer would merge or split differently; the cleaning of the chain only shortens it).
#: FIX: it was 32, which refused prompts the server would serve (a 2,018-token prompt on a
#: 2,048 context); the bundled server cuts the chain further when its forced prompt still
#: does not fit.
FORCED_ANSWER_MARGIN = 8


def fit_reasoning_budget(
    requested: int, *, n_ctx: int, prompt_tokens: int, margin: int = FORCED_ANSWER_MARGIN
) -> int:
    """The reasoning budget that fits one sequence's context: ``min(requested,
    n_ctx - prompt_tokens - margin)``.

    FIX: the official code always asks for ``max_tokens=8192``, which a server with a
    shorter context refuses (vLLM answers 400 for every judgment); here the budget is an
    upper bound that shrinks to the room the prompt leaves, keeping ``margin`` tokens for
    the forced answer (whose prompt is the prompt plus the reasoning plus ``</think>``).
    Raises ``ValueError`` naming both numbers when not even one reasoning token fits.

    >>> fit_reasoning_budget(2048, n_ctx=2048, prompt_tokens=300)
    1740
    >>> fit_reasoning_budget(512, n_ctx=4096, prompt_tokens=300)
    512
    """
    if requested < 1:
        raise ValueError(f"max_reasoning_tokens must be >= 1, got {requested}")
    room = n_ctx - prompt_tokens - margin
    if room < 1:
        raise ValueError(
            f"the prompt has {prompt_tokens} tokens and the context holds {n_ctx}: with "
            f"{margin} tokens kept for the forced answer, no room is left for reasoning "
            "(shorten the passage or serve a longer context)"
        )
    return min(requested, room)
