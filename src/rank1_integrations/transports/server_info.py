"""What a server says about itself: the context it serves and its tokenizer.

The completions client uses it to fit each judgment to the server instead of failing it:

* **Context** (tokens per sequence, prompt + generated): ``max_model_len`` of the model's
  entry in ``GET /v1/models`` (vLLM, rank1-server), ``meta.n_ctx`` in that entry
  (llama.cpp's ``llama-server``: one slot's context), else
  ``default_generation_settings.n_ctx`` of llama-server's ``GET /props``.
* **Tokenizer**: ``POST /tokenize`` at the server's root (beside ``/v1``), in vLLM's shape
  (``{model, prompt, add_special_tokens}`` -> ``{tokens, count, max_model_len}``; rank1-server
  answers the same) or llama-server's (``{content, add_special}`` -> ``{tokens}``).
* **Answer token ids**: `` true`` and `` false`` tokenized without special tokens, kept
  only when each is exactly one token (so a server that can restrict or report given ids
  gives the forced answer's two logprobs exactly).

The reasoning budget of a judgment is then ``min(requested, n_ctx - prompt tokens -
FORCED_ANSWER_MARGIN)`` (:func:`~rank1_integrations.protocol.fit_reasoning_budget`). The
prompt's tokens are only counted when they might matter: a prompt of ``B`` UTF-8 bytes
has at most ``B + 3`` tokens (every token of a byte-level BPE or SentencePiece vocabulary
covers at least one byte; ``+3`` for BOS, EOS and SentencePiece's leading space), so when
that bound fits, no request is made. Without a tokenizer that bound is the count used
(conservative: the budget may shrink more than needed); when even the bound leaves no
room, the requested budget is sent unchanged and the server decides.

Probed once per client, lazily (on the first judgment), and cached. Every probe is
best-effort (:meth:`~.sdk.Sdk.probe`): one try, whatever the client's retry policy, with a
short timeout (:data:`~.sdk.PROBE_TIMEOUT`), and counted in ``Judgment.requests`` (hence
the usage totals) of the judgment that sent it: the probes go to the first judgment, a
prompt's ``/tokenize`` to its own. A probe the server answers with an error status (404:
no such endpoint) or something unreadable settles that fact as unknown; a connection
error, timeout, 408/409/429 or 5xx leaves it open and the next judgment probes again (one
try again). Discovery never fails a judgment by itself: what is unknown is not used.

Usage::

    probe = ServerProbe(sdk, "jhu-clsp/rank1-7b")
    info = await probe.info()           # ServerInfo(n_ctx=16000, answer_token_ids=(830, 895), ...)
    budget = await probe.fit(prompt, 2048)
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import openai

from .._retry import is_retryable
from ..protocol import ANSWER_FALSE, ANSWER_TRUE, FORCED_ANSWER_MARGIN, fit_reasoning_budget
from .sdk import Sdk

__all__ = [
    "CHAT_TEMPLATE_TOKENS", "ServerInfo", "ServerProbe", "TokenizerShape", "max_tokens_bound",
]

logger = logging.getLogger("rank1_integrations")

TokenizerShape = Literal["vllm", "llama.cpp"]

#: Tokens a prompt may have beyond its UTF-8 byte count (BOS, EOS, a leading space).
_EXTRA_TOKENS = 3
#: Tokens allowed for a chat template around one user message when the server cannot
#: count the templated prompt itself (only vLLM's ``/tokenize`` takes ``messages``):
#: Qwen2's default template, system prompt included, takes about 30.
CHAT_TEMPLATE_TOKENS = 64


def max_tokens_bound(text: str) -> int:
    """An upper bound on the tokens of ``text`` in any byte-level BPE or SentencePiece
    vocabulary: its UTF-8 bytes plus 3."""
    return len(text.encode("utf-8")) + _EXTRA_TOKENS


class _Unknown(Exception):
    """A probe's answer that settles nothing but is no transient failure (bad shape)."""


@dataclass(frozen=True)
class ServerInfo:
    """What one probe learned; ``None`` fields are unknown."""

    #: Tokens per sequence (prompt + generated).
    n_ctx: int | None = None
    #: The ``/tokenize`` request shape the server answers, if any.
    tokenizer: TokenizerShape | None = None
    #: Ids of `` true`` and `` false`` when each is one token.
    answer_token_ids: tuple[int, int] | None = None
    #: llama.cpp's ``llama-server`` (its ``/v1/models`` entry has ``meta``, or it answers
    #: ``/props``): its non-streaming completions drop the stop-string tokens' logprobs,
    #: so the completions transport streams to it from the first request.
    llama_server: bool = False
    #: vLLM (its ``/v1/models`` entry is ``owned_by: "vllm"``): its chat API continues a
    #: prefilled assistant message (``continue_final_message``), so chat mode can force
    #: the answer there.
    vllm: bool = False
    #: This package's rank1-server (its ``/v1/models`` entry is ``owned_by:
    #: "rank1-server"``).
    rank1_server: bool = False
    #: False when a transient failure left something unprobed (it will be probed again).
    settled: bool = True


class ServerProbe:
    """Probes one server for one model, once, and fits reasoning budgets to it."""

    def __init__(self, sdk: Sdk, model: str) -> None:
        self.sdk = sdk
        self.model = model
        self._info: ServerInfo | None = None
        #: The probe in flight on each event loop (callers on that loop share it).
        self._tasks: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, asyncio.Task[ServerInfo]
        ] = weakref.WeakKeyDictionary()
        #: Set when /tokenize failed for good after the probe found it.
        self._tokenizer_gone = False
        #: Set when vLLM's chat form of /tokenize (``messages``) failed for good.
        self._chat_tokenize_gone = False

    # ------------------------------------------------------------------ public

    async def info(self) -> ServerInfo:
        """The server's info: probed on the first call, then cached once settled."""
        if self._info is not None:
            return self._info
        loop = asyncio.get_running_loop()
        task = self._tasks.get(loop)
        if task is None:
            task = self._tasks[loop] = loop.create_task(self._probe())
            task.add_done_callback(lambda _: self._tasks.pop(loop, None))
        info = await asyncio.shield(task)  # a cancelled caller leaves the probe to others
        if info.settled:
            self._info = info
        return info

    async def count_tokens(
        self, prompt: str, info: ServerInfo | None = None, *, chat: bool = False
    ) -> int | None:
        """The prompt's token count by the server's ``/tokenize`` (BOS included when the
        model adds one), or ``None`` when the server cannot say now. ``info``: what
        :meth:`info` returned for this call (asked for when not given).

        ``chat``: ``prompt`` is one user message: vLLM counts it with its chat template
        applied (``{model, messages, add_generation_prompt}``); other servers count the
        text, plus :data:`CHAT_TEMPLATE_TOKENS` for the template they do not show."""
        info = info or await self.info()
        if info.tokenizer is None or self._tokenizer_gone:
            return None
        try:
            if chat and info.tokenizer == "vllm" and not self._chat_tokenize_gone:
                try:
                    return len(await self._tokenize_chat(prompt))
                except Exception as exc:
                    if is_retryable(exc):
                        raise
                    self._chat_tokenize_gone = True  # e.g. rank1-server: text only
            count = len(await self._tokenize(info.tokenizer, prompt, add_special=True))
            return count + CHAT_TEMPLATE_TOKENS if chat else count
        except Exception as exc:  # noqa: BLE001 - an unknown count is not a failure
            if not is_retryable(exc):
                self._tokenizer_gone = True
            logger.debug("rank1: /tokenize failed (%s); estimating the prompt's tokens", exc)
            return None

    async def fit(
        self, prompt: str, requested: int, info: ServerInfo | None = None, *,
        chat: bool = False,
    ) -> int:
        """The reasoning budget for ``prompt``: ``requested`` when the served context has
        room for it, else what is left (see the module docstring). Raises ``ValueError``
        naming the prompt's tokens and the context when no reasoning token fits.
        ``info``: what :meth:`info` returned for this call (asked for when not given).
        ``chat``: ``prompt`` is one chat message, to which the server adds its template
        (see :meth:`count_tokens`)."""
        info = info or await self.info()
        n_ctx = info.n_ctx
        if n_ctx is None:
            return requested
        bound = max_tokens_bound(prompt) + (CHAT_TEMPLATE_TOKENS if chat else 0)
        if bound + requested + FORCED_ANSWER_MARGIN <= n_ctx:
            return requested  # fits whatever the exact count
        count = await self.count_tokens(prompt, info, chat=chat)
        if count is None:
            if n_ctx - bound - FORCED_ANSWER_MARGIN < 1:
                return requested  # cannot tell: the server decides
            count = bound
        budget = fit_reasoning_budget(requested, n_ctx=n_ctx, prompt_tokens=count)
        if budget < requested:
            logger.debug("rank1: reasoning budget %d -> %d (prompt %d tokens, context %d)",
                         requested, budget, count, n_ctx)
        return budget

    # ------------------------------------------------------------------ probing

    async def _probe(self) -> ServerInfo:
        models = await self._ask(self.sdk.get("/models"))
        if models is None:
            return ServerInfo(settled=False)
        if not (isinstance(models, Mapping) and isinstance(models.get("data"), list)):
            # No model list: not vLLM, llama-server or rank1-server; ask nothing more.
            return ServerInfo()
        settled = True
        n_ctx: int | None = None
        llama_like = False
        vllm = rank1_server = False
        entry = _model_entry(models, self.model)
        if entry is not None:
            vllm = entry.get("owned_by") == "vllm"
            rank1_server = entry.get("owned_by") == "rank1-server"
            n_ctx = _positive_int(entry.get("max_model_len"))
            meta = entry.get("meta")
            if isinstance(meta, Mapping):  # llama-server
                llama_like = True
                n_ctx = n_ctx or _positive_int(meta.get("n_ctx"))
            llama_like = llama_like or entry.get("owned_by") == "llamacpp"
        if n_ctx is None:
            props = await self._ask(self.sdk.get(f"{_root(self.sdk.base_url())}/props"))
            if props is None:
                settled = False
            elif isinstance(props, Mapping):
                settings = props.get("default_generation_settings")
                if isinstance(settings, Mapping):
                    n_ctx = _positive_int(settings.get("n_ctx"))
                    llama_like = llama_like or n_ctx is not None

        tokenizer: TokenizerShape | None = None
        true_ids: list[int] = []
        shapes: tuple[TokenizerShape, ...] = (
            ("llama.cpp", "vllm") if llama_like else ("vllm", "llama.cpp")
        )
        for shape in shapes:
            answer = await self._ask(self._tokenize(shape, ANSWER_TRUE, add_special=False))
            if answer is None:
                settled = False
                break
            if answer is not _NO and answer:  # no tokens: the other shape's server
                tokenizer, true_ids = shape, answer
                break
        answer_ids: tuple[int, int] | None = None
        if tokenizer is not None:
            false_ids = await self._ask(
                self._tokenize(tokenizer, ANSWER_FALSE, add_special=False)
            )
            if false_ids is None:
                settled = False
            elif false_ids is not _NO and len(true_ids) == 1 and len(false_ids) == 1:
                if true_ids[0] != false_ids[0]:
                    answer_ids = (true_ids[0], false_ids[0])
        info = ServerInfo(n_ctx=n_ctx, tokenizer=tokenizer, answer_token_ids=answer_ids,
                          llama_server=llama_like, vllm=vllm, rank1_server=rank1_server,
                          settled=settled)
        logger.debug("rank1: server info %s", info)
        return info

    async def _ask(self, request: Any) -> Any:
        """Await a probe request: its answer, ``_NO`` when the server settled that it has
        none (an error status, a foreign shape), ``None`` on a transient failure."""
        try:
            return await request
        except _Unknown:
            return _NO
        except Exception as exc:  # noqa: BLE001 - discovery must never fail a judgment
            logger.debug("rank1: server probe failed: %s: %s", type(exc).__name__, exc)
            return None if _transient(exc) else _NO

    async def _tokenize(self, shape: TokenizerShape, text: str, *, add_special: bool) -> list[int]:
        root = _root(self.sdk.base_url())
        if shape == "vllm":
            body: dict[str, Any] = {"model": self.model, "prompt": text,
                                    "add_special_tokens": add_special}
        else:
            body = {"content": text, "add_special": add_special, "parse_special": True}
        response = await self.sdk.probe(f"{root}/tokenize", body)
        tokens = response.get("tokens") if isinstance(response, Mapping) else None
        if not isinstance(tokens, list) or not all(
            isinstance(t, int) and not isinstance(t, bool) for t in tokens
        ):
            raise _Unknown(f"/tokenize answered {str(response)[:200]}")
        return tokens


    async def _tokenize_chat(self, content: str) -> list[int]:
        """vLLM's ``/tokenize`` of one user message with the chat template applied."""
        body = {"model": self.model, "messages": [{"role": "user", "content": content}],
                "add_generation_prompt": True}
        response = await self.sdk.probe(f"{_root(self.sdk.base_url())}/tokenize", body)
        tokens = response.get("tokens") if isinstance(response, Mapping) else None
        if not isinstance(tokens, list) or not tokens:
            raise _Unknown(f"/tokenize (messages) answered {str(response)[:200]}")
        return tokens


class _Settled:
    """The marker of a probe the server answered with "no such thing"."""

    def __repr__(self) -> str:
        return "<no answer>"


_NO: Any = _Settled()


def _transient(exc: BaseException) -> bool:
    """A failure worth probing again later (the retry policy's, except 501 Not
    Implemented: a server saying it has no such endpoint)."""
    if isinstance(exc, openai.APIStatusError) and exc.status_code == 501:
        return False
    return is_retryable(exc)


def _root(base_url: str) -> str:
    """The server's root URL: the base URL without its trailing ``/v1``."""
    root = base_url.rstrip("/")
    return root[: -len("/v1")] if root.endswith("/v1") else root


def _positive_int(value: Any) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    return None


def _model_entry(models: Any, model: str) -> Mapping[str, Any] | None:
    """The ``/v1/models`` entry of ``model``, or the only entry when none has that id
    (llama-server and rank1-server answer under any name)."""
    data = models.get("data") if isinstance(models, Mapping) else None
    if not isinstance(data, list):
        return None
    entries = [e for e in data if isinstance(e, Mapping)]
    for entry in entries:
        if entry.get("id") == model:
            return entry
    return entries[0] if len(entries) == 1 else None
