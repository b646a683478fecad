"""Bad requests, limits and failures, answered in OpenAI's error shape: 400/422/413,
401 with --api-key, 429 + Retry-After when the queue is full, and a client that
disconnects frees its slot."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from rank1_server.testing import running_server

from .metrics_support import metric, wait_for_metric


def _error(r: httpx.Response, status: int) -> dict:
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["message"]
    return err


@pytest.mark.parametrize("body,param,needle", [
    ({"prompt": "x", "temperature": 0.7}, "temperature", "greedy"),
    ({"prompt": "x", "logprobs": 21}, "logprobs", "at most 20"),
    ({"prompt": "x", "stream": True}, "stream", "streaming"),
    ({"prompt": "x", "n": 2}, "n", "n=1"),
    ({"prompt": "x", "echo": True}, "echo", "echo"),
    ({"prompt": "x", "max_tokens": 5000}, "prompt", "exceed the context of one slot"),
    ({"prompt": [5, 999999]}, "prompt.0", "outside the vocabulary"),
    ({"prompt": "x", "allowed_token_ids": [-1]}, "allowed_token_ids", "outside the vocabulary"),
    ({"prompt": "x", "stop": [""]}, "stop", "must not be empty"),
])
def test_completions_400(server: str, body: dict, param: str, needle: str) -> None:
    err = _error(httpx.post(f"{server}/completions", json=body), 400)
    assert err["param"] == param and needle in err["message"]
    assert err["type"] == "invalid_request_error"


@pytest.mark.parametrize("path,body,param", [
    ("/completions", {"max_tokens": 3}, "prompt"),
    ("/completions", {"prompt": []}, "prompt"),
    ("/completions", {"prompt": "x", "max_tokens": 0}, "max_tokens"),
    ("/rerank", {"query": "q", "documents": [3]}, "documents.0.str"),
    ("/rerank", {"query": "  ", "documents": ["a"]}, "query"),
    ("/rerank", {"query": "q", "documents": ["a"], "top_n": -1}, "top_n"),
    ("/chat/completions", {"messages": []}, "messages"),
])
def test_schema_errors_422(server: str, path: str, body: dict, param: str) -> None:
    err = _error(httpx.post(f"{server}{path}", json=body), 422)
    assert err["param"] == param


def test_malformed_json_and_unknown_route(server: str) -> None:
    r = httpx.post(f"{server}/completions", content=b"{not json",
                   headers={"content-type": "application/json"})
    _error(r, 422)
    _error(httpx.get(f"{server}/nothing-here"), 404)


def test_rerank_400_and_413(server: str) -> None:
    # a query that fills the slot leaves no room: the error names both sizes
    err = _error(httpx.post(f"{server}/rerank", json={
        "query": "tides " * 1200, "documents": ["a"], "max_reasoning_tokens": 8}), 400)
    assert err["param"] == "query" and err["code"] == "context_length_exceeded"
    assert "no room for the passage" in err["message"] and "1024 tokens" in err["message"]
    err = _error(httpx.post(f"{server}/rerank", json={
        "query": "q", "documents": ["a"] * 65}), 413)  # the server's max_queue is 64
    assert err["param"] == "documents" and err["code"] == "too_many_documents"


def test_sdk_raises_bad_request(server: str) -> None:
    client = openai.OpenAI(base_url=server, api_key="x", max_retries=0)
    with pytest.raises(openai.BadRequestError, match="greedy"):
        client.completions.create(model="m", prompt="x", temperature=1.0)


@pytest.fixture(scope="module")
def keyed_server(random_model: Path) -> Iterator[str]:
    with running_server(random_model, parallel=2, n_ctx=256, api_key="sekrit",
                        max_body_bytes=10_000) as url:
        yield url


def test_api_key(keyed_server: str) -> None:
    body = {"prompt": "x", "max_tokens": 2}
    err = _error(httpx.post(f"{keyed_server}/completions", json=body), 401)
    assert err["code"] == "invalid_api_key"
    _error(httpx.post(f"{keyed_server}/completions", json=body,
                      headers={"Authorization": "Bearer wrong"}), 401)
    _error(httpx.get(f"{keyed_server}/models"), 401)
    ok = httpx.post(f"{keyed_server}/completions", json=body,
                    headers={"Authorization": "Bearer sekrit"})
    assert ok.status_code == 200
    assert httpx.get(keyed_server.removesuffix("/v1") + "/health").status_code == 200
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=keyed_server, api_key="nope", max_retries=0).models.list()
    assert openai.OpenAI(base_url=keyed_server, api_key="sekrit").models.list().data


def test_oversized_body_413(keyed_server: str) -> None:
    r = httpx.post(f"{keyed_server}/completions", json={"prompt": "x" * 20_000},
                   headers={"Authorization": "Bearer sekrit"})
    assert _error(r, 413)["code"] == "request_too_large"


def test_oversized_chunked_body_413(keyed_server: str) -> None:
    """A body sent without Content-Length (chunked) is held to the same limit; one under
    it still reaches the route."""
    headers = {"Authorization": "Bearer sekrit", "Content-Type": "application/json"}

    def chunked(body: dict) -> Iterator[bytes]:
        data = json.dumps(body).encode()
        for i in range(0, len(data), 100):
            yield data[i : i + 100]

    r = httpx.post(f"{keyed_server}/completions", headers=headers,
                   content=chunked({"prompt": "x" * 20_000}))
    err = _error(r, 413)
    assert err["code"] == "request_too_large"
    assert "over 10000 bytes" in err["message"]
    ok = httpx.post(f"{keyed_server}/completions", headers=headers,
                    content=chunked({"prompt": "x y " * 50, "max_tokens": 2}))
    assert ok.status_code == 200, ok.text
    assert len(ok.json()["choices"]) == 1


# --------------------------------------------------------------------------- queue, disconnect


LONG = {"prompt": "tides", "max_tokens": 4000, "ignore_eos": True}


async def test_queue_full_429_and_disconnect_frees_slots(one_slot_server: str) -> None:
    root = one_slot_server.removesuffix("/v1")
    cancelled_before = metric(root, "rank1_cancelled_requests_total")
    finished_before = metric(root, "rank1_finished_generations_total")
    async with httpx.AsyncClient(base_url=one_slot_server, timeout=120) as http:
        running = asyncio.ensure_future(http.post("/completions", json=LONG))
        await wait_for_metric(root, "rank1_busy_slots", 1)
        waiting = asyncio.ensure_future(http.post("/completions", json=LONG))
        await wait_for_metric(root, "rank1_queue_depth", 1)
        refused = await http.post("/completions", json={"prompt": "x", "max_tokens": 2})
        err = _error(refused, 429)
        assert err["code"] == "queue_full" and refused.headers["retry-after"] == "1"
        refused = await http.post("/rerank", json={"query": "q", "documents": ["a"]})
        _error(refused, 429)
        # both clients go away: their generations stop and the slot frees
        running.cancel()
        waiting.cancel()
        await asyncio.gather(running, waiting, return_exceptions=True)
    await wait_for_metric(root, "rank1_queue_depth", 0)
    await wait_for_metric(root, "rank1_busy_slots", 0)
    await wait_for_metric(root, "rank1_cancelled_requests_total", cancelled_before + 2)
    assert metric(root, "rank1_finished_generations_total") == finished_before
    ok = httpx.post(f"{one_slot_server}/completions", json={"prompt": "x", "max_tokens": 2})
    assert ok.status_code == 200


async def test_rerank_disconnect_frees_slot(one_slot_server: str) -> None:
    root = one_slot_server.removesuffix("/v1")
    cancelled_before = metric(root, "rank1_cancelled_requests_total")
    async with httpx.AsyncClient(base_url=one_slot_server, timeout=120) as http:
        task = asyncio.ensure_future(http.post("/rerank", json={
            "query": "q", "documents": ["a"], "max_reasoning_tokens": 3900}))
        await wait_for_metric(root, "rank1_busy_slots", 1)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    await wait_for_metric(root, "rank1_busy_slots", 0)
    await wait_for_metric(root, "rank1_queue_depth", 0)
    await wait_for_metric(root, "rank1_cancelled_requests_total", cancelled_before + 1)


async def test_rerank_deadline_is_a_504_and_frees_the_slot(one_slot_server: str) -> None:
    """The engine's path of the per-request ``deadline``: a chain of ~3,900 tokens (seconds
    on the slow model) and a 1-second deadline: 504 ``deadline_exceeded`` soon after 1 s,
    the generation cancelled (the slot frees, counted as cancelled, not finished)."""
    root = one_slot_server.removesuffix("/v1")
    cancelled_before = metric(root, "rank1_cancelled_requests_total")
    finished_before = metric(root, "rank1_finished_generations_total")
    async with httpx.AsyncClient(base_url=one_slot_server, timeout=60) as http:
        start = asyncio.get_running_loop().time()
        r = await http.post("/rerank", json={
            "query": "q", "documents": ["a"], "max_reasoning_tokens": 3900, "deadline": 1})
        took = asyncio.get_running_loop().time() - start
    err = _error(r, 504)
    assert err["code"] == "deadline_exceeded" and err["param"] == "deadline", err
    assert 1 <= took < 1 + 5, f"the 504 took {took:.1f} s"
    await wait_for_metric(root, "rank1_busy_slots", 0, timeout=5)
    await wait_for_metric(root, "rank1_cancelled_requests_total", cancelled_before + 1)
    assert metric(root, "rank1_finished_generations_total") == finished_before


def test_rerank_options_on_the_engine(server: str) -> None:
    """On the engine no document fails alone, so ``on_error: "drop"`` is accepted and has
    nothing to drop (no ``dropped`` key); a deadline that is not reached changes nothing;
    a stream takes no deadline (400 naming it); bad values are refused naming the field."""
    body = {"query": "tides", "documents": ["the moon", "the sun"]}
    r = httpx.post(f"{server}/rerank", json={**body, "on_error": "drop", "deadline": 60},
                   timeout=60)
    assert r.status_code == 200, r.text
    assert sorted(x["index"] for x in r.json()["results"]) == [0, 1]
    assert "dropped" not in r.json()
    r = httpx.post(f"{server}/rerank", json={**body, "stream": True, "deadline": 5}, timeout=60)
    assert _error(r, 400)["param"] == "deadline"
    for bad in ({"deadline": 0}, {"deadline": -1}, {"on_error": "keep"}):
        r = httpx.post(f"{server}/rerank", json={**body, **bad}, timeout=60)
        assert r.status_code in (400, 422) and next(iter(bad)) in r.text, r.text
