"""One OpenTelemetry span per call on every path (``rank1.rerank``; ``rank1.rerank_many``
and ``rank1.eval`` with a child per query), with the GenAI attributes and
rank1's counts, read back from the SDK's in-memory exporter; a no-op without the API."""

from __future__ import annotations

import sys

import httpx
import pytest
import respx

from rank1_integrations import JudgmentError, Rank1Client, telemetry

from .rank1_payloads import body_of, http_client, vllm_completion, vllm_forced

trace = pytest.importorskip("opentelemetry.trace")
sdk_trace = pytest.importorskip("opentelemetry.sdk.trace")
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (  # noqa: E402
    InMemorySpanExporter,
)

QUERY = "what causes tides?"
CUT = ["The", " query", " asks", " what", " causes", " tides", ".", " The", " passage"]


@pytest.fixture
def exporter(span_exporter: InMemorySpanExporter) -> InMemorySpanExporter:
    return span_exporter


def make_client(**kwargs) -> Rank1Client:
    kwargs.setdefault("cache", None)
    kwargs.setdefault("retry_backoff", 0.01)
    kwargs.setdefault("client", http_client())
    return Rank1Client("http://rank1.test:8123/v1", model="jhu-clsp/rank1-7b",
                       max_reasoning_tokens=16, answer_token_ids=(830, 895), **kwargs)


def answer(request: httpx.Request) -> httpx.Response:
    """Passages holding "cut" need the forced answer; "broken" ones get a 500."""
    prompt = body_of(request)["prompt"]
    if prompt.endswith("</think>"):
        return httpx.Response(200, json=vllm_forced({" true": -0.3, " false": -1.4}))
    if "broken" in prompt:
        return httpx.Response(500, json={"error": {"message": "boom"}})
    if "cut" in prompt:
        return httpx.Response(200, json=vllm_completion(reasoning=CUT, answer=None,
                                                        finish="length"))
    return httpx.Response(200, json=vllm_completion())


def answer_in_a_span(request: httpx.Request) -> httpx.Response:
    """:func:`answer`, inside a span of its own ("http"), as an instrumented HTTP stack
    would open: the call's span must be its parent."""
    with trace.get_tracer("test").start_as_current_span("http"):
        return answer(request)


@respx.mock(base_url="http://rank1.test:8123/v1")
async def test_one_span_per_call_with_genai_attributes(
    respx_mock: respx.MockRouter, exporter: InMemorySpanExporter
) -> None:
    respx_mock.post("/completions").mock(side_effect=answer)
    judgments = await make_client(on_error="keep", max_retries=0).arerank(
        QUERY, ["plain one", "cut two", "broken three", "plain four"]
    )
    (span,) = exporter.get_finished_spans()
    assert span.name == "rank1.rerank"
    assert span.kind == trace.SpanKind.CLIENT
    attrs = dict(span.attributes)
    judged = [j for j in judgments if j.ok]
    assert attrs == {
        "gen_ai.operation.name": "rerank",
        "gen_ai.request.model": "jhu-clsp/rank1-7b",
        "server.address": "rank1.test",
        "server.port": 8123,
        "rank1.mode": "completions",
        "rank1.documents": 4,
        "rank1.judged": 3,
        "rank1.forced_answers": 1,
        "rank1.failures": 1,
        "rank1.unjudged": 0,
        "gen_ai.usage.input_tokens": 3 * 61,
        "gen_ai.usage.output_tokens": sum(j.reasoning_tokens for j in judged),
        # plain: 1 each; cut: reasoning + forced; the failure's request is not counted;
        # the first judgment also sent the server probe (GET /models)
        "rank1.requests": 4 + 1,
        "rank1.cached": 0,
    }
    assert span.status.is_ok


@respx.mock(base_url="http://rank1.test:8123/v1")
def test_sync_rerank_and_cache_hits(
    respx_mock: respx.MockRouter, exporter: InMemorySpanExporter
) -> None:
    respx_mock.post("/completions").mock(side_effect=answer)
    with Rank1Client("http://rank1.test:8123/v1", model="m", answer_token_ids=(830, 895),
                     client=httpx.Client(verify=False)) as client:  # cache on
        client.rerank(QUERY, ["plain one"])
        client.rerank(QUERY, ["plain one", "plain two"])
    first, second = exporter.get_finished_spans()
    # the judgment and the server probe (GET /models)
    assert (first.attributes["rank1.requests"], first.attributes["rank1.cached"]) == (2, 0)
    assert (second.attributes["rank1.requests"], second.attributes["rank1.cached"]) == (1, 1)
    assert second.attributes["gen_ai.usage.input_tokens"] == 61  # the hit is not counted again


@respx.mock(base_url="http://rank1.test:8123/v1")
async def test_a_raised_failure_marks_the_span(
    respx_mock: respx.MockRouter, exporter: InMemorySpanExporter
) -> None:
    respx_mock.post("/completions").mock(side_effect=answer)
    with pytest.raises(JudgmentError, match="passage 1"):
        await make_client(on_error="raise", max_retries=0).arerank(
            QUERY, ["plain one", "broken two"]
        )
    (span,) = exporter.get_finished_spans()
    assert span.name == "rank1.rerank"
    assert span.status.status_code == trace.StatusCode.ERROR
    assert [e.name for e in span.events] == ["exception"]


@respx.mock(base_url="http://rank1.test:8123/v1")
async def test_the_call_span_is_the_parent_of_spans_opened_inside(
    respx_mock: respx.MockRouter, exporter: InMemorySpanExporter
) -> None:
    respx_mock.post("/completions").mock(side_effect=answer_in_a_span)
    await make_client().arerank(QUERY, ["plain one"])
    http, call = exporter.get_finished_spans()
    assert call.name == "rank1.rerank"
    assert http.parent is not None and http.parent.span_id == call.context.span_id


@respx.mock(base_url="http://rank1.test:8123/v1")
async def test_without_opentelemetry_nothing_is_traced(
    respx_mock: respx.MockRouter, exporter: InMemorySpanExporter,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    respx_mock.post("/completions").mock(side_effect=answer)
    monkeypatch.setitem(sys.modules, "opentelemetry", None)  # import fails
    monkeypatch.setattr(telemetry, "_trace", telemetry._UNSET)
    monkeypatch.setattr(telemetry, "_tracer", None)
    judgments = await make_client().arerank(QUERY, ["plain one"])
    assert judgments[0].ok
    assert telemetry._trace is None
    assert exporter.get_finished_spans() == ()


@respx.mock(base_url="http://rank1.test:8123/v1")
async def test_arerank_iter_has_its_span_and_its_requests_are_children(
    respx_mock: respx.MockRouter, exporter: InMemorySpanExporter
) -> None:
    respx_mock.post("/completions").mock(side_effect=answer_in_a_span)
    seen = [j async for j in make_client().arerank_iter(QUERY, ["plain one", "plain two"])]
    assert len(seen) == 2
    spans = exporter.get_finished_spans()
    (call,) = [s for s in spans if s.name == "rank1.rerank"]
    http = [s for s in spans if s.name == "http"]
    assert len(http) == 2 and all(h.parent.span_id == call.context.span_id for h in http)
    assert call.attributes["rank1.documents"] == 2 and call.attributes["rank1.judged"] == 2
    assert trace.get_current_span() is trace.INVALID_SPAN  # nothing left on the caller's


@respx.mock(base_url="http://rank1.test:8123/v1")
async def test_rerank_many_has_a_parent_span_and_a_child_per_query(
    respx_mock: respx.MockRouter, exporter: InMemorySpanExporter
) -> None:
    respx_mock.post("/completions").mock(side_effect=answer)
    out = await make_client(on_error="keep", max_retries=0).arerank_many(
        [(QUERY, ["plain one", "broken two"]), (QUERY, ["plain three"])]
    )
    assert [len(js) for js in out] == [2, 1]
    spans = exporter.get_finished_spans()
    (parent,) = [s for s in spans if s.name == "rank1.rerank_many"]
    children = sorted((s for s in spans if s.name == "rank1.rerank"),
                      key=lambda s: s.attributes["rank1.documents"])
    assert len(spans) == 3 and len(children) == 2
    assert all(c.parent.span_id == parent.context.span_id for c in children)
    assert [(c.attributes["rank1.documents"], c.attributes["rank1.judged"],
             c.attributes["rank1.failures"]) for c in children] == [(1, 1, 0), (2, 1, 1)]
    assert (parent.attributes["rank1.documents"], parent.attributes["rank1.judged"],
            parent.attributes["rank1.failures"]) == (3, 2, 1)


@respx.mock(base_url="http://rank1.test:8123/v1")
async def test_a_budget_counts_unjudged_not_failed(
    respx_mock: respx.MockRouter, exporter: InMemorySpanExporter
) -> None:
    respx_mock.post("/completions").mock(side_effect=answer)
    judgments = await make_client(concurrency=1).arerank(
        QUERY, ["plain one", "plain two", "plain three"], stop_after_relevant=1
    )
    assert [j.state.value for j in judgments] == ["judged", "stopped_early", "stopped_early"]
    (span,) = exporter.get_finished_spans()
    assert (span.attributes["rank1.judged"], span.attributes["rank1.unjudged"],
            span.attributes["rank1.failures"]) == (1, 2, 0)


@respx.mock(base_url="http://rank1.test:8123/v1")
def test_rank1_eval_has_a_parent_span_and_a_child_per_query(
    respx_mock: respx.MockRouter, exporter: InMemorySpanExporter
) -> None:
    from rank1_integrations.evaluation.io import Document
    from rank1_integrations.evaluation.runner import rerank_run

    respx_mock.post("/completions").mock(side_effect=answer)
    corpus = {f"d{i}": Document(f"plain doc {i}", "") for i in range(3)}
    run = {"q1": {"d0": 3.0, "d1": 2.0}, "q2": {"d2": 1.0}}
    with Rank1Client("http://rank1.test:8123/v1", model="m", answer_token_ids=(830, 895),
                     client=httpx.Client(verify=False), cache=None) as client:
        result = rerank_run(client, {"q1": QUERY, "q2": QUERY}, corpus, run, progress=False)
    assert result.pairs == 3
    spans = exporter.get_finished_spans()
    (parent,) = [s for s in spans if s.name == "rank1.eval"]
    children = [s for s in spans if s.name == "rank1.rerank"]
    assert len(spans) == 3
    assert sorted(c.attributes["rank1.documents"] for c in children) == [1, 2]
    assert all(c.parent.span_id == parent.context.span_id for c in children)
    assert parent.attributes["rank1.judged"] == 3


@respx.mock(base_url="http://rank1.test:8123/v1")
async def test_judge_has_its_span(
    respx_mock: respx.MockRouter, exporter: InMemorySpanExporter
) -> None:
    respx_mock.post("/completions").mock(side_effect=answer)
    client = make_client(max_retries=0)
    assert (await client.ajudge(QUERY, "plain one")).ok
    with pytest.raises(JudgmentError):
        await client.ajudge(QUERY, "broken one")
    ok, failed = exporter.get_finished_spans()
    assert ok.name == failed.name == "rank1.judge"
    assert (ok.attributes["rank1.documents"], ok.attributes["rank1.judged"]) == (1, 1)
    assert failed.attributes["rank1.failures"] == 1
    assert failed.status.status_code == trace.StatusCode.ERROR  # raised from inside
