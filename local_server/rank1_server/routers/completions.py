"""``POST /v1/completions``, answered like vLLM: greedy only, ``logprobs`` up to 20 (by
partial sort, only when asked), stop strings whose tokens stay in the logprobs,
``skip_special_tokens``, ``finish_reason`` and ``stop_reason``; ``prompt`` may be a list."""

from __future__ import annotations

import time
import uuid

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from ..deps import State, require_key
from ..errors import ApiError
from ..generation import check, completion_logprobs, gen_params, generate, prompts, usage
from ..schemas import CompletionRequest

__all__ = ["router"]

router = APIRouter(dependencies=[Depends(require_key)])


@router.post("/v1/completions")
async def completions(
    body: CompletionRequest, request: Request, state: State
) -> JSONResponse:
    engine = state.ready()
    model = engine.model
    items_in = prompts(body.prompt, model)
    limit = state.config.max_queue
    if len(items_in) > limit:
        raise ApiError(413, f"{len(items_in)} prompts in one request; the limit is {limit}",
                       param="prompt", code="too_many_prompts")
    params = gen_params(body, engine, body.max_tokens or 16, body.logprobs)
    items = [(ids, params) for _, ids in items_in]
    for i, (ids, p) in enumerate(items):
        check(engine, ids, p, param="prompt" if len(items) == 1 else f"prompt.{i}")
    gens = await generate(request, engine, items)
    choices = []
    for i, gen in enumerate(gens):
        logprobs = None
        if gen.logprobs is not None:
            logprobs = completion_logprobs(
                gen, model, body.return_tokens_as_token_ids, exact=bool(body.logprob_token_ids)
            )
        choices.append({
            "index": i, "text": gen.text, "logprobs": logprobs,
            "finish_reason": gen.finish_reason, "stop_reason": gen.stop_reason,
        })
    return JSONResponse({
        "id": f"cmpl-{uuid.uuid4().hex}", "object": "text_completion",
        "created": int(time.time()), "model": state.model_name, "choices": choices,
        "usage": usage(gens),
    })
