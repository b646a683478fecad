"""Suite-wide checks."""

from __future__ import annotations

import importlib.util
import os

import pytest

#: Test folders and files that run a real engine or server (llama.cpp in process,
#: rank1-server, llama-server, llama-cpp-python's server): marked ``real``.
REAL = ("real/", "server/", "models/", "cli/test_demo_cmd.py", "cli/test_eval_local_server.py",
        "cli/test_local_server.py")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark the tests of :data:`REAL` ``real``, so that ``pytest -m "not real and not
    slow"`` runs the quick part of the suite (about a minute)."""
    root = os.path.dirname(__file__)
    for item in items:
        where = os.path.relpath(str(item.path), root).replace(os.sep, "/")
        if where.startswith(REAL):
            item.add_marker(pytest.mark.real)


def pytest_configure(config: pytest.Config) -> None:
    # The server, demo and model tests skip without llama-cpp-python; in CI that would turn
    # a broken install into a green run, so there its absence is an error.
    if os.environ.get("CI") and importlib.util.find_spec("llama_cpp") is None:
        raise pytest.UsageError(
            "CI must run the llama.cpp tests, but llama-cpp-python is not installed "
            '(pip install -e ".[all,test]")'
        )


_SPAN_EXPORTER: list[object] = []


@pytest.fixture
def span_exporter():  # type: ignore[no-untyped-def]  # the SDK's type, imported lazily
    """The OpenTelemetry SDK's InMemorySpanExporter on the global tracer provider (set
    once per process: added to an SDK provider already set, else one is set), cleared
    around the test."""
    trace = pytest.importorskip("opentelemetry.trace")
    sdk_trace = pytest.importorskip("opentelemetry.sdk.trace")
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    if not _SPAN_EXPORTER:
        provider = trace.get_tracer_provider()
        if not isinstance(provider, sdk_trace.TracerProvider):
            provider = sdk_trace.TracerProvider()
            trace.set_tracer_provider(provider)
        exporter = InMemorySpanExporter()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        _SPAN_EXPORTER.append(exporter)
    exporter = _SPAN_EXPORTER[0]
    exporter.clear()
    yield exporter
    exporter.clear()
