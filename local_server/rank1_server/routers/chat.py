"""``POST /v1/chat/completions`` (basic: text messages, greedy, optional logprobs)."""

from __future__ import annotations

import time
import uuid

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from rank1_integrations.protocol import THINK_START

from ..backend import ChatTemplateError, LlamaModel
from ..deps import State, require_key
from ..errors import ApiError
from ..generation import chat_logprobs, check, gen_params, generate, usage
from ..schemas import ChatRequest
from ..state import ServerState

__all__ = ["router"]

router = APIRouter(dependencies=[Depends(require_key)])


@router.post("/v1/chat/completions")
async def chat(
    body: ChatRequest, request: Request, state: State
) -> JSONResponse:
    engine = state.ready()
    model = engine.model
    k = (body.top_logprobs or 0) if body.logprobs else None
    prompt = _chat_prompt(state, model, body)
    ids = model.tokenize(prompt, add_special=True, parse_special=True)
    max_tokens = body.max_completion_tokens or body.max_tokens
    if max_tokens is None:
        max_tokens = max(1, engine.n_ctx_per_slot - len(ids))
    params = gen_params(body, engine, max_tokens, k)
    check(engine, ids, params, param="messages")
    (gen,) = await generate(request, engine, [(ids, params)])
    logprobs = chat_logprobs(gen, model) if gen.logprobs is not None else None
    return JSONResponse({
        "id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion",
        "created": int(time.time()), "model": state.model_name,
        "choices": [{
            "index": 0, "message": {"role": "assistant", "content": gen.text},
            "logprobs": logprobs, "finish_reason": gen.finish_reason,
            "stop_reason": gen.stop_reason,
        }],
        "usage": usage([gen]),
    })


def _chat_prompt(state: ServerState, model: LlamaModel, body: ChatRequest) -> str:
    """The model's chat template when the GGUF has one; otherwise the messages' text
    joined by newlines, followed by ``\\n<think>`` when ``<think>`` is a special token
    (a rank1 GGUF: this rebuilds the raw prompt it was trained on)."""
    messages = [(m.role, m.text()) for m in body.messages]
    tmpl = state.chat_template
    if tmpl:
        try:
            return model.apply_chat_template(tmpl, messages)
        except ChatTemplateError as exc:
            raise ApiError(400, str(exc), param="messages") from exc
        except OverflowError as exc:
            raise ApiError(500, str(exc), type="server_error") from exc
    text = "\n".join(content for _, content in messages)
    if state.think_start_special:
        text += "\n" + THINK_START
    return text
