"""``ClientSettings``: every setting of :class:`~rank1_integrations.Rank1Client`, its
default and its environment variable, written once.

:class:`~rank1_integrations.Rank1Client` takes its parameters' defaults from here (and
keeps them as a :class:`ClientSettings` in ``client.settings``), the rerankers' settings
mixin its client fields' descriptions, and the ``rank1`` command line its options'
defaults. Three settings come from the environment when not given (nor given empty):

========================  ===================  =============================
setting                   variable             default
========================  ===================  =============================
``base_url``              ``RANK1_BASE_URL``   ``http://127.0.0.1:8000/v1``
``api_key``               ``RANK1_API_KEY``    ``"EMPTY"``
``model``                 ``RANK1_MODEL``      ``jhu-clsp/rank1-7b``
========================  ===================  =============================

>>> DEFAULTS.max_reasoning_tokens
2048
"""

from __future__ import annotations

import os
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from .protocol import DEFAULT_MAX_PASSAGE_CHARS

__all__ = [
    "DEFAULTS",
    "DEFAULT_BASE_URL",
    "DEFAULT_MODEL",
    "ENVIRONMENT",
    "ClientSettings",
    "Mode",
    "OnError",
    "TwoStep",
    "from_environment",
]

Mode = Literal["completions", "chat", "rerank"]
OnError = Literal["raise", "keep", "drop"]
TwoStep = Literal["auto", "on", "off"]

DEFAULT_BASE_URL = "http://127.0.0.1:8000/v1"
DEFAULT_MODEL = "jhu-clsp/rank1-7b"
_DEFAULT_API_KEY = "EMPTY"

#: The settings read from the environment when not given, and their variables.
ENVIRONMENT = {"base_url": "RANK1_BASE_URL", "api_key": "RANK1_API_KEY", "model": "RANK1_MODEL"}
_FALLBACK = {"base_url": DEFAULT_BASE_URL, "api_key": _DEFAULT_API_KEY, "model": DEFAULT_MODEL}


def from_environment(name: str, value: str | None) -> str:
    """``value``, or when it is ``None`` or empty the setting's environment variable (see
    :data:`ENVIRONMENT`), or when that is unset or empty its default."""
    return value or os.environ.get(ENVIRONMENT[name]) or _FALLBACK[name]


class ClientSettings(BaseModel):
    """The settings of a :class:`~rank1_integrations.Rank1Client` (see its docstring for
    what each one does)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    base_url: str = Field(
        default=None, validate_default=True, description="Server /v1 URL (RANK1_BASE_URL)."
    )
    api_key: str = Field(
        default=None, validate_default=True, description="Bearer token (RANK1_API_KEY)."
    )
    model: str = Field(
        default=None, validate_default=True, description="Served model name (RANK1_MODEL)."
    )
    mode: Mode = Field(
        default="completions",
        description="'completions' (the faithful raw prompt), 'chat' (hosts with only a "
        "chat API) or 'rerank' (rank1-server's /v1/rerank).",
    )
    max_reasoning_tokens: int = Field(
        default=2048, ge=1, strict=True,
        description="Reasoning budget per judgment (fitted to the server's context).",
    )
    instruction: str | None = Field(
        default=None,
        description="Relevance definition: text appended to the query, or a template "
        "holding {query} / FILL_QUERY_HERE.",
    )
    concurrency: int = Field(
        default=8, ge=1, strict=True, description="Requests in flight at once (per event loop)."
    )
    timeout: float = Field(default=600.0, gt=0, description="Seconds per HTTP request.")
    max_retries: int = Field(
        default=3, ge=0, strict=True,
        description="Retries after the first try of each HTTP request (connection errors, "
        "timeouts, 408/409/429, 5xx, bad 200s; Retry-After honoured).",
    )
    on_error: OnError = Field(
        default="raise",
        description="Failed judgments: 'raise' (JudgmentError naming the passage), 'keep' "
        "(error set, no score) or 'drop' (logged).",
    )
    max_passage_chars: int = Field(
        default=DEFAULT_MAX_PASSAGE_CHARS, ge=1, strict=True,
        description="Passages are cut to this length (the judgment says so).",
    )
    answer_token_ids: tuple[int, int] | None = Field(
        default=None,
        description="Ids of ' true' and ' false' in the served vocabulary (else asked of "
        "the server's /tokenize in completions mode).",
    )
    retry_backoff: float = Field(
        default=0.5, ge=0, description="Seconds of the first retry's wait."
    )
    allow_text_only: bool = Field(
        default=False,
        description="Accept responses without logprobs (0/1 text-only scores; off: "
        "retried, then failed).",
    )
    two_step: TwoStep = Field(
        default="auto",
        description="Completions mode: the chain without logprobs, stopped at </think>, "
        "then its answer alone (same tokens, same score, smaller responses); 'auto': on "
        "for llama-server and rank1-server (measured faster there), off elsewhere.",
    )
    max_requests_per_minute: int | None = Field(
        default=None, ge=1, strict=True,
        description="Hosted rate limit: requests wait for it (None: no limit).",
    )
    max_tokens_per_minute: int | None = Field(
        default=None, ge=1, strict=True,
        description="Hosted token rate limit: requests wait for it (None: no limit).",
    )

    @field_validator("base_url", "api_key", "model", mode="before")
    @classmethod
    def _from_environment(cls, value: str | None, info: ValidationInfo) -> str:
        assert info.field_name is not None
        return from_environment(info.field_name, value)

    @classmethod
    def description(cls, name: str) -> str:
        """The one-line description of setting ``name``."""
        return cls.model_fields[name].description or ""


#: Every default, unvalidated: ``base_url``, ``api_key`` and ``model`` are ``None`` here
#: (they come from the environment when a client is made, see :func:`from_environment`).
DEFAULTS = ClientSettings.model_construct()
