"""What the LangChain and LlamaIndex rerankers share: their settings, the client they
build from them, and the rules that turn judgments into a ranked selection.

Nothing here imports a framework. Each adapter subclasses its framework's base class and
:class:`RerankSettings` (both are pydantic models), then calls :func:`select` and
:func:`judgment_metadata`.

The rules, written once:

* ``top_n``: ``None`` keeps all; otherwise a positive integer (0 or less is rejected).
* ``score_threshold``: ``None`` keeps all; otherwise a number in [0, 1]; a document is
  kept when ``score >= score_threshold`` (so 0 keeps every judged document, 1 keeps only
  a score of exactly 1.0, and a score equal to the threshold is kept).
* Order: by score, descending; ties keep their input order (a stable sort).
* Failed judgments (``on_error="keep"``): never given a score and never dropped. They come
  *after* the selection, in input order, with ``relevance_score``/``rank1_relevant`` set
  to ``None`` and ``rank1_error`` holding the message; ``top_n`` and ``score_threshold``
  do not apply to them (they were not judged), so the output can hold more than
  ``top_n`` items when some judgments failed. ``on_error="drop"`` leaves them out (the
  client logs a warning naming them); ``"raise"`` raises
  :class:`~rank1_integrations.errors.JudgmentError`.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
import os
import threading
from collections.abc import Iterator, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, SecretStr, field_validator

from .client import Mode, OnError, PassageInput, Rank1Client, _check_query
from .judgment import Judgment
from .ranking import rank_order
from .settings import ENVIRONMENT, ClientSettings

__all__ = [
    "ERROR_KEY",
    "REASONING_KEY",
    "RELEVANT_KEY",
    "SCORE_KEY",
    "RerankSettings",
    "extra_error",
    "judgment_metadata",
    "select",
]

#: Metadata keys the rerankers add.
SCORE_KEY = "relevance_score"
RELEVANT_KEY = "rank1_relevant"
REASONING_KEY = "rank1_reasoning"
ERROR_KEY = "rank1_error"

#: Settings passed on to :class:`Rank1Client` when the reranker builds its own (their
#: defaults and descriptions are :class:`~rank1_integrations.settings.ClientSettings`').
_CLIENT_SETTINGS = (
    "base_url", "api_key", "model", "mode", "max_reasoning_tokens", "concurrency",
    "timeout", "max_retries", "max_requests_per_minute", "max_tokens_per_minute",
)
#: The options a call may override (see :meth:`RerankSettings.call_options`).
_CALL_OPTIONS = ("instruction", "max_reasoning_tokens")
#: Per-call options in force, by reranker (``id``): set by ``call_options``.
_IN_FORCE: contextvars.ContextVar[dict[int, dict[str, Any]] | None] = contextvars.ContextVar(
    "rank1_call_options", default=None
)
_about = ClientSettings.description


_BUILD_LOCK = threading.Lock()  # one client per reranker, even when threads race to build it


def extra_error(module: str, extra: str, exc: ImportError) -> ImportError:
    """The ImportError raised when an adapter's framework is not installed."""
    return ImportError(
        f"rank1_integrations.{module} needs a package that is not installed ({exc.name}): "
        f'pip install "rank1-integrations[{extra}]"'
    )


def _api_key_from_env() -> SecretStr | None:
    value = os.environ.get(ENVIRONMENT["api_key"])
    return SecretStr(value) if value else None


class RerankSettings(BaseModel):
    """The settings both rerankers take (a pydantic mixin).

    Either pass ``client`` (a :class:`Rank1Client`, shared, configured as you like) or the
    client settings directly; unset ones fall back to the client's defaults and to the
    environment (``RANK1_BASE_URL``, ``RANK1_API_KEY``, ``RANK1_MODEL``).
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, extra="forbid")

    client: Rank1Client | None = Field(
        default=None, exclude=True,
        description="A ready Rank1Client; if set, the client settings below must be unset.",
    )
    base_url: str | None = Field(default=None, description=_about("base_url"))
    api_key: SecretStr | None = Field(
        # never written out: not by model_dump/to_dict, not by pickle (see __getstate__)
        default_factory=_api_key_from_env, exclude=True, description=_about("api_key")
    )
    model: str | None = Field(default=None, description=_about("model"))
    mode: Mode | None = Field(default=None, description=_about("mode"))
    max_reasoning_tokens: int | None = Field(
        default=None, description=_about("max_reasoning_tokens")
    )
    concurrency: int | None = Field(default=None, description=_about("concurrency"))
    timeout: float | None = Field(default=None, description=_about("timeout"))
    max_retries: int | None = Field(default=None, description=_about("max_retries"))
    max_requests_per_minute: int | None = Field(
        default=None, description=_about("max_requests_per_minute")
    )
    max_tokens_per_minute: int | None = Field(
        default=None, description=_about("max_tokens_per_minute")
    )

    top_n: int | None = Field(
        default=None, description="Keep at most this many (None: all); must be >= 1."
    )
    score_threshold: float | None = Field(
        default=None, description="Keep those with score >= this, in [0, 1] (None: all)."
    )
    include_reasoning: bool = Field(
        default=False, description="Attach rank1's reasoning as metadata['rank1_reasoning']."
    )
    instruction: str | None = Field(
        default=None, description="Relevance definition (None: the client's)."
    )
    on_error: OnError | None = Field(
        default=None,
        description="Failed judgments: 'raise', 'keep' (at the end, no score) or 'drop' "
        "(None: the client's policy, 'raise' by default).",
    )

    _own_client: Rank1Client | None = PrivateAttr(default=None)

    @field_validator("top_n")
    @classmethod
    def _check_top_n(cls, value: int | None) -> int | None:
        if value is not None and value < 1:
            raise ValueError(f"top_n must be a positive integer or None, got {value}")
        return value

    @field_validator("score_threshold")
    @classmethod
    def _check_threshold(cls, value: float | None) -> float | None:
        if value is not None and not (math.isfinite(value) and 0.0 <= value <= 1.0):
            raise ValueError(f"score_threshold must be in [0, 1] or None, got {value}")
        return value

    def model_post_init(self, context: Any) -> None:
        super().model_post_init(context)
        if self.client is not None:
            clashing = sorted(set(_CLIENT_SETTINGS) & self.model_fields_set)
            if clashing:
                raise ValueError(
                    f"pass either client or the client settings, not both: {clashing} "
                    "were given with client"
                )

    @property
    def rank1_client(self) -> Rank1Client:
        """The client in use: ``client``, or one built once from the settings."""
        if self.client is not None:
            return self.client
        with _BUILD_LOCK:
            if self._own_client is None:
                options: dict[str, Any] = {
                    name: getattr(self, name) for name in _CLIENT_SETTINGS
                    if getattr(self, name) is not None
                }
                if isinstance(options.get("api_key"), SecretStr):
                    options["api_key"] = options["api_key"].get_secret_value()
                self._own_client = Rank1Client(**options)
            return self._own_client

    def __getstate__(self) -> dict[str, Any]:
        """The pickle: the settings without the API key and without the client this
        reranker built (rebuilt on first use); the key comes back from ``RANK1_API_KEY``.
        A ``client`` you passed pickles as :class:`Rank1Client` does (without its key)."""
        state = super().__getstate__()
        state["__dict__"] = {k: v for k, v in state["__dict__"].items() if k != "api_key"}
        private = state.get("__pydantic_private__")
        if private:
            state["__pydantic_private__"] = {**private, "_own_client": None}
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        if "api_key" not in self.__dict__:  # pydantic's own __setstate__: not re-validated
            self.__dict__["api_key"] = _api_key_from_env()

    @contextlib.contextmanager
    def call_options(
        self, *, instruction: str | None = None, max_reasoning_tokens: int | None = None
    ) -> Iterator[None]:
        """Override ``instruction`` and/or ``max_reasoning_tokens`` for the calls made
        inside the ``with`` block (this reranker's only), through whatever pipeline calls
        it: the option travels in a context variable, so it reaches sync calls, async
        tasks and the worker threads frameworks start (they copy the context)."""
        given = {"instruction": instruction, "max_reasoning_tokens": max_reasoning_tokens}
        given = {k: v for k, v in given.items() if v is not None}
        if "max_reasoning_tokens" in given:
            budget = given["max_reasoning_tokens"]
            if not isinstance(budget, int) or isinstance(budget, bool) or budget < 1:
                raise ValueError(
                    f"max_reasoning_tokens must be a positive integer, got {budget!r}"
                )
        outer = _IN_FORCE.get() or {}
        token = _IN_FORCE.set({**outer, id(self): {**outer.get(id(self), {}), **given}})
        try:
            yield
        finally:
            _IN_FORCE.reset(token)

    def _call_options(self, **given: Any) -> dict[str, Any]:
        """The options of one call: the instance's, then ``call_options``' in force, then
        those passed to the call itself (``None``: not given)."""
        options = {name: getattr(self, name) for name in _CALL_OPTIONS}
        options.update((_IN_FORCE.get() or {}).get(id(self), {}))
        options.update({k: v for k, v in given.items() if v is not None})
        return options

    def close(self) -> None:
        """Close the client this reranker built (a ``client`` you passed is yours to close)."""
        if self._own_client is not None:
            self._own_client.close()

    async def aclose(self) -> None:
        """Close what the reranker's own client opened on the running event loop."""
        if self._own_client is not None:
            await self._own_client.aclose()

    def judge_all(
        self, query: str, passages: Sequence[PassageInput], **options: Any
    ) -> list[Judgment]:
        """Judge every passage (input order, failures as ``on_error`` says); an empty
        input gives ``[]`` without a request. A bad query raises before anything else.
        ``options`` (``instruction``, ``max_reasoning_tokens``; ``None``: not given)
        override the instance's and :meth:`call_options`'."""
        _check_query(query)
        if not passages:
            return []
        return self.rank1_client.rerank(
            query, passages, on_error=self.on_error, **self._call_options(**options)
        )

    async def ajudge_all(
        self, query: str, passages: Sequence[PassageInput], **options: Any
    ) -> list[Judgment]:
        """Async twin of :meth:`judge_all` (concurrent, on the running loop)."""
        _check_query(query)
        if not passages:
            return []
        return await self.rank1_client.arerank(
            query, passages, on_error=self.on_error, **self._call_options(**options)
        )


def select(
    judgments: Sequence[Judgment], *, top_n: int | None, score_threshold: float | None
) -> list[Judgment]:
    """Judged ones by score (descending, stable), cut by threshold (>=) and ``top_n``;
    then failed ones in input order (see the module docstring)."""
    ordered = rank_order(sorted(judgments, key=lambda j: j.index), lambda j: j.score)
    ranked = [j for j in ordered if j.score is not None]
    failed = [j for j in ordered if j.score is None]
    if score_threshold is not None:
        ranked = [j for j in ranked if j.score >= score_threshold]  # type: ignore[operator]
    if top_n is not None:
        ranked = ranked[:top_n]
    return ranked + failed


def judgment_metadata(
    judgment: Judgment, *, include_reasoning: bool, score_key: str | None = SCORE_KEY
) -> dict[str, Any]:
    """The metadata entries a reranker adds for one judgment: the score as a plain
    ``float`` (under ``score_key``, unless None), the verdict, the reasoning when asked,
    and the error of a failed judgment."""
    added: dict[str, Any] = {}
    if score_key is not None:
        added[score_key] = None if judgment.score is None else float(judgment.score)
    added[RELEVANT_KEY] = judgment.relevant
    if include_reasoning:
        added[REASONING_KEY] = judgment.reasoning
    if judgment.error is not None:
        added[ERROR_KEY] = judgment.error
    return added
