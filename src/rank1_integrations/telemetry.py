"""OpenTelemetry spans for rank1 calls: one span per call on every public path.

* ``rank1.rerank``: each ``rerank`` / ``arerank`` / ``arerank_iter`` call (so each
  LangChain / LlamaIndex reranker call, sync or async);
* ``rank1.rerank_many``: each ``rerank_many`` / ``arerank_many`` call, with one child
  ``rank1.rerank`` per query;
* ``rank1.eval``: each ``rank1 eval`` run (``rerank_run``), with one child per query;
* ``rank1.judge``: each ``judge`` / ``ajudge`` call (one passage).

Optional: with ``opentelemetry-api`` installed (``pip install rank1-integrations[otel]``)
and a tracer provider set, each call opens a client span carrying the OpenTelemetry GenAI
attributes (``gen_ai.operation.name``, ``gen_ai.request.model``,
``gen_ai.usage.input_tokens``, ``gen_ai.usage.output_tokens``, ``server.address``,
``server.port``) and rank1's own: ``rank1.documents``, ``rank1.judged``,
``rank1.forced_answers``, ``rank1.failures``, ``rank1.unjudged`` (left by a budget),
``rank1.requests``, ``rank1.cached``. The
token counts and requests are :func:`~rank1_integrations.judgment.total_usage`'s: what
the call spent, cached judgments not counted again. Without the package, or without a
provider (the API's default is a no-op one), nothing is recorded and nothing fails.

Usage::

    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    trace.set_tracer_provider(TracerProvider())   # plus an exporter of your choice
    client.rerank(query, passages)                # -> one span "rank1.rerank"
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from .judgment import Judgment, total_usage
from .protocol import VerdictSource

__all__ = [
    "EVAL_SPAN_NAME", "JUDGE_SPAN_NAME", "MANY_SPAN_NAME", "SPAN_NAME", "CallRecord",
    "Endpoint", "child_records", "rerank_span",
]

#: The name of the span of one rerank call (and of each query of a many-query call).
SPAN_NAME = "rank1.rerank"
#: The span of one ``judge`` / ``ajudge`` call.
JUDGE_SPAN_NAME = "rank1.judge"
#: The parent span of one ``rerank_many`` call.
MANY_SPAN_NAME = "rank1.rerank_many"
#: The parent span of one ``rank1 eval`` run.
EVAL_SPAN_NAME = "rank1.eval"

_UNSET: Any = object()
#: ``opentelemetry.trace`` once imported, ``None`` when it is not installed.
_trace: Any = _UNSET
_tracer: Any = None


def _get_tracer() -> Any:
    """The package's tracer, or ``None`` without ``opentelemetry-api`` (imported once,
    lazily: importing this module never imports OpenTelemetry)."""
    global _trace, _tracer
    if _trace is _UNSET:
        try:
            from opentelemetry import trace
        except ImportError:
            _trace = None
            return None
        _trace = trace
        from . import __version__

        # a proxy until a provider is set: spans then go to that provider
        _tracer = trace.get_tracer("rank1_integrations", __version__)
    return _tracer


@dataclass(frozen=True)
class Endpoint:
    """What a span says about where the call went: the small record telemetry takes."""

    base_url: str
    model: str
    mode: str

    def attributes(self, documents: int) -> dict[str, Any]:
        url = urlsplit(self.base_url)
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": "rerank",
            "gen_ai.request.model": self.model,
            "rank1.mode": self.mode,
            "rank1.documents": documents,
        }
        if url.hostname:
            attributes["server.address"] = url.hostname
        if url.port is not None:
            attributes["server.port"] = url.port
        return attributes


class CallRecord:
    """One span's handle: made current where the call's requests start, told the
    outcomes when the call (or its query) ends; a no-op without a recording span."""

    __slots__ = ("_ends", "_span")

    def __init__(self, span: Any = None, *, ends: bool = False) -> None:
        self._span = span
        #: Whether :meth:`record` ends the span (a child's; a call's ends with its block).
        self._ends = ends

    def current(self) -> contextlib.AbstractContextManager[Any]:
        """A block in which this span is the current one (requests started inside are
        its children)."""
        if self._span is None:
            return contextlib.nullcontext()
        return _trace.use_span(self._span, end_on_exit=False)

    def record(self, outcomes: Sequence[Judgment | BaseException]) -> None:
        """Set the call's totals from its outcomes: judgments (failed ones and passages a
        budget left unjudged included, told apart by their ``state``) and failures (a
        :class:`~rank1_integrations.errors.JudgmentError` per failed passage)."""
        span = self._span
        if span is None or not span.is_recording():
            return
        judgments = [o for o in outcomes if isinstance(o, Judgment)]
        usage = total_usage(judgments)
        unjudged = sum(1 for j in judgments if j.state.unjudged)
        span.set_attributes({
            "gen_ai.usage.input_tokens": usage["prompt_tokens"],
            "gen_ai.usage.output_tokens": usage["reasoning_tokens"],
            "rank1.judged": sum(1 for j in judgments if j.ok),
            "rank1.forced_answers": sum(
                1 for j in judgments if j.source == VerdictSource.FORCED_ANSWER
            ),
            "rank1.failures": len(outcomes) - len(judgments)
            + sum(1 for j in judgments if not j.ok and not j.state.unjudged),
            "rank1.unjudged": unjudged,
            "rank1.requests": usage["requests"],
            "rank1.cached": usage["cached"],
        })
        if self._ends:
            span.end()

    def end(self) -> None:
        """End a child span that was never recorded (its call stopped first)."""
        if self._ends and self._span is not None and self._span.is_recording():
            self._span.end()


@contextlib.contextmanager
def rerank_span(
    endpoint: Endpoint, documents: int, *, name: str = SPAN_NAME, current: bool = True,
) -> Iterator[CallRecord]:
    """The span of one call to ``endpoint`` over ``documents`` passages, for the block's
    duration (an exception is recorded on it and sets its status to error); the caller
    hands the outcomes to the :class:`CallRecord` it yields. ``current=False`` for an
    async generator's span (a generator must not leave its context on its consumer's):
    :meth:`CallRecord.current` then makes it current where requests start."""
    tracer = _get_tracer()
    if tracer is None:
        yield CallRecord()
        return
    kind = _trace.SpanKind.CLIENT
    attributes = endpoint.attributes(documents)
    if current:
        with tracer.start_as_current_span(name, kind=kind, attributes=attributes) as span:
            yield CallRecord(span)
        return
    span = tracer.start_span(name, kind=kind, attributes=attributes)
    try:
        yield CallRecord(span)
    except GeneratorExit:  # the consumer left early: not an error
        raise
    except BaseException as exc:
        span.record_exception(exc)
        span.set_status(_trace.Status(_trace.StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
        raise
    finally:
        span.end()


def child_records(
    parent: CallRecord, endpoint: Endpoint, sizes: Sequence[int]
) -> list[CallRecord]:
    """One child span ``rank1.rerank`` of ``parent`` per query (``sizes``: its
    passages), each ended when its outcomes are recorded."""
    tracer = _get_tracer()
    span = parent._span
    if tracer is None or span is None:
        return [CallRecord() for _ in sizes]
    context = _trace.set_span_in_context(span)
    return [
        CallRecord(tracer.start_span(
            SPAN_NAME, context=context, kind=_trace.SpanKind.CLIENT,
            attributes=endpoint.attributes(size),
        ), ends=True)
        for size in sizes
    ]
