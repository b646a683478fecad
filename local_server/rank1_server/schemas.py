"""Request bodies of the HTTP API (pydantic), validated before anything reaches the engine.

Fields follow OpenAI's legacy completions and chat APIs plus the vLLM extras rank1 clients
send (``skip_special_tokens``, ``allowed_token_ids``, ...), and the Jina/Cohere rerank
shape with rank1's own options (:mod:`rank1_integrations.wire`, shared with the client).
Unknown fields are ignored, as vLLM does.

Every check that needs only the request is here. A malformed body is a 422; a well-formed
option this server cannot honour (sampling, streaming, more than 20 logprobs...) is
refused with a :data:`REFUSED` error, which the API answers as a 400 naming the option.
Checks that need the model or the server's limits (token ids in the vocabulary, the
context, the queue) stay in the routes.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from rank1_integrations.wire import RerankDocument, RerankRequest

from .engine import MAX_LOGPROBS

__all__ = [
    "REFUSED",
    "CompletionRequest",
    "ChatRequest",
    "ChatMessage",
    "RerankRequest",
    "RerankDocument",
    "TokenizeRequest",
]

_MAX_STOP = 16

#: The validation error type of an option this server cannot honour: answered 400 with
#: ``param`` and ``message`` from the error's context (see ``errors.add_exception_handlers``).
REFUSED = "rank1_refused_option"


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

    def refusal(self) -> tuple[str, str] | None:
        """(param, message) for the first option of this request the server refuses: what
        :meth:`unsupported` names, bad stop strings, then each endpoint's own checks."""
        bad = self.unsupported()
        if bad is not None:
            return bad
        try:
            self.stop_list()
        except ValueError as exc:
            return ("stop", str(exc))
        bad = self._endpoint_refusal()
        if bad is not None:
            return bad
        if self.allowed_token_ids is not None and not self.allowed_token_ids:
            return ("allowed_token_ids", "allowed_token_ids must not be empty")
        return None

    def _endpoint_refusal(self) -> tuple[str, str] | None:
        return None

    @model_validator(mode="after")
    def _servable(self) -> _Sampling:
        bad = self.refusal()
        if bad is not None:
            param, message = bad
            raise PydanticCustomError(REFUSED, "{message}", {"param": param, "message": message})
        return self


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

    def _endpoint_refusal(self) -> tuple[str, str] | None:
        if self.echo:
            return ("echo", "echo is not supported")
        if self.suffix:
            return ("suffix", "suffix is not supported")
        if self.logprobs is not None and self.logprobs > MAX_LOGPROBS:
            return ("logprobs", f"logprobs must be at most {MAX_LOGPROBS}, got {self.logprobs}")
        return None


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

    def _endpoint_refusal(self) -> tuple[str, str] | None:
        if self.logprobs and (self.top_logprobs or 0) > MAX_LOGPROBS:
            return ("top_logprobs", f"top_logprobs must be at most {MAX_LOGPROBS}")
        return None


class TokenizeRequest(_Base):
    """``POST /tokenize``: vLLM's request shape (``TokenizeCompletionRequest``)."""

    model: str | None = None
    prompt: str
    #: Add the vocabulary's BOS token when it wants one (as completions do).
    add_special_tokens: bool = True
    return_token_strs: bool = False
