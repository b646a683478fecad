"""What the two generation endpoints (completions, chat) share: token ids checked against
the vocabulary, :class:`~rank1_server.engine.GenParams` from a request, the engine's
checks as 400s, generating until the client leaves, and the logprob and usage shapes
(vLLM's: ``"token_id:N"`` keys, :data:`~rank1_integrations.protocol.LOGPROB_FLOOR` for
-inf)."""

from __future__ import annotations

from typing import Any

from fastapi import Request

from rank1_integrations.protocol import LOGPROB_FLOOR, token_id_key

from .backend import LlamaModel
from .deps import until_disconnect
from .engine import Engine, Generation, GenParams, PromptTooLong, QueueFull
from .errors import ApiError, queue_full
from .schemas import ChatRequest, CompletionRequest

__all__ = [
    "chat_logprobs",
    "check",
    "completion_logprobs",
    "gen_params",
    "generate",
    "prompts",
    "token_ids",
    "token_text",
    "usage",
]


def prompts(prompt: Any, model: LlamaModel) -> list[tuple[str | None, list[int]]]:
    """Normalise the prompt field into (text or None, token ids) pairs."""
    if isinstance(prompt, str):
        raw: list[Any] = [prompt]
    elif prompt and all(isinstance(x, int) for x in prompt):
        raw = [list(prompt)]
    else:
        raw = list(prompt)
    out: list[tuple[str | None, list[int]]] = []
    for i, p in enumerate(raw):
        if isinstance(p, str):
            out.append((p, model.tokenize(p, add_special=True, parse_special=True)))
        else:
            out.append((None, list(token_ids(model, p, f"prompt.{i}") or ())))
    return out


def token_ids(model: LlamaModel, ids: list[int] | None, param: str) -> tuple[int, ...] | None:
    """``ids`` as a tuple, or a 400 naming ``param`` for the first id outside the vocabulary."""
    if ids is None:
        return None
    bad = [t for t in ids if not 0 <= t < model.n_vocab]
    if bad:
        raise ApiError(400, f"token id {bad[0]} is outside the vocabulary "
                       f"(0..{model.n_vocab - 1})", param=param)
    return tuple(ids)


def gen_params(
    body: CompletionRequest | ChatRequest, engine: Engine, max_tokens: int, logprobs: int | None
) -> GenParams:
    """The engine's parameters for a request (its options were checked by the schema)."""
    model = engine.model
    stop_ids = token_ids(model, body.stop_token_ids, "stop_token_ids") or ()
    allowed = token_ids(model, body.allowed_token_ids, "allowed_token_ids")
    extra = token_ids(model, body.logprob_token_ids, "logprob_token_ids") or ()
    if extra:
        # vLLM's semantics: logprob_token_ids replaces the top-k; exactly these ids are
        # reported at every position.
        logprobs = 0
    return GenParams(
        max_tokens=max_tokens,
        stop=tuple(body.stop_list()),
        stop_token_seqs=tuple((t,) for t in stop_ids),
        skip_special_tokens=body.skip_special_tokens,
        include_stop_str_in_output=body.include_stop_str_in_output,
        ignore_eos=body.ignore_eos,
        logprobs=logprobs,
        logprob_ids=extra,
        allowed_ids=allowed,
    )


def check(engine: Engine, ids: list[int], params: GenParams, *, param: str) -> None:
    """The engine's own checks (the prompt fits one slot...), as 400s naming ``param``."""
    try:
        engine.check(ids, params)
    except PromptTooLong as exc:
        raise ApiError(400, str(exc), param=param, code="context_length_exceeded") from exc
    except ValueError as exc:
        raise ApiError(400, str(exc), param=param) from exc


async def generate(
    request: Request, engine: Engine, items: list[tuple[list[int], GenParams]]
) -> list[Generation]:
    """Generate ``items`` together; cancelled if the client leaves, 429 if the queue is full."""
    try:
        return await until_disconnect(request, engine.generate_many(items))
    except QueueFull as exc:
        raise queue_full(exc) from exc


def token_text(model: LlamaModel, token: int, as_id: bool = False) -> str:
    """A token as a logprob key: its text, or ``"token_id:N"`` with ``as_id``."""
    if as_id:
        return token_id_key(token)
    return model.piece(token, special=True).decode("utf-8", "replace")


def _lp(value: float) -> float:
    return max(float(value), LOGPROB_FLOOR)


def completion_logprobs(
    gen: Generation, model: LlamaModel, as_ids: bool, *, exact: bool = False
) -> dict[str, Any]:
    """vLLM's shape; the tokens that completed a stop string are kept.

    ``top_logprobs[i]`` holds the chosen token and the top-k; with ``exact`` (the request
    gave ``logprob_token_ids``) exactly the requested ids."""
    tokens, token_logprobs, top_logprobs, offsets = [], [], [], []
    offset = 0
    for lp in gen.logprobs or []:
        text = token_text(model, lp.token, as_ids)
        tokens.append(text)
        token_logprobs.append(_lp(lp.logprob))
        top: dict[str, float] = {} if exact else {text: _lp(lp.logprob)}
        for t, v in lp.top:
            top.setdefault(token_text(model, t, as_ids), _lp(v))
        top_logprobs.append(top)
        offsets.append(offset)
        offset += len(text)
    return {"tokens": tokens, "token_logprobs": token_logprobs, "top_logprobs": top_logprobs,
            "text_offset": offsets}


def chat_logprobs(gen: Generation, model: LlamaModel) -> dict[str, Any]:
    """OpenAI chat's shape: ``{"content": [{id, token, logprob, bytes, top_logprobs}]}``."""
    return {"content": [
        {**_chat_entry(model, lp.token, lp.logprob),
         "top_logprobs": [_chat_entry(model, t, v) for t, v in lp.top]}
        for lp in gen.logprobs or []
    ]}


def _chat_entry(model: LlamaModel, token: int, logprob: float) -> dict[str, Any]:
    raw = model.piece(token, special=True)
    return {"id": token, "token": raw.decode("utf-8", "replace"), "logprob": _lp(logprob),
            "bytes": list(raw)}


def usage(gens: list[Generation]) -> dict[str, int]:
    """Prompt and completion tokens of ``gens``, summed."""
    prompt = sum(g.prompt_tokens for g in gens)
    completion = sum(len(g.token_ids) for g in gens)
    return {"prompt_tokens": prompt, "completion_tokens": completion,
            "total_tokens": prompt + completion}
