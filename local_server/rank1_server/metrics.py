"""Prometheus metrics of one server (its own registry, so several servers can share a
process, as the tests do).

* ``rank1_requests_total{endpoint,status}``: HTTP requests answered.
* ``rank1_generated_tokens_total``, ``rank1_prompt_tokens_total`` (decoded),
  ``rank1_cached_prompt_tokens_total`` (reused from the KV cache),
  ``rank1_cancelled_requests_total`` (generations abandoned by their client).
* ``rank1_decode_calls_total``, ``rank1_decode_seconds_total`` (inside ``llama_decode``,
  synchronised: the device's work), ``rank1_step_seconds_total`` (whole engine steps: the
  difference is the engine's host work per step).
* ``rank1_busy_slots``, ``rank1_slots``, ``rank1_queue_depth``: the engine right now.
* ``rank1_judgment_seconds``: time from a rerank request's start to each judgment.
* ``rank1_dropped_documents_total``: documents left out of a rerank answer under
  ``on_error: "drop"`` (gateway mode: the upstream failed on them). Requests past their
  ``deadline`` are the 504s of ``rank1_requests_total``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from .engine import Engine

__all__ = ["Metrics"]


class Metrics:
    """The server's metrics; ``engine`` is read at scrape time once it is loaded."""

    def __init__(self, get_engine: Callable[[], Engine | None]) -> None:
        try:
            from prometheus_client import CollectorRegistry, Counter, Histogram
            from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
        except ImportError as exc:  # pragma: no cover
            raise ImportError(
                "metrics need prometheus-client: pip install \"rank1-integrations[server]\""
            ) from exc
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "rank1_requests", "HTTP requests answered", ["endpoint", "status"],
            registry=self.registry,
        )
        self.dropped_documents = Counter(
            "rank1_dropped_documents",
            "Documents left out of a rerank answer under on_error=drop (the upstream failed)",
            registry=self.registry,
        )
        self.judgment_seconds = Histogram(
            "rank1_judgment_seconds", "Seconds from a rerank request's start to each judgment",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600),
            registry=self.registry,
        )

        class _EngineCollector:
            def collect(self) -> Iterator[Any]:
                engine = get_engine()
                if engine is None:
                    return
                st = engine.stats
                for name, doc, value in (
                    ("rank1_generated_tokens", "Tokens generated", st.generated_tokens),
                    ("rank1_prompt_tokens", "Prompt tokens decoded", st.prompt_tokens),
                    ("rank1_cached_prompt_tokens", "Prompt tokens reused from the KV cache",
                     st.cached_prompt_tokens),
                    ("rank1_cancelled_requests", "Generations abandoned by their client",
                     st.requests_cancelled),
                    ("rank1_finished_generations", "Generations finished", st.requests_finished),
                    ("rank1_decode_calls", "llama_decode calls", st.decode_calls),
                    ("rank1_decode_seconds", "Seconds inside llama_decode (synchronised)",
                     st.decode_seconds),
                    ("rank1_step_seconds", "Seconds of engine steps (decode plus host work)",
                     st.step_seconds),
                ):
                    yield CounterMetricFamily(name, doc, value=value)
                for name, doc, value in (
                    ("rank1_busy_slots", "Sequence slots in use", engine.busy_slots),
                    ("rank1_slots", "Sequence slots", engine.n_slots),
                    ("rank1_queue_depth", "Requests waiting for a slot", engine.queue_depth),
                ):
                    yield GaugeMetricFamily(name, doc, value=value)

        self.registry.register(_EngineCollector())

    def render(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST
