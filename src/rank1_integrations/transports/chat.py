"""``/v1/chat/completions``: for hosts that serve only the chat API.

rank1 was trained on raw prompts, never a chat template, so this is a fallback, not the
faithful path. The prompt goes in one user message without its trailing ``<think>`` (the
host's template and reasoning parser start the reasoning). The reasoning is read from
``message.reasoning`` or ``message.reasoning_content`` (vLLM's reasoning parsers) or from
``<think>…</think>`` in the content; the verdict from the answer token's ``top_logprobs``.
A host that returns no logprobs gives a text-only verdict: score 1.0 or 0.0, marked
``source="text_only"``, uncalibrated.

A chain the budget cut before its answer gets rank1's forced answer where the server can
continue a prefilled assistant message: vLLM (``continue_final_message: true`` with
``add_generation_prompt: false``; found by its ``/v1/models`` entry, ``owned_by:
"vllm"``). The assistant message is the chain closed as the completions path closes it
(``"\n{cleaned chain}\n</think>"``), one token is asked for, restricted to the answer
ids when the server's ``/tokenize`` gave them. Elsewhere (llama.cpp's ``llama-server``
and llama-cpp-python's server have no such field; rank1-server's chat route neither) such
a judgment stays an honest :class:`~rank1_integrations.errors.NoVerdictError`.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from ..errors import NoVerdictError
from ..judgment import Judgment
from ..protocol import (
    THINK_END,
    THINK_START,
    VerdictSource,
    extract_reasoning,
    forced_answer_prompt,
    verdict_from_text,
)
from .base import JudgeCall, Transport
from .completions import GREEDY, GREEDY_EXTRA, TOP_LOGPROBS, _count, _judgment, _text_only
from .logprobs import answer_at, find_answer_position, positions
from .sdk import Sdk, counting_requests
from .server_info import ServerInfo, ServerProbe

__all__ = ["ChatTransport"]


class ChatTransport(Transport):
    """Judges with ``POST /chat/completions``."""

    name = "chat"

    def __init__(self, sdk: Sdk, model: str) -> None:
        self.sdk = sdk
        self.model = model
        #: Probes the server once for its context and tokenizer (see :meth:`fit`).
        self.probe = ServerProbe(sdk, model)
        #: What the probe found (set by :meth:`fit`).
        self.probe_info: ServerInfo | None = None

    async def fit(self, call: JudgeCall) -> JudgeCall:
        """The reasoning budget fitted to the served context as in completions mode
        (:meth:`ServerProbe.fit`), the prompt counted as the one chat message it is sent
        as. FIX (chat mode): the budget was sent as it is, and a budget over the context
        failed every chat judgment (vLLM: 400). The probes are counted in the call's
        ``requests``."""
        with counting_requests() as count:
            self.probe_info = await self.probe.info()
            budget = await self.probe.fit(
                _content(call.prompt), call.max_reasoning_tokens, self.probe_info, chat=True
            )
        return replace(call, max_reasoning_tokens=budget, requests=call.requests + count.n)

    async def _forced(
        self, call: JudgeCall, content: str, chain: str, fields: dict[str, Any]
    ) -> Judgment:
        """The forced answer in chat mode (vLLM): the chain, closed with ``</think>``, as a
        prefilled assistant message that the server continues by one token."""
        chain = chain.removeprefix(THINK_START)
        closed = forced_answer_prompt("", chain)  # "\n{cleaned}\n</think>"
        extra: dict[str, Any] = {
            "skip_special_tokens": False, **GREEDY_EXTRA,
            "continue_final_message": True, "add_generation_prompt": False,
        }
        ids = self.probe_info.answer_token_ids if self.probe_info is not None else None
        if ids is not None:
            extra["allowed_token_ids"] = list(ids)
        response = await self.sdk.create(
            "chat",
            model=self.model,
            messages=[{"role": "user", "content": content},
                      {"role": "assistant", "content": closed}],
            max_tokens=1,
            **GREEDY,
            logprobs=True,
            top_logprobs=TOP_LOGPROBS,
            extra_body=extra,
        )
        choices = response.get("choices") or []
        items = positions(choices[0].get("logprobs")) if choices else None
        reading = answer_at(items[0]) if items else None
        if reading is None:
            raise NoVerdictError(
                f"no answer token in the chat forced answer's top-{TOP_LOGPROBS} "
                "(the reply was cut by the budget before its answer)"
            )
        return _judgment(reading, VerdictSource.FORCED_ANSWER, **fields)

    async def judge(self, call: JudgeCall) -> Judgment:
        with counting_requests() as count:
            judgment = await self._judge(call)
        return judgment.model_copy(update={"requests": call.requests + count.n})

    async def _judge(self, call: JudgeCall) -> Judgment:
        content = _content(call.prompt)
        response = await self.sdk.create(
            "chat",
            model=self.model,
            messages=[{"role": "user", "content": content}],
            max_tokens=call.max_reasoning_tokens,
            **GREEDY,
            logprobs=True,
            top_logprobs=TOP_LOGPROBS,
            extra_body={"skip_special_tokens": False, **GREEDY_EXTRA},
        )
        choices = response.get("choices") or []
        if not choices:
            raise NoVerdictError(f"the server answered without choices: {str(response)[:200]}")
        choice = choices[0]
        message: dict[str, Any] = choice.get("message") or {}
        text = message.get("content") or ""
        reasoning = message.get("reasoning") or message.get("reasoning_content")
        if reasoning is None:
            reasoning = extract_reasoning(text) if THINK_END in text else ""
        usage = response.get("usage") or {}
        fields = {
            "index": call.index,
            "reasoning": reasoning.strip(),
            "reasoning_tokens": usage.get("completion_tokens") or 0,
            "prompt_tokens": _count(usage.get("prompt_tokens")),
            "truncated": call.truncated,
        }
        # The answer is what follows the reasoning. A chain still open (``<think>`` without
        # ``</think>``, or no tag and no reasoning field in a reply cut by the budget) has
        # none, whatever words it holds: then no reasoning token (such as the word " true")
        # may be read as the verdict.
        # Otherwise verdict_from_text applies the protocol's rule: after ``</think>``, the
        # first answer word; without the tag, the last word.
        cut = choice.get("finish_reason") == "length"
        still_open = THINK_END not in text and (
            THINK_START in text
            or (cut and not message.get("reasoning") and not message.get("reasoning_content"))
        )
        verdict = None if still_open else verdict_from_text(text)
        if verdict is None and cut and self.probe_info is not None and self.probe_info.vllm:
            # FIX (chat mode): rank1's forced answer, by continuing the assistant message
            chain = message.get("reasoning") or message.get("reasoning_content") or text
            fields["reasoning"] = chain.removeprefix(THINK_START).strip()  # the whole chain
            return await self._forced(call, content, chain, fields)
        items = positions(choice.get("logprobs"))
        if items and verdict is not None:
            position = find_answer_position(items)
            reading = answer_at(position) if position is not None else None
            if reading is not None:
                return _judgment(reading, VerdictSource.ANSWER_LOGPROBS, **fields)
        if verdict is None:
            raise NoVerdictError(
                f"no true/false answer in the reply (finish_reason="
                f"{choice.get('finish_reason')!r}): {text[-200:]!r}"
            )
        return _text_only(verdict, **fields)


def _content(prompt: str) -> str:
    """The user message of a rank1 prompt: without its trailing ``<think>``."""
    return prompt.removesuffix(THINK_START).rstrip("\n")
