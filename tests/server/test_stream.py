"""``POST /v1/rerank`` with ``"stream": true`` on a real server (uvicorn on loopback, real
llama.cpp engine): event order, the same content as the non-streamed answer, errors
before the stream as plain HTTP errors, and a client that leaves freeing its slot."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest
from rank1_server.streaming import ReasoningFilter

from rank1_integrations.protocol import extract_reasoning
from rank1_integrations.wire import (
    RerankStreamDone,
    RerankStreamReasoning,
    RerankStreamResult,
    parse_stream_event,
)

from .metrics_support import metric, wait_for_metric


def _events(lines: Iterator[str]) -> Iterator[tuple[str, str]]:
    """(event name, data) pairs of an SSE body."""
    name, data = "", []
    for line in lines:
        if line.startswith("event:"):
            name = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].strip())
        elif line == "" and data:
            yield name, "\n".join(data)
            name, data = "", []


def _stream(server: str, body: dict) -> list:
    with httpx.stream("POST", f"{server}/rerank", json={**body, "stream": True},
                      timeout=120) as r:
        assert r.status_code == 200, r.read()
        assert r.headers["content-type"].startswith("text/event-stream")
        out = []
        for name, data in _events(r.iter_lines()):
            event = parse_stream_event(data)
            assert event.type == name
            out.append(event)
    return out


DOCS = ["the moon pulls the sea", {"text": "tides rise twice a day", "title": "Tides"},
        "x", "bananas are yellow"]


@pytest.mark.parametrize("extra", [{}, {"top_n": 2, "return_documents": False}])
def test_stream_order_and_content_equal_non_streamed(server: str, extra: dict) -> None:
    """Random weights: every chain runs out of budget, verdicts by the forced answer."""
    _check_stream(server, {"query": "what causes tides?", "documents": DOCS,
                           "max_reasoning_tokens": 8, **extra})


def test_stream_on_the_demo_model(demo_server: str) -> None:
    """The demo model closes its chains: verdicts read after ``</think>`` (the stop path)."""
    body = {"query": "how do bees make honey from nectar", "documents": [
        "Volcanoes erupt when magma rises through the crust.",
        "Bees make honey from nectar they collect from flowers.",
        {"text": "Honey bees live in hives.", "title": "Bees"}]}
    results = _check_stream(demo_server, body)
    assert {r.source for r in results.values()} == {"answer_logprobs"}
    assert all(r.reasoning for r in results.values())


def test_stream_without_reasoning_events(demo_server: str) -> None:
    """``"stream_reasoning": false``: only result events, then done; the results (chains
    included) equal those of the full stream."""
    body = {"query": "how do bees make honey from nectar", "documents": [
        "Volcanoes erupt when magma rises through the crust.",
        "Bees make honey from nectar they collect from flowers."]}
    full = _stream(demo_server, body)
    bare = _stream(demo_server, {**body, "stream_reasoning": False})
    assert [type(e) for e in bare] == [RerankStreamResult, RerankStreamResult, RerankStreamDone]
    assert any(isinstance(e, RerankStreamReasoning) for e in full)

    def results(events: list) -> dict:
        return {e.result.index: {**e.result.wire(), "relevance_score": 0}
                for e in events if isinstance(e, RerankStreamResult)}

    assert results(bare) == results(full)
    assert all(r["reasoning"] for r in results(bare).values())


def _check_stream(server: str, body: dict) -> dict:
    DOCS = body["documents"]  # noqa: N806
    events = _stream(server, body)
    plain = httpx.post(f"{server}/rerank", json=body, timeout=120).json()

    assert isinstance(events[-1], RerankStreamDone)
    assert all(not isinstance(e, RerankStreamDone) for e in events[:-1])
    results = {}
    pieces: dict[int, list[str]] = {i: [] for i in range(len(DOCS))}
    for e in events[:-1]:
        if isinstance(e, RerankStreamReasoning):
            assert e.index not in results, "reasoning after the document's result"
            assert e.delta
            pieces[e.index].append(e.delta)
        else:
            assert isinstance(e, RerankStreamResult)
            assert e.result.index not in results
            results[e.result.index] = e.result
    assert sorted(results) == list(range(len(DOCS)))  # every document's verdict
    for i, r in results.items():
        assert pieces[i], "no reasoning streamed"
        assert extract_reasoning("".join(pieces[i])) == r.reasoning
    done = events[-1]
    # the non-streamed answer is the result events in the ranking's order; the scores to
    # float noise only (the second request reuses the first's cached prompt cells, so
    # llama.cpp's batch shapes differ: a few 1e-9 measured)
    streamed = [results[i].wire() for i in done.ranking]
    assert [{**r, "relevance_score": 0} for r in streamed] == [
        {**r, "relevance_score": 0} for r in plain["results"]]
    assert [r["relevance_score"] for r in streamed] == pytest.approx(
        [r["relevance_score"] for r in plain["results"]], abs=1e-6)
    assert done.usage.model_dump() == plain["usage"]
    assert done.model == plain["model"]
    return results


def test_stream_errors_before_the_stream_are_http_errors(server: str) -> None:
    r = httpx.post(f"{server}/rerank", json={
        "query": "tides " * 2000, "documents": ["a"], "stream": True}, timeout=60)
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "context_length_exceeded"
    r = httpx.post(f"{server}/rerank", json={"query": "q", "documents": [], "stream": True},
                   timeout=60)
    assert r.status_code == 200
    (done,) = [parse_stream_event(d) for _, d in _events(r.text.split("\n"))]
    assert isinstance(done, RerankStreamDone) and done.ranking == []


def test_reasoning_filter_pieces() -> None:
    f = ReasoningFilter()
    text = " <think>\nthe moon</thi nk pulls</think> true"
    out = "".join(f.feed(c) for c in text) + f.flush()
    assert out == "\nthe moon</thi nk pulls"
    f = ReasoningFilter()
    out = f.feed("<thi") + f.feed("nk>a</") + f.flush()
    assert out == "a</"  # an unfinished chain keeps its held-back tail


# --------------------------------------------------------------------------- disconnect


async def test_stream_disconnect_frees_slot(one_slot_server: str) -> None:
    root = one_slot_server.removesuffix("/v1")
    cancelled_before = metric(root, "rank1_cancelled_requests_total")
    finished_before = metric(root, "rank1_finished_generations_total")
    async with httpx.AsyncClient(base_url=one_slot_server, timeout=120) as http:
        async with http.stream("POST", "/rerank", json={
            "query": "q", "documents": ["a"], "max_reasoning_tokens": 3900, "stream": True,
        }) as r:
            assert r.status_code == 200
            async for line in r.aiter_lines():
                if line.startswith("data:"):
                    assert json.loads(line[5:])["type"] == "reasoning"
                    break
            assert metric(root, "rank1_busy_slots") == 1
        # leaving the block closes the connection mid-stream
    await wait_for_metric(root, "rank1_busy_slots", 0)
    await wait_for_metric(root, "rank1_cancelled_requests_total", cancelled_before + 1)
    assert metric(root, "rank1_finished_generations_total") == finished_before
