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
* Unjudged items: passages a budget left unjudged (``deadline``, ``stop_after_relevant``)
  and failed judgments kept under ``on_error="keep"``. Never given a score and never
  dropped: they come *after* the judged ones, in input (first-stage) order, with
  ``relevance_score``/``rank1_relevant`` set to ``None`` and ``rank1_error`` holding why;
  ``score_threshold`` does not apply to them (they have no score). The whole output
  respects ``top_n``: judged items first, then unjudged ones while room is left.
  ``metadata["rank1_judged"]`` says which is which, ``metadata["rank1_state"]`` why
  (``judged``, ``failed``, ``deadline``, ``stopped_early``: a
  :class:`~.judgment.JudgmentState`). ``on_error="drop"`` leaves failures out (the
  client logs a warning naming them); ``"raise"`` raises
  :class:`~rank1_integrations.errors.JudgmentError`.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
import os
import threading
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, SecretStr, field_validator

from ._inputs import check_query
from .client import (
    RELEVANT_THRESHOLD,
    Mode,
    OnDeadline,
    OnError,
    PassageInput,
    Rank1Client,
)
from .judgment import Judgment
from .ranking import rank_order
from .settings import ENVIRONMENT, ClientSettings

__all__ = [
    "ERROR_KEY",
    "JUDGED_KEY",
    "REASONING_KEY",
    "RELEVANT_KEY",
    "SCORE_KEY",
    "STATE_KEY",
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
JUDGED_KEY = "rank1_judged"
STATE_KEY = "rank1_state"

#: Settings passed on to :class:`Rank1Client` when the reranker builds its own (their
#: defaults and descriptions are :class:`~rank1_integrations.settings.ClientSettings`').
_CLIENT_SETTINGS = (
    "base_url", "api_key", "model", "mode", "max_reasoning_tokens", "concurrency",
    "timeout", "max_retries", "max_requests_per_minute", "max_tokens_per_minute",
)
#: The options a call may override (see :meth:`RerankSettings.call_options`).
_CALL_OPTIONS = (
    "instruction", "max_reasoning_tokens", "deadline", "on_deadline", "stop_after_relevant",
)
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
    deadline: float | None = Field(
        default=None, gt=0,
        description="Seconds per call; passages not judged by then come after the judged "
        "ones, unscored, with metadata['rank1_judged'] False (None: no deadline).",
    )
    on_deadline: OnDeadline = Field(
        default="fallback",
        description="When the deadline passes: 'fallback' (return the unjudged ones "
        "marked) or 'raise' (DeadlineExceeded).",
    )
    stop_after_relevant: int | None = Field(
        default=None, ge=1,
        description="Stop judging once this many documents score >= score_threshold (0.5 "
        "without one); the rest come after the judged ones, unjudged (None: judge all).",
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
        self, *, instruction: str | None = None, max_reasoning_tokens: int | None = None,
        deadline: float | None = None, on_deadline: str | None = None,
        stop_after_relevant: int | None = None,
    ) -> Iterator[None]:
        """Override ``instruction``, ``max_reasoning_tokens`` and the budget options
        (``deadline``, ``on_deadline``, ``stop_after_relevant``) for the calls made inside
        the ``with`` block (this reranker's only), through whatever pipeline calls it: the
        options travel in a context variable, so they reach sync calls, async tasks and
        the worker threads frameworks start (they copy the context)."""
        given = {"instruction": instruction, "max_reasoning_tokens": max_reasoning_tokens,
                 "deadline": deadline, "on_deadline": on_deadline,
                 "stop_after_relevant": stop_after_relevant}
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
        those passed to the call itself (``None``: not given); and the relevance threshold
        an early exit counts with (``score_threshold``, 0.5 without one)."""
        options = {name: getattr(self, name) for name in _CALL_OPTIONS}
        options.update((_IN_FORCE.get() or {}).get(id(self), {}))
        options.update({k: v for k, v in given.items() if v is not None})
        options["relevant_threshold"] = (
            RELEVANT_THRESHOLD if self.score_threshold is None else self.score_threshold
        )
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
        self, query: str, passages: Sequence[PassageInput],
        on_judgment: Callable[[Judgment], None] | None = None, **options: Any,
    ) -> list[Judgment]:
        """Judge every passage (input order, failures as ``on_error`` says, passages a
        budget left unjudged marked); an empty input gives ``[]`` without a request. A bad
        query raises before anything else. ``on_judgment`` sees each judgment as it
        arrives, in the caller's context (tracers' parent runs and spans hold). ``options``
        (``instruction``, ``max_reasoning_tokens``, ``deadline``, ``on_deadline``,
        ``stop_after_relevant``; ``None``: not given) override the instance's and
        :meth:`call_options`'."""
        check_query(query)
        if not passages:
            return []
        report = None
        if on_judgment is not None:
            context = contextvars.copy_context()  # the judgments arrive on another thread

            def report(judgment: Judgment) -> None:
                context.run(on_judgment, judgment)

        return self.rank1_client.judge_all(
            query, passages, on_error=self.on_error, on_judgment=report,
            **self._call_options(**options),
        )

    async def ajudge_all(
        self, query: str, passages: Sequence[PassageInput],
        on_judgment: Callable[[Judgment], Awaitable[None] | None] | None = None,
        **options: Any,
    ) -> list[Judgment]:
        """Async twin of :meth:`judge_all` (concurrent, on the running loop);
        ``on_judgment`` may be a coroutine function, awaited per judgment."""
        check_query(query)
        if not passages:
            return []
        out: list[Judgment] = []
        judgments = self.rank1_client.arerank_iter(
            query, passages, on_error=self.on_error, **self._call_options(**options),
        )
        async with contextlib.aclosing(judgments):  # a raising callback cancels the rest
            async for judgment in judgments:
                out.append(judgment)
                if on_judgment is not None:
                    pending = on_judgment(judgment)
                    if pending is not None:
                        await pending
        out.sort(key=lambda j: j.index)
        return out


def select(
    judgments: Sequence[Judgment], *, top_n: int | None, score_threshold: float | None
) -> list[Judgment]:
    """Judged ones by score (descending, stable), cut by threshold (>=); then unjudged
    ones (no score) in input order; the whole cut to ``top_n`` (see the module
    docstring)."""
    ordered = rank_order(sorted(judgments, key=lambda j: j.index), lambda j: j.score)
    ranked = [j for j in ordered if j.score is not None]
    unjudged = [j for j in ordered if j.score is None]
    if score_threshold is not None:
        ranked = [j for j in ranked if j.score is not None and j.score >= score_threshold]
    chosen = ranked + unjudged
    return chosen if top_n is None else chosen[:top_n]


def judgment_metadata(
    judgment: Judgment, *, include_reasoning: bool, score_key: str | None = SCORE_KEY
) -> dict[str, Any]:
    """The metadata entries a reranker adds for one judgment: the score as a plain
    ``float`` (under ``score_key``, unless None), the verdict, whether it was judged
    (``rank1_judged``), the reasoning when asked, and why an unjudged one has no score."""
    added: dict[str, Any] = {}
    if score_key is not None:
        added[score_key] = None if judgment.score is None else float(judgment.score)
    added[RELEVANT_KEY] = judgment.relevant
    added[JUDGED_KEY] = judgment.state.judged
    added[STATE_KEY] = judgment.state.value
    if include_reasoning:
        added[REASONING_KEY] = judgment.reasoning
    if judgment.error is not None:
        added[ERROR_KEY] = judgment.error
    return added
