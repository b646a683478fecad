"""OpenTelemetry spans for rank1 calls: one span ``rank1.rerank`` per
:meth:`~rank1_integrations.Rank1Client.rerank` / ``arerank`` call.

Optional: with ``opentelemetry-api`` installed (``pip install rank1-integrations[otel]``)
and a tracer provider set, each call opens a client span carrying the OpenTelemetry GenAI
attributes (``gen_ai.operation.name``, ``gen_ai.request.model``,
``gen_ai.usage.input_tokens``, ``gen_ai.usage.output_tokens``, ``server.address``,
``server.port``) and rank1's own: ``rank1.documents``, ``rank1.judged``,
``rank1.forced_answers``, ``rank1.failures``, ``rank1.requests``, ``rank1.cached``. The
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
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from .judgment import Judgment, total_usage
from .protocol import VerdictSource

if TYPE_CHECKING:
    from .client import Rank1Client

__all__ = ["SPAN_NAME", "CallRecord", "rerank_span"]

#: The name of the span of one rerank call.
SPAN_NAME = "rank1.rerank"

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
            trace = None
        _trace = trace
        if trace is not None:
            from . import __version__

            # a proxy until a provider is set: spans then go to that provider
            _tracer = trace.get_tracer("rank1_integrations", __version__)
    return _tracer


class CallRecord:
    """What the call's span is told when the call ends (a no-op without a recording
    span)."""

    __slots__ = ("_span",)

    def __init__(self, span: Any = None) -> None:
        self._span = span

    def record(self, outcomes: Sequence[Judgment | BaseException]) -> None:
        """Set the call's totals from its outcomes, in input order: judgments (failed
        ones under ``on_error="keep"`` included) and failures (a
        :class:`~rank1_integrations.errors.JudgmentError` per failed passage)."""
        span = self._span
        if span is None or not span.is_recording():
            return
        judgments = [o for o in outcomes if isinstance(o, Judgment)]
        usage = total_usage(judgments)
        span.set_attributes({
            "gen_ai.usage.input_tokens": usage["prompt_tokens"],
            "gen_ai.usage.output_tokens": usage["reasoning_tokens"],
            "rank1.judged": sum(1 for j in judgments if j.ok),
            "rank1.forced_answers": sum(
                1 for j in judgments if j.source == VerdictSource.FORCED_ANSWER
            ),
            "rank1.failures": len(outcomes) - len(judgments)
            + sum(1 for j in judgments if not j.ok),
            "rank1.requests": usage["requests"],
            "rank1.cached": usage["cached"],
        })


@contextlib.contextmanager
def rerank_span(client: Rank1Client, documents: int) -> Iterator[CallRecord]:
    """The span of one rerank call of ``client`` over ``documents`` passages, current for
    the call's duration (an exception is recorded on it and sets its status to error);
    the caller hands the outcomes to the :class:`CallRecord` it yields."""
    tracer = _get_tracer()
    if tracer is None:
        yield CallRecord()
        return
    url = urlsplit(client.base_url)
    attributes: dict[str, Any] = {
        "gen_ai.operation.name": "rerank",
        "gen_ai.request.model": client.model,
        "rank1.mode": client.mode,
        "rank1.documents": documents,
    }
    if url.hostname:
        attributes["server.address"] = url.hostname
    if url.port is not None:
        attributes["server.port"] = url.port
    kind = _trace.SpanKind.CLIENT
    with tracer.start_as_current_span(SPAN_NAME, kind=kind, attributes=attributes) as span:
        yield CallRecord(span)
