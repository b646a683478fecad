"""``/v1/completions``: the faithful rank1 path (raw prompt, no chat template).

One request generates the reasoning and stops on ``"</think> true"`` / ``"</think> false"``;
the answer is read at the last position's top-20 logprobs (vLLM and llama-cpp-python keep
the stop-string tokens there). When the output ran out of budget or holds no answer, a
second one-token request on the forced-answer prompt gives the verdict.

llama.cpp's ``llama-server`` drops the stop-string tokens' probabilities from
non-streaming responses (it answers in the chat-style logprobs shape): when such a
response stopped on a stop string yet lacks the answer, the request is repeated streaming
(which keeps them), and streaming is used for that endpoint from then on.

**Two steps** (``two_step``; ``"auto"``, the default, turns it on for llama-server and
rank1-server, where it was measured faster: ``benchmarks/bench_server.py --paths``): the
chain is asked for without logprobs and stopped at ``</think>``; a second request on the
prompt plus that chain asks for the rest with the one-step request's stop strings and
logprobs: the server regenerates ``</think>`` and the answer from its prefix cache, so
only those two positions carry logprobs (on vLLM only the two answer ids':
``logprob_token_ids``). The second request is the one-step request's own tail: the same
tokens (the chain re-tokenised as the server tokenises the prompt), the same logits, the
same score; a chain that ends without ``</think>`` (the budget, end of text) gets the
forced answer as in one step, and one whose ``</think>`` is not followed by an answer
continues in the second request as the one-step request would have. Where the second
request begins with anything but ``</think>`` or the chain's end of text again (a chain
re-tokenised into other tokens, or one ended by end of text, which only vLLM reports,
that goes on), the one-step request is sent after all. Every request counts in
``Judgment.requests``.

Decoding is greedy on every server: ``temperature=0`` plus the neutral value of each
server's own penalty or sampler that could change an argmax (:data:`GREEDY`,
:data:`GREEDY_EXTRA`). A response without the logprobs asked for is retried, then fails;
only with ``allow_text_only`` does it give a text-only verdict.
"""

from __future__ import annotations

import functools
from dataclasses import replace
from typing import Any

from ..errors import BadResponseError, NoVerdictError
from ..judgment import Judgment
from ..protocol import (
    ANSWER_TRUE,
    STOP_STRINGS,
    THINK_END,
    AnswerReading,
    VerdictSource,
    extract_reasoning,
    forced_answer_prompt,
    is_relevant,
    normalise_answer_token,
)
from ..settings import TwoStep
from .base import JudgeCall, Transport
from .logprobs import Position, answer_at, closes_on_answer, is_answer_token, positions
from .sdk import Sdk, counting_requests
from .server_info import ServerProbe

__all__ = ["CompletionsTransport", "GREEDY", "GREEDY_EXTRA", "TOP_LOGPROBS"]

TOP_LOGPROBS = 20

#: OpenAI's own sampling fields, set to plain greedy decoding: any host accepts them.
GREEDY: dict[str, Any] = {
    "temperature": 0, "top_p": 1.0, "presence_penalty": 0.0, "frequency_penalty": 0.0,
}
#: Server-specific fields that would otherwise change a greedy chain, set to neutral (sent
#: in ``extra_body``; a strict host that refuses one gets the request without it):
#:
#: * ``repetition_penalty`` (vLLM): vLLM takes it from the model's generation_config.json
#:   unless the request sets it.
#: * ``repeat_penalty`` (llama.cpp): llama-cpp-python's server defaults to 1.1 (its
#:   ``server/types.py``); llama-server to 1.0, but its ``--repeat-penalty`` flag and a
#:   GGUF's ``general.sampling.penalty_repeat`` change that default.
#: * ``dry_multiplier``, ``xtc_probability``, ``typical_p`` (llama-server): off by
#:   default, but its flags (and for XTC the GGUF metadata) can turn them on, and each can
#:   drop the most probable token before the temperature-0 step picks the maximum.
#:
#: Not sent: ``top_k``, ``min_p`` (nor ``top_p``'s effect): truncation keeps the most
#: probable token, so at temperature 0 they cannot change the chain, and vLLM resets them
#: for greedy requests anyway. Logprobs are read before sampling on all three servers.
GREEDY_EXTRA: dict[str, Any] = {
    "repetition_penalty": 1.0, "repeat_penalty": 1.0,
    "dry_multiplier": 0.0, "xtc_probability": 0.0, "typical_p": 1.0,
}


class CompletionsTransport(Transport):
    """Judges with ``POST /completions``.

    ``answer_token_ids``: the ids of `` true`` and `` false`` in the served model's
    vocabulary (830 and 895 for the Qwen2.5-based rank1 models). When given, the forced
    answer asks vLLM for exactly those two (``allowed_token_ids`` and
    ``logprob_token_ids``) and llama.cpp-style ids are matched directly.

    ``allow_text_only``: accept a response without logprobs and give a text-only verdict
    (score 1.0 or 0.0). Off by default: such a response is retried and then fails, since a
    ranking that mixes calibrated scores with 0/1 ones is silently wrong.

    ``two_step``: ``"on"``, ``"off"``, or ``"auto"`` (the default: on where it was measured
    faster, llama-server and rank1-server; see the module docstring and the README's
    departures table).

    Each request is one step of ``sdk``'s retry policy: a failed forced answer is retried
    alone, without generating the reasoning again.
    """

    name = "completions"

    def __init__(
        self, sdk: Sdk, model: str, *, answer_token_ids: tuple[int, int] | None = None,
        allow_text_only: bool = False, two_step: TwoStep = "auto",
    ) -> None:
        self.sdk = sdk
        self.model = model
        self.answer_token_ids = answer_token_ids
        #: Whether :meth:`fit` takes the ids from the server (none were given).
        self._ask_answer_ids = answer_token_ids is None
        self.allow_text_only = allow_text_only
        #: Set once the server turned out to need streaming (llama-server).
        self.stream = False
        #: Probes the server once for its context and tokenizer (see :meth:`fit`).
        self.probe = ServerProbe(sdk, model)
        self.two_step_setting: TwoStep = two_step
        #: Whether judgments take two requests (``"auto"``: decided in :meth:`fit`).
        self.two_step = two_step == "on"
        #: vLLM: ``logprob_token_ids`` and ``stop_reason`` (set in :meth:`fit`).
        self._vllm = False

    async def fit(self, call: JudgeCall) -> JudgeCall:
        """Fit ``call`` to what the server says about itself: the answer token ids its
        ``/tokenize`` gives (unless given), streaming for llama-server (one request per
        judgment, not a repeat), the reasoning budget fitted to its context. The requests
        this sends (the probes, once per client; a prompt's ``/tokenize``) are counted in
        the returned call's ``requests``, hence in its judgment's."""
        with counting_requests() as count:
            info = await self.probe.info()
            if self._ask_answer_ids and info.answer_token_ids is not None:
                self.answer_token_ids = info.answer_token_ids
            if info.llama_server:
                self.stream = True
            self._vllm = info.vllm
            if self.two_step_setting == "auto":
                # Where it was measured faster (benchmarks/bench_server.py --paths, the
                # README): llama-server and rank1-server. On vLLM it was not (0.67-1.16x,
                # more client CPU: the second request costs about what it saves).
                self.two_step = info.llama_server or info.rank1_server
            budget = await self.probe.fit(call.prompt, call.max_reasoning_tokens, info)
        return replace(call, max_reasoning_tokens=budget, requests=call.requests + count.n)

    def _params(
        self, prompt: str, max_tokens: int, *, logprobs: bool = True, **extra: Any,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"skip_special_tokens": False, **GREEDY_EXTRA}
        body.update(extra.pop("extra_body", {}))
        params = {
            "model": self.model,
            "prompt": prompt,
            "max_tokens": max_tokens,
            **GREEDY,
            "extra_body": body,
            **extra,
        }
        if logprobs:
            params["logprobs"] = TOP_LOGPROBS
        return params

    async def _complete(self, params: dict[str, Any]) -> dict[str, Any]:
        """One completion as ``{text, finish_reason, stop_reason, positions, tokens_used,
        chat_shaped}``, streaming when the server needs it. When ``params`` ask for
        logprobs and ``allow_text_only`` is off, a response without them raises
        :class:`BadResponseError` inside the step (so it is retried)."""
        need = "logprobs" in params and not self.allow_text_only
        if not self.stream:
            result = await self.sdk.create(
                "completions", parse=functools.partial(_choice, require_logprobs=need),
                **params,
            )
            if not (result["chat_shaped"] and result["finish_reason"] == "stop"):
                return result
            last = result["positions"][-1] if result["positions"] else None
            if (
                last is not None
                and is_answer_token(last, self.answer_token_ids)
                and answer_at(last, self.answer_token_ids) is not None
            ):
                return result
            self.stream = True  # llama-server: the stop tokens' logprobs were dropped
        return await self.sdk.stream(
            "completions", parse=functools.partial(_merge_chunks, require_logprobs=need),
            **params,
        )

    async def judge(self, call: JudgeCall) -> Judgment:
        with counting_requests() as count:
            judgment = await self._judge(call)
        return judgment.model_copy(update={"requests": call.requests + count.n})

    async def _one_step(
        self, prompt: str, max_tokens: int, *, answer_ids_only: bool = False
    ) -> dict[str, Any]:
        """The official request: the chain and its answer, top-20 logprobs at every
        position, stopped on ``"</think> true"`` / ``"</think> false"``. With
        ``answer_ids_only`` (the tail of two steps) vLLM is asked for the two answer ids'
        logprobs instead of the top-20 (``logprob_token_ids``; the sampled token's come
        with them)."""
        # llama-server renders special tokens (rank1's ``</think>``) as "" unless started
        # with --special or asked per request: without it the stop strings never match and
        # every judgment needs the forced answer
        body: dict[str, Any] = {"preserved_tokens": [THINK_END]}
        if answer_ids_only and self._vllm and self.answer_token_ids is not None:
            body["logprob_token_ids"] = list(self.answer_token_ids)
        return await self._complete(self._params(
            prompt, max_tokens, stop=list(STOP_STRINGS), extra_body=body,
        ))

    async def _two_steps(self, call: JudgeCall) -> dict[str, Any]:
        """The one-step result in two requests: the chain without logprobs, stopped at
        ``</think>``; then the one-step request on the prompt plus that chain, for what
        the budget has left (``</think>`` and the answer, from the server's prefix
        cache). A chain cut by the budget is returned as is (the forced answer follows)."""
        budget = call.max_reasoning_tokens
        # streamed where every request is (llama-server): a caller who leaves (a deadline,
        # a client hanging up on the gateway) then stops the chain, since llama-server
        # notices a closed connection only on a stream (its last chunk has the usage)
        first = await self._complete(self._params(
            call.prompt, budget, logprobs=False, stop=[THINK_END],
            extra_body={"preserved_tokens": [THINK_END]},
        ))
        # the stop string is not in the text on vLLM or llama-server; a server that keeps
        # it (include_stop_str_in_output) has it cut here: the second request writes it
        chain = first["text"].split(THINK_END, 1)[0]
        if first["tokens_used"] < 1:
            # no usage in the answer (a host or proxy that leaves it out): the chain's
            # length, hence the budget left for its tail, is unknown; one step decides
            return await self._one_step(call.prompt, budget)
        stopped = first["finish_reason"] == "stop"
        # vLLM, llama-server and rank1-server count the token that ended the chain
        # (``</think>`` or end of text), which the second request generates again
        used = first["tokens_used"] - (1 if stopped else 0)
        if not stopped or used + 2 > budget or (self._vllm and first["stop_reason"] is None):
            # cut by the budget, or (vLLM says so) ended by end of text: the one-step
            # request would have ended the same way, so the forced answer follows
            return {**first, "positions": []}
        second = await self._one_step(call.prompt + chain, budget - used, answer_ids_only=True)
        items = second["positions"]
        if items is None or (items and items[0].token not in (THINK_END, "")):
            # The tail did not begin where the chain ended: with ``</think>`` ("": a server
            # that does not render it, or end of text again), or with nothing at all (the
            # chain's end of text again: the forced answer follows, as in one step). The
            # chain re-tokenised is not what was generated, or it ended at end of text and
            # the tail went on (servers other than vLLM do not say how a chain ended):
            # the one-step request itself decides, as in the official code.
            return await self._one_step(call.prompt, budget)
        return {
            **second,
            "text": chain + second["text"],
            "tokens_used": used + second["tokens_used"],
            "prompt_tokens": first["prompt_tokens"],
        }

    async def _judge(self, call: JudgeCall) -> Judgment:
        if self.two_step:
            out = await self._two_steps(call)
        else:
            out = await self._one_step(call.prompt, call.max_reasoning_tokens)
        reasoning = extract_reasoning(out["text"])
        fields = {
            "index": call.index,
            "reasoning": reasoning,
            "reasoning_tokens": out["tokens_used"],
            "prompt_tokens": out["prompt_tokens"],
            "truncated": call.truncated,
        }
        items: list[Position] | None = out["positions"]
        # FIX: the official code scores any output whose last top-20 holds both answers,
        # even one cut at max_tokens or ended by end-of-text; we require that generation
        # stopped on the answer: the chain closed with ``</think>`` and its last token is
        # `` true`` or `` false`` (what its stop strings match).
        if (
            out["finish_reason"] == "stop"
            and items
            and closes_on_answer(items, self.answer_token_ids)
        ):
            reading = answer_at(items[-1], self.answer_token_ids)
            if reading is not None:
                if THINK_END not in out["text"]:
                    # the server did not render ``</think>``: the answer word ends the text
                    fields["reasoning"] = extract_reasoning(
                        out["text"].removesuffix(items[-1].token)
                    )
                return _judgment(reading, VerdictSource.ANSWER_LOGPROBS, **fields)
        if items is None and out["finish_reason"] == "stop" and out["stop_reason"] in STOP_STRINGS:
            # The host sent no logprobs at all (accepted with allow_text_only only): the
            # matched stop string is the verdict.
            return _text_only(out["stop_reason"] == STOP_STRINGS[0], **fields)
        return await self._forced(call, out["text"], fields)

    async def _forced(self, call: JudgeCall, text: str, fields: dict[str, Any]) -> Judgment:
        """The official fallback: close the chain and ask for one answer token."""
        extra_body: dict[str, Any] = {}
        if self.answer_token_ids is not None:
            extra_body = {
                "allowed_token_ids": list(self.answer_token_ids),
                "logprob_token_ids": list(self.answer_token_ids),
            }
        prompt = forced_answer_prompt(call.prompt, text.split(THINK_END, 1)[0])
        out = await self._complete(self._params(prompt, 1, extra_body=extra_body))
        items = out["positions"] or []
        reading = answer_at(items[0], self.answer_token_ids) if items else None
        if reading is None and out["positions"] is None and self.allow_text_only:
            answer = normalise_answer_token(out["text"])  # opted in: the token as text
            if answer is not None:
                return _text_only(answer == ANSWER_TRUE, **fields)
        if reading is None:
            raise NoVerdictError(
                f"no answer token in the forced answer's top-{TOP_LOGPROBS} "
                f"(first request ended with finish_reason={out['finish_reason']!r})"
            )
        return _judgment(reading, VerdictSource.FORCED_ANSWER, **fields)


def _judgment(reading: AnswerReading, source: VerdictSource, **fields: Any) -> Judgment:
    return Judgment(
        relevant=is_relevant(reading.score),
        score=reading.score,
        source=source,
        score_estimated=reading.estimated,
        **fields,
    )


def _text_only(relevant: bool, **fields: Any) -> Judgment:
    """A verdict read from the text alone: score 1.0 or 0.0, marked uncalibrated."""
    return Judgment(
        relevant=relevant, score=1.0 if relevant else 0.0, source=VerdictSource.TEXT_ONLY,
        **fields,
    )


def _count(value: Any) -> int:
    """A token count from a response's ``usage``: 0 when absent or not a count."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _nothing_generated(text: str | None, usage: dict[str, Any]) -> bool:
    """True for a completion that ended before its first token (llama-cpp-python then
    sends no logprobs at all): its missing logprobs are not a server fault."""
    return not text and usage.get("completion_tokens") == 0


def _missing_logprobs(what: str) -> BadResponseError:
    return BadResponseError(
        f"the server sent {what} without the logprobs asked for (set allow_text_only=True "
        "to accept a text-only verdict, score 1.0 or 0.0)"
    )


def _choice(response: dict[str, Any], *, require_logprobs: bool = False) -> dict[str, Any]:
    if not isinstance(response, dict):
        raise BadResponseError(f"the server's answer is not a JSON object: {str(response)[:200]}")
    choices = response.get("choices") or []
    if not choices:
        raise NoVerdictError(f"the server answered without choices: {str(response)[:200]}")
    choice = choices[0]
    logprobs = choice.get("logprobs")
    items = positions(logprobs)
    usage = response.get("usage") or {}
    if items is None and _nothing_generated(choice.get("text"), usage):
        items = []  # an empty chain (end of text at once) has no position to list
    if items is None and require_logprobs:
        raise _missing_logprobs("a completion")
    return {
        "text": choice.get("text") or "",
        "finish_reason": choice.get("finish_reason"),
        "stop_reason": choice.get("stop_reason"),
        "positions": items,
        "tokens_used": usage.get("completion_tokens") or len(items or []),
        "prompt_tokens": _count(usage.get("prompt_tokens")),
        "chat_shaped": bool(logprobs) and logprobs.get("content") is not None,
    }


def _merge_chunks(
    chunks: list[dict[str, Any]], *, require_logprobs: bool = False
) -> dict[str, Any]:
    """Join streamed completion chunks into one result like :func:`_choice`'s.

    llama-server's last chunk has ``logprobs: null`` and may carry the ``usage``. A stream
    cut before the chunk with the ``finish_reason`` raises :class:`BadResponseError`."""
    text, finish, stop_reason = [], None, None
    items: list[Position] = []
    saw_logprobs = False
    used: int | None = None
    prompt_tokens = 0
    for chunk in chunks:
        usage = chunk.get("usage") or {}
        used = usage.get("completion_tokens") or used
        prompt_tokens = _count(usage.get("prompt_tokens")) or prompt_tokens
        for choice in chunk.get("choices") or []:
            text.append(choice.get("text") or "")
            finish = choice.get("finish_reason") or finish
            stop_reason = choice.get("stop_reason") or stop_reason
            part = positions(choice.get("logprobs"))
            if part is not None:
                saw_logprobs = True
                items.extend(part)
    if finish is None:  # every server ends a stream with a finish_reason
        raise BadResponseError("the stream ended before its last chunk (no finish_reason)")
    if not saw_logprobs and _nothing_generated("".join(text), {"completion_tokens": used}):
        saw_logprobs = True  # an empty chain has no position to list
    if not saw_logprobs and require_logprobs:
        raise _missing_logprobs("a streamed completion")
    return {
        "text": "".join(text),
        "finish_reason": finish,
        "stop_reason": stop_reason,
        "positions": items if saw_logprobs else None,
        "tokens_used": used or len(items),
        "prompt_tokens": prompt_tokens,
        "chat_shaped": True,
    }

