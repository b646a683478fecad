"""``POST /tokenize``: vLLM's shape, ``{prompt, add_special_tokens}`` ->
``{count, max_model_len, tokens}`` (special tokens written as text are parsed, as in
completions)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends

from ..deps import State, require_key
from ..generation import token_text
from ..schemas import TokenizeRequest

__all__ = ["router"]

router = APIRouter(dependencies=[Depends(require_key)])


@router.post("/tokenize")
async def tokenize(
    body: TokenizeRequest, state: State
) -> dict[str, Any]:
    engine = state.ready()
    model = engine.model
    ids = model.tokenize(body.prompt, add_special=body.add_special_tokens, parse_special=True)
    out: dict[str, Any] = {"count": len(ids), "max_model_len": engine.n_ctx_per_slot,
                           "tokens": ids}
    if body.return_token_strs:
        out["token_strs"] = [token_text(model, t) for t in ids]
    return out
