"""Request bodies of the HTTP API (pydantic), validated before anything reaches the engine.

Fields follow OpenAI's legacy completions and chat APIs plus the vLLM extras rank1 clients
send (``skip_special_tokens``, ``allowed_token_ids``, ...), and the Jina/Cohere rerank
shape with rank1's own options. Unknown fields are ignored, as vLLM does.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = [
    "CompletionRequest",
    "ChatRequest",
    "ChatMessage",
    "RerankRequest",
    "RerankDocument",
    "TokenizeRequest",
]

_MAX_STOP = 16


class _Base(BaseModel):
    model_config = ConfigDict(extra="ignore")


class _Sampling(_Base):
    """What both generation endpoints share."""

    model: str | None = None
    #: Only greedy decoding is served; omitted means 0.
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    n: int = 1
    stream: bool = False
    stop: str | list[str] | None = None
    seed: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    repetition_penalty: float | None = None
    # vLLM extras
    skip_special_tokens: bool = True
    include_stop_str_in_output: bool = False
    ignore_eos: bool = False
    stop_token_ids: list[int] | None = None
    allowed_token_ids: list[int] | None = None
    logprob_token_ids: list[int] | None = None

    def stop_list(self) -> list[str]:
        stops = [self.stop] if isinstance(self.stop, str) else list(self.stop or [])
        if len(stops) > _MAX_STOP:
            raise ValueError(f"stop: at most {_MAX_STOP} stop strings, got {len(stops)}")
        if any(not s for s in stops):
            raise ValueError("stop: stop strings must not be empty")
        return stops

    def unsupported(self) -> tuple[str, str] | None:
        """(param, message) for the first option this server cannot honour, else None."""
        if self.temperature not in (None, 0, 0.0):
            return ("temperature", "only greedy decoding is served: set temperature to 0")
        if self.n != 1:
            return ("n", "only n=1 is served (greedy decoding gives one answer)")
        if self.stream:
            return ("stream", "streaming is not supported by rank1-server; set stream=false")
        if self.top_p not in (None, 1, 1.0):
            return ("top_p", "top_p has no effect on greedy decoding: leave it unset or 1")
        if self.top_k not in (None, 0, -1):
            return ("top_k", "top_k has no effect on greedy decoding: leave it unset")
        for name in ("presence_penalty", "frequency_penalty"):
            if getattr(self, name) not in (None, 0, 0.0):
                return (name, f"{name} is not supported (greedy decoding only)")
        if self.repetition_penalty not in (None, 1, 1.0):
            return ("repetition_penalty", "repetition_penalty is not supported")
        return None


class CompletionRequest(_Sampling):
    """``POST /v1/completions``."""

    prompt: str | list[str] | list[int] | list[list[int]]
    max_tokens: int | None = Field(default=16, ge=1)
    logprobs: int | None = Field(default=None, ge=0)
    echo: bool = False
    suffix: str | None = None
    return_tokens_as_token_ids: bool = False

    @field_validator("prompt")
    @classmethod
    def _non_empty(cls, v: Any) -> Any:
        if isinstance(v, list) and not v:
            raise ValueError("prompt must not be an empty list")
        return v


class ChatMessage(_Base):
    role: Literal["system", "user", "assistant", "developer", "tool"]
    content: str | list[dict[str, Any]] | None = None

    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(
                part.get("text", "") for part in self.content if part.get("type") == "text"
            )
        return self.content or ""


class ChatRequest(_Sampling):
    """``POST /v1/chat/completions`` (basic: text messages, greedy, optional logprobs)."""

    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    logprobs: bool = False
    top_logprobs: int | None = Field(default=None, ge=0)


class RerankDocument(_Base):
    text: str
    title: str | None = None


class RerankRequest(_Base):
    """``POST /v1/rerank``: the Jina / Cohere v2 shape plus rank1's options."""

    model: str | None = None
    query: str = Field(min_length=1)
    documents: list[str | RerankDocument]
    top_n: int | None = Field(default=None, ge=0)
    return_documents: bool = True
    #: Relevance definition: text appended to the query, or a template with ``{query}``.
    instruction: str | None = None
    #: Most tokens rank1 may spend reasoning per document (server default if omitted).
    max_reasoning_tokens: int | None = Field(default=None, ge=1)

    @field_validator("query")
    @classmethod
    def _query_not_blank(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("query must not be blank")
        return v


class TokenizeRequest(_Base):
    """``POST /tokenize``: vLLM's request shape (``TokenizeCompletionRequest``)."""

    model: str | None = None
    prompt: str
    #: Add the vocabulary's BOS token when it wants one (as completions do).
    add_special_tokens: bool = True
    return_token_strs: bool = False
