"""rank1 judgments in-process, on the engine: the server side of ``/v1/rerank``.

The rules come from :mod:`rank1_integrations.protocol` (prompt, truncation, score, forced
answer); this module only maps them onto token ids:

* ``</think>`` is looked up in the vocabulary at load: one special token (rank1's own
  tokenizer) or the pieces plain Qwen2.5 splits it into. The answer position is the one
  right after it, found by id (and, for unusual splits, by the rendered text).
* P(true) is read from the full logits there: ``sigmoid(l_true - l_false)`` over the two
  answer ids (`` true`` / `` false``, looked up at load). No top-k, no sort, never estimated.
* The generation stops on ``</think>`` followed by an answer token, like the official stop
  strings. When the budget runs out first (or the model ends without an answer), the
  forced-answer prompt gets one more token, restricted to the two answers. The engine runs
  it in the chain's own slot as the chain ends (``GenParams.follow_up``), continuing from
  those KV cells: nothing else can take the slot in between.

Usage::

    judge = Rank1Judge(engine, Rank1Vocab.lookup(model))
    judgments = await judge.judge_many("query", [Document("passage text")])
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from rank1_integrations.judgment import Judgment
from rank1_integrations.passage import Passage
from rank1_integrations.protocol import (
    ANSWER_FALSE,
    ANSWER_TRUE,
    FORCED_ANSWER_MARGIN,
    STOP_STRINGS,
    THINK_END,
    VerdictSource,
    build_prompt,
    extract_reasoning,
    fit_reasoning_budget,
    forced_answer_prompt,
    is_relevant,
    score_from_logprobs,
    truncate_passage,
)

from .backend import LlamaModel
from .engine import Engine, Generation, GenParams

__all__ = [
    "Document",
    "JudgeResult",
    "NoRoom",
    "Prepared",
    "Rank1Judge",
    "Rank1Vocab",
    "VocabularyError",
]

#: Tokens kept free for the forced-answer prompt's extra text ("\n" ... "\n</think>" and
#: re-tokenisation differences of the reasoning).
FORCED_MARGIN = FORCED_ANSWER_MARGIN

#: A passage too long for the slot is cut so that at least this many reasoning tokens fit
#: (or the requested budget, if smaller; or half the room, on tiny slots).
RESERVED_REASONING_TOKENS = 512


class NoRoom(ValueError):
    """The prompt around the passage (query, instruction, title) leaves no room in one slot."""


class VocabularyError(ValueError):
    """The model's vocabulary cannot express rank1's answer (no single `` true`` token...)."""


@dataclass(frozen=True)
class Rank1Vocab:
    """Token ids rank1 needs, looked up in the served model's vocabulary."""

    think_end: tuple[int, ...]
    true_id: int
    false_id: int

    @property
    def think_end_is_special(self) -> bool:
        return len(self.think_end) == 1

    @classmethod
    def lookup(cls, model: LlamaModel) -> Rank1Vocab:
        think_end = tuple(model.tokenize(THINK_END, parse_special=True))
        if not think_end:
            raise VocabularyError(f"the vocabulary cannot encode {THINK_END!r}")
        ids = {}
        for word in (ANSWER_TRUE, ANSWER_FALSE):
            toks = model.tokenize(word, parse_special=False)
            if len(toks) != 1:
                raise VocabularyError(
                    f"rank1 needs {word!r} to be one token; this vocabulary splits it into {toks}"
                )
            ids[word] = toks[0]
        return cls(think_end=think_end, true_id=ids[ANSWER_TRUE], false_id=ids[ANSWER_FALSE])


#: One passage to judge: the client package's one passage type.
Document = Passage


@dataclass(frozen=True)
class JudgeResult:
    """The judgments of one call (input order) and the tokens they took."""

    judgments: list[Judgment]
    prompt_tokens: int
    completion_tokens: int
    #: The reasoning budget each document ran with (input order), after fitting.
    reasoning_budgets: tuple[int, ...] = ()


@dataclass(frozen=True)
class Prepared:
    """One document's prompt, ready for the engine."""

    prompt: str
    tokens: list[int]
    #: The passage was cut to fit the slot.
    truncated: bool
    #: The reasoning budget that fits the slot beside the prompt.
    max_reasoning_tokens: int


class Rank1Judge:
    """Judge many passages for one query at once on the engine's slots.

    ``on_judgment(seconds)`` is called once per finished judgment (for metrics).
    """

    def __init__(
        self,
        engine: Engine,
        vocab: Rank1Vocab,
        *,
        on_judgment: Callable[[float], None] | None = None,
    ) -> None:
        self.engine = engine
        self.model = engine.model
        self.vocab = vocab
        self.on_judgment = on_judgment

    # ------------------------------------------------------------------ prompts

    def prompt_tokens(
        self,
        query: str,
        doc: Document,
        *,
        instruction: str | None,
        max_reasoning_tokens: int,
        max_passage_tokens: int | None = None,
    ) -> tuple[str, list[int], bool]:
        """The rank1 prompt, its tokens, and whether the passage was cut to fit one slot.

        Only the passage is cut (never the prompt around it). The slot holds the prompt,
        the reasoning and :data:`FORCED_MARGIN` tokens for the forced answer; a passage
        that does not fit is cut so that at least ``min(max_reasoning_tokens,
        RESERVED_REASONING_TOKENS, half the room the rest of the prompt leaves)`` reasoning
        tokens remain. The budget itself is then fitted by :meth:`prepare`.
        ``max_passage_tokens`` cuts the passage further, to that many tokens (the rerank
        APIs' per-document limit: Cohere's ``max_tokens_per_doc``).
        """
        n_ctx = self.engine.n_ctx_per_slot
        room = n_ctx - FORCED_MARGIN  # prompt + reasoning
        frame = len(self._tok(build_prompt(query, "", title=doc.title, instruction=instruction)))
        floor = min(max_reasoning_tokens, RESERVED_REASONING_TOKENS, (room - frame) // 2)
        if floor < 1:
            raise NoRoom(
                f"no room for the passage: the prompt around it takes {frame} tokens, but "
                f"one slot holds {n_ctx} tokens ({FORCED_MARGIN} of them kept for the forced "
                "answer); shorten the query or instruction, or serve a longer --n-ctx"
            )
        limit = room - floor
        budget = limit - frame
        if max_passage_tokens is not None:
            budget = min(budget, max_passage_tokens)
        text, truncated = doc.text, False
        for _ in range(4):  # token boundaries can shift a little once the passage is in place
            text, cut = truncate_passage(
                doc.text, max_tokens=budget, tokenize=self._tok_text, detokenize=self._detok
            )
            truncated = truncated or cut
            prompt = build_prompt(query, text, title=doc.title, instruction=instruction)
            tokens = self._tok(prompt)
            over = len(tokens) - limit
            if over <= 0:
                return prompt, tokens, truncated
            budget -= over
        raise ValueError("could not fit the passage into one slot's context")

    def prepare(
        self,
        query: str,
        doc: Document,
        *,
        instruction: str | None,
        max_reasoning_tokens: int,
        max_passage_tokens: int | None = None,
    ) -> Prepared:
        """The prompt (passage cut by :meth:`prompt_tokens`) and the reasoning budget that
        fits beside it: ``min(max_reasoning_tokens, n_ctx - prompt tokens - FORCED_MARGIN)``
        (:func:`~rank1_integrations.protocol.fit_reasoning_budget`)."""
        prompt, tokens, truncated = self.prompt_tokens(
            query, doc, instruction=instruction, max_reasoning_tokens=max_reasoning_tokens,
            max_passage_tokens=max_passage_tokens,
        )
        budget = fit_reasoning_budget(
            max_reasoning_tokens, n_ctx=self.engine.n_ctx_per_slot, prompt_tokens=len(tokens),
            margin=FORCED_MARGIN,
        )
        return Prepared(prompt, tokens, truncated, budget)

    def forced_tokens(self, prompt: str, reasoning: str) -> list[int]:
        """The forced-answer prompt's tokens, with room for its one answer token.

        The reasoning's text re-tokenised can take more tokens than were generated
        (:data:`FORCED_MARGIN` covers the usual difference). FIX: when the forced prompt
        still does not fit the slot, the end of the reasoning is cut until it does (the
        official code's request fails there, and the verdict would be lost); the judgment
        keeps the whole chain.
        """
        limit = self.engine.n_ctx_per_slot - 1
        text = reasoning.split(THINK_END, 1)[0]
        tokens = self._tok(forced_answer_prompt(prompt, text))  # cuts at </think> itself
        for _ in range(4):
            over = len(tokens) - limit
            if over <= 0:
                return tokens
            chain = self._tok_text(text)
            text = self._detok(chain[: max(0, len(chain) - over)])
            tokens = self._tok(forced_answer_prompt(prompt, text))
        if len(tokens) > limit:
            tokens = self._tok(forced_answer_prompt(prompt, ""))
        return tokens

    def _tok(self, text: str) -> list[int]:
        """A whole prompt's tokens (with BOS when the vocabulary wants one)."""
        return self.model.tokenize(text, add_special=True, parse_special=True)

    def _tok_text(self, text: str) -> list[int]:
        """A passage's tokens (no BOS: it sits inside the prompt)."""
        return self.model.tokenize(text, add_special=False, parse_special=True)

    def _detok(self, ids: Sequence[int]) -> str:
        return self.model.detokenize(ids, special=True)

    def _first_params(self, max_reasoning_tokens: int) -> GenParams:
        v = self.vocab
        return GenParams(
            max_tokens=max_reasoning_tokens,
            stop=STOP_STRINGS,
            stop_token_seqs=(v.think_end + (v.true_id,), v.think_end + (v.false_id,)),
            skip_special_tokens=False,
            probe_ids=(v.true_id, v.false_id),
            probe_after=v.think_end,
            probe_after_text=THINK_END,
        )

    def _forced_params(self) -> GenParams:
        v = self.vocab
        return GenParams(
            max_tokens=1,
            skip_special_tokens=False,
            allowed_ids=(v.true_id, v.false_id),
            probe_ids=(v.true_id, v.false_id),
            probe_after=(),
        )

    # ------------------------------------------------------------------ judging

    async def judge_many(
        self,
        query: str,
        docs: Sequence[Document],
        *,
        instruction: str | None = None,
        max_reasoning_tokens: int = 2048,
        on_text: Callable[[int, str], None] | None = None,
        on_verdict: Callable[[Judgment, int], None] | None = None,
        max_passage_tokens: int | None = None,
    ) -> JudgeResult:
        """Judge ``docs`` for ``query``; one :class:`Judgment` per document, in order.

        All first requests enter the engine's queue together (one bound check: the whole
        call is refused with :class:`~rank1_server.engine.QueueFull` or none of it);
        a forced answer runs in its chain's own slot as the chain ends (no re-queue).

        For streaming (:mod:`~rank1_server.streaming`): ``on_text(index, piece)`` is called
        on the engine thread with each piece of a document's generated text;
        ``on_verdict(judgment, reasoning_budget)`` on the event loop as each verdict lands.
        ``max_passage_tokens`` cuts every passage to that many tokens (see
        :meth:`prompt_tokens`).
        """
        if max_reasoning_tokens < 1:
            raise ValueError(f"max_reasoning_tokens must be >= 1, got {max_reasoning_tokens}")
        prepared = [
            self.prepare(
                query, d, instruction=instruction, max_reasoning_tokens=max_reasoning_tokens,
                max_passage_tokens=max_passage_tokens,
            )
            for d in docs
        ]
        if not prepared:
            return JudgeResult([], 0, 0)
        usage = [sum(len(p.tokens) for p in prepared), 0]
        start = time.perf_counter()
        params = {p.max_reasoning_tokens: self._first_params(p.max_reasoning_tokens)
                  for p in prepared}
        futures = self.engine.submit_many(
            [
                (p.tokens, replace(params[p.max_reasoning_tokens],
                                   follow_up=functools.partial(self._forced_follow_up, p.prompt)))
                for p in prepared
            ],
            on_text=None if on_text is None else [
                functools.partial(on_text, i) for i in range(len(prepared))
            ],
        )

        async def finish(i: int) -> Judgment:
            p = prepared[i]
            first = await asyncio.wrap_future(futures[i])  # cancelled below on any failure
            judgment = await self._verdict(
                i, p.prompt, first, p.truncated, usage, prompt_tokens=len(p.tokens)
            )
            if self.on_judgment is not None:
                self.on_judgment(time.perf_counter() - start)
            if on_verdict is not None:
                on_verdict(judgment, p.max_reasoning_tokens)
            return judgment

        tasks = [asyncio.ensure_future(finish(i)) for i in range(len(prepared))]
        try:
            judgments = list(await asyncio.gather(*tasks))
        except BaseException:
            for t in tasks:
                t.cancel()
            for f in futures:
                self.engine.cancel(f)
            raise
        return JudgeResult(
            judgments, usage[0], usage[1], tuple(p.max_reasoning_tokens for p in prepared)
        )

    def _answered(self, first: Generation) -> bool:
        """The chain ended on ``</think>`` + an answer token, read at that position."""
        return (
            first.finish_reason == "stop"
            and first.probe is not None
            and first.probe_index == len(first.token_ids) - 1
            and first.token_ids[-1] in (self.vocab.true_id, self.vocab.false_id)
        )

    def _forced_follow_up(
        self, prompt: str, first: Generation
    ) -> tuple[list[int], GenParams] | None:
        """The forced answer for a chain that gave none, run by the engine in the chain's
        own slot right as the chain ends (:attr:`GenParams.follow_up`). FIX: the official
        code sends it as a new request; here nothing can run between the two, so the
        verdict never depends on what else the server is doing (see the README's
        reproducibility section)."""
        if self._answered(first):
            return None
        return self.forced_tokens(prompt, first.text), self._forced_params()

    async def _verdict(
        self, index: int, prompt: str, first: Generation, truncated: bool, usage: list[int],
        *, prompt_tokens: int = 0,
    ) -> Judgment:
        fields: dict[str, Any] = {
            "index": index,
            "reasoning": extract_reasoning(first.text),
            "reasoning_tokens": len(first.token_ids),
            "prompt_tokens": prompt_tokens,
            "truncated": truncated,
        }
        usage[1] += len(first.token_ids)
        if self._answered(first):
            assert first.probe is not None  # ``_answered`` checked it
            lt, lf = first.probe
            source = VerdictSource.ANSWER_LOGPROBS
        else:
            second = first.follow_up  # the forced answer, run in the chain's slot
            assert second is not None, "a chain without an answer always gets its follow-up"
            usage[0] += second.prompt_tokens
            usage[1] += len(second.token_ids)
            assert second.probe is not None
            lt, lf = second.probe
            source = VerdictSource.FORCED_ANSWER
        score = score_from_logprobs(lt, lf)
        return Judgment(relevant=is_relevant(score), score=score, source=source, **fields)
