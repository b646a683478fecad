"""Gateway mode (``rank1-server --upstream URL``): no model loaded, the rerank routes
answered by judging through ``Rank1Client`` at a real upstream, llama.cpp's
``llama-server`` serving the demo model (its chains end on ``</think> true|false``, so the
scores are known); the cohere SDK and LangChain's ``CohereRerank`` in front. Faults: the
upstream gone (502 naming it, ``/health`` 503) and back at its address (recovered, no
restart), a per-document cut a gateway cannot make (400). The per-request options: a
``deadline`` that passes (504, the upstream's work cancelled), ``on_error`` (a document
the upstream cannot judge fails the request with 502, or is dropped and named), and a
client that hangs up (the upstream's work cancelled)."""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path

import cohere
import httpx
import pytest
from rank1_server.testing import running_server

from rank1_integrations import Rank1Client

from .metrics_support import metric
from .rerank_support import EXPECTED, KEY, NO_RETRY, ORDER, QUERY, TEXTS

#: The upstream's context per slot: the demo prompts (~45 tokens) and their 64-token
#: budget fit, :data:`TOO_LONG` does not (the upstream's limit fails that document alone).
UPSTREAM_CTX = 512
#: A document of ~950 of the demo model's tokens (under the client's 6,000-character cut).
TOO_LONG = " ".join(["honey bees nectar flowers"] * 200)


@pytest.fixture(scope="module")
def upstream(demo_model: Path) -> Iterator[str]:
    """llama-server on the demo model; yields its /v1 base URL."""
    from ..real.servers import llama_server, llama_server_binary

    with llama_server(llama_server_binary(), demo_model, parallel=2, alias="rank1-demo",
                      n_ctx_per_slot=UPSTREAM_CTX) as url:
        yield url


@pytest.fixture(scope="module")
def slow_upstream(smollm2_path: Path) -> Iterator[str]:
    """llama-server on SmolLM2 with ``--ignore-eos``: every chain spends its whole budget
    (1,500 tokens: tens of seconds here), so a request is still running upstream when
    its deadline passes or its client hangs up. Yields its /v1 base URL."""
    from ..real.servers import llama_server, llama_server_binary

    with llama_server(llama_server_binary(), smollm2_path, parallel=2, alias="rank1-test",
                      extra=["--ignore-eos"]) as url:
        yield url


def _generating(upstream: str) -> int:
    """How many of llama-server's slots are generating now (its ``/slots``)."""
    slots = httpx.get(upstream.removesuffix("/v1") + "/slots", timeout=5).json()
    return sum(1 for s in slots if s.get("is_processing"))


def _wait_idle(upstream: str, seconds: float) -> int:
    """Poll until no slot of ``upstream`` generates or ``seconds`` pass; the busy count."""
    end = time.monotonic() + seconds
    while (busy := _generating(upstream)) and time.monotonic() < end:
        time.sleep(0.05)
    return busy


@pytest.fixture(scope="module")
def gateway(demo_model: Path, upstream: str) -> Iterator[str]:
    """rank1-server in gateway mode in front of ``upstream``; yields its root URL."""
    with running_server(demo_model, upstream=upstream, upstream_model="rank1-demo",
                        api_key=KEY, max_reasoning_tokens=64, parallel=4) as url:
        yield url.removesuffix("/v1")


def test_cohere_v2_through_the_gateway(gateway: str) -> None:
    co = cohere.ClientV2(api_key=KEY, base_url=gateway)
    out = co.rerank(model="rank1-demo", query=QUERY, documents=TEXTS, top_n=3,
                    request_options=NO_RETRY)
    assert [r.index for r in out.results] == ORDER[:3]
    for r in out.results:
        assert r.relevance_score == pytest.approx(EXPECTED[r.index], abs=2e-3)
        assert r.source == "answer_logprobs" and r.reasoning  # type: ignore[attr-defined]
    health = httpx.get(f"{gateway}/health").json()
    assert health["status"] == "ok" and health["upstream"].endswith("/v1")
    models = httpx.get(f"{gateway}/v1/models", headers={"Authorization": f"Bearer {KEY}"})
    assert models.json()["data"][0]["id"] == "rank1-demo"


def test_langchain_cohere_rerank_through_the_gateway(gateway: str) -> None:
    from langchain_cohere import CohereRerank
    from langchain_core.documents import Document

    reranker = CohereRerank(model="rank1-demo", base_url=gateway, cohere_api_key=KEY, top_n=2)
    docs = reranker.compress_documents(
        [Document(page_content=t, metadata={"i": i}) for i, t in enumerate(TEXTS)], QUERY)
    assert [d.metadata["i"] for d in docs] == ORDER[:2]


def test_gateway_serves_no_engine_routes_and_no_token_cut(gateway: str) -> None:
    auth = {"Authorization": f"Bearer {KEY}"}
    r = httpx.post(f"{gateway}/v1/completions", json={"prompt": "x"}, headers=auth)
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_served"
    with pytest.raises(cohere.BadRequestError) as bad:
        cohere.ClientV2(api_key=KEY, base_url=gateway).rerank(
            model="m", query=QUERY, documents=TEXTS, max_tokens_per_doc=8,
            request_options=NO_RETRY)
    assert bad.value.body["param"] == "max_tokens_per_doc"


def test_upstream_gone_is_a_502_naming_it_and_back_recovers(demo_model: Path) -> None:
    from ..real.servers import llama_server, llama_server_binary

    with ExitStack() as upstream_alive:
        up = upstream_alive.enter_context(
            llama_server(llama_server_binary(), demo_model, parallel=1, alias="rank1-demo"))
        with running_server(demo_model, upstream=up, upstream_model="rank1-demo",
                            max_reasoning_tokens=64) as url:
            root = url.removesuffix("/v1")
            body = {"query": QUERY, "documents": TEXTS[:2]}
            assert httpx.post(f"{root}/v2/rerank", json=body, timeout=60).status_code == 200
            upstream_alive.close()  # the upstream process is stopped
            start = time.monotonic()
            r = httpx.post(f"{root}/v2/rerank", json=body, timeout=120)
            took = time.monotonic() - start
            assert r.status_code == 502, r.text
            assert up in r.json()["message"] and r.json()["code"] == "upstream_error"
            assert took < 60, f"the 502 took {took:.1f} s"
            health = httpx.get(f"{root}/health")
            assert health.status_code == 503 and "unreachable" in health.json()["message"]
            # the upstream comes back at the same address: the gateway recovers, no restart
            port = int(up.rsplit(":", 1)[1].split("/")[0])
            with llama_server(llama_server_binary(), demo_model, parallel=1,
                              alias="rank1-demo", port=port) as back:
                assert back == up
                assert httpx.get(f"{root}/health").status_code == 200
                again = httpx.post(f"{root}/v2/rerank", json=body, timeout=60)
                assert again.status_code == 200
                assert [r["index"] for r in again.json()["results"]] == [1, 0]


def test_a_full_gateway_queue_is_a_429_with_retry_after_and_loses_nothing(
    demo_model: Path, upstream: str,
) -> None:
    """One document in flight toward the upstream, two more may wait: a burst of two-document
    requests is partly refused (429 + Retry-After, in Cohere's and Jina's shapes, the cohere
    SDK's TooManyRequestsError), every admitted one is answered whole and right."""
    n = 12
    with running_server(demo_model, upstream=upstream, upstream_model="rank1-demo",
                        max_reasoning_tokens=64, parallel=1, max_queue=2) as url:
        root = url.removesuffix("/v1")
        barrier = threading.Barrier(n)

        def one(i: int) -> httpx.Response:
            path = "/v2/rerank" if i % 2 else "/v1/rerank"
            body = {"model": "rank1-demo", "query": QUERY, "documents": TEXTS[:2]}
            barrier.wait()
            return httpx.post(f"{root}{path}", json=body, timeout=120)

        with ThreadPoolExecutor(n) as pool:
            answers = list(pool.map(one, range(n)))
        codes = [r.status_code for r in answers]
        assert set(codes) <= {200, 429} and codes.count(200) >= 1 and codes.count(429) >= 1, codes
        for i, r in enumerate(answers):
            if r.status_code == 429:
                assert r.headers["Retry-After"] == "1"
                err = r.json()  # Cohere's shape on /v2/rerank, Cohere's + OpenAI's on /v1
                assert err["code"] == "queue_full" and "busy" in err["message"], r.text
                if not i % 2:
                    assert err["error"]["type"] == "rate_limit_error", r.text
                continue
            results = r.json()["results"]
            assert [x["index"] for x in results] == [1, 0], r.text
            for x in results:
                assert x["relevance_score"] == pytest.approx(EXPECTED[x["index"]], abs=2e-3)
        # the cohere SDK names it; the queue is free again once the burst is answered
        co = cohere.ClientV2(api_key="x", base_url=root)
        with ThreadPoolExecutor(6) as pool:
            futures = [pool.submit(co.rerank, model="rank1-demo", query=QUERY,
                                   documents=TEXTS[:2], request_options=NO_RETRY)
                       for _ in range(6)]
            outcomes = [f.exception() or f.result() for f in futures]
        assert any(isinstance(o, cohere.TooManyRequestsError) for o in outcomes), outcomes
        for o in outcomes:
            if isinstance(o, cohere.TooManyRequestsError):
                assert o.headers is not None and o.headers.get("retry-after") == "1"
            else:
                assert not isinstance(o, BaseException), o
        again = httpx.post(f"{root}/v2/rerank", json={"query": QUERY, "documents": TEXTS[:2]},
                           timeout=120)
        assert again.status_code == 200
        assert [x["index"] for x in again.json()["results"]] == [1, 0]


class _Garbage(http.server.BaseHTTPRequestHandler):
    """An upstream that answers every request 200 with an HTML page (``GET /models`` with
    a model list while ``models_ok``, so that the gateway starts)."""

    models_ok = True

    def _junk(self) -> None:
        body = b"<html>this is not an OpenAI server</html>"
        ctype = "text/html"
        if self.command == "GET" and self.path.endswith("/models") and self.models_ok:
            body, ctype = b'{"object": "list", "data": []}', "application/json"
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _junk

    def log_message(self, *args: object) -> None:
        pass


def test_upstream_answering_garbage_is_a_502_naming_it(demo_model: Path) -> None:
    junk = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Garbage)
    threading.Thread(target=junk.serve_forever, daemon=True).start()
    upstream = f"http://127.0.0.1:{junk.server_address[1]}/v1"
    try:
        with running_server(demo_model, upstream=upstream, upstream_model="rank1-demo",
                            max_reasoning_tokens=64) as url:
            co = cohere.ClientV2(api_key="x", base_url=url.removesuffix("/v1"), timeout=120)
            with pytest.raises(cohere.core.ApiError) as info:
                co.rerank(model="m", query=QUERY, documents=TEXTS[:1], request_options=NO_RETRY)
            assert info.value.status_code == 502
            assert upstream in info.value.body["message"], info.value.body
            assert info.value.body["code"] == "upstream_error"
            _Garbage.models_ok = False  # now /models is HTML too: /health says so
            health = httpx.get(url.removesuffix("/v1") + "/health")
            assert health.status_code == 503, health.text
            assert "no model list" in health.json()["message"]
    finally:
        _Garbage.models_ok = True
        junk.shutdown()


def test_upstream_killed_mid_request_is_a_502_naming_it(smollm2_path: Path,
                                                        demo_model: Path) -> None:
    """SmolLM2 with ``--ignore-eos`` is a slow upstream (each chain spends its budget): the
    upstream is stopped while a request's documents are generating there; that request is
    answered 502 naming the upstream, promptly; meanwhile the queue bound held (429)."""
    from ..real.servers import llama_server, llama_server_binary

    with ExitStack() as upstream_alive:
        up = upstream_alive.enter_context(llama_server(
            llama_server_binary(), smollm2_path, parallel=1, alias="rank1-test",
            extra=["--ignore-eos"]))
        with running_server(demo_model, upstream=up, upstream_model="rank1-test",
                            max_reasoning_tokens=1500, parallel=1, max_queue=2) as url:
            root = url.removesuffix("/v1")
            outcome: dict[str, object] = {}

            def long_call() -> None:
                started = time.monotonic()
                outcome["response"] = httpx.post(
                    f"{root}/v2/rerank", json={"query": QUERY, "documents": TEXTS[:2]},
                    timeout=120)
                outcome["seconds"] = time.monotonic() - started

            call = threading.Thread(target=long_call)
            call.start()
            time.sleep(1.5)  # the first document is generating upstream, the second waits
            busy = httpx.post(f"{root}/v2/rerank",
                              json={"query": QUERY, "documents": TEXTS[:2]}, timeout=60)
            assert busy.status_code == 429 and busy.headers["Retry-After"] == "1", busy.text
            assert call.is_alive(), "the slow upstream answered before it was stopped"
            upstream_alive.close()  # the upstream process is stopped mid-request
            call.join(timeout=90)
            assert not call.is_alive(), "the gateway hung on a dead upstream"
            r = outcome["response"]
            assert isinstance(r, httpx.Response) and r.status_code == 502, r
            assert up in r.json()["message"] and r.json()["code"] == "upstream_error"
            assert float(outcome["seconds"]) < 60  # type: ignore[arg-type]


async def test_rank1_client_rerank_mode_through_the_gateway(
    gateway: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The gateway serves no stream (400, ``param: stream``): ``Rank1Client(mode="rerank")``
    asks it for whole answers from then on, with one warning, and judges as before."""
    client = Rank1Client(f"{gateway}/v1", api_key=KEY, model="rank1-demo", mode="rerank",
                         max_reasoning_tokens=64, cache=None, **NO_RETRY)
    async with client:
        got = [j async for j in client.arerank_iter(QUERY, TEXTS)]
        assert client.transport.streams is False  # type: ignore[attr-defined]
        ranked = await client.arerank(QUERY, TEXTS)
    assert caplog.text.count('refuses "stream"') == 1
    assert sorted(j.index for j in got) == list(range(len(TEXTS)))
    assert all(j.error is None and j.score is not None for j in got + ranked)
    assert [j.index for j in ranked] == list(ORDER)
    assert [j.score for j in sorted(got, key=lambda j: j.index)] == pytest.approx(
        EXPECTED, abs=2e-3)


# ------------------------------------------------------------- per-request options


def test_a_document_the_upstream_fails_on_is_a_502_or_dropped_and_named(gateway: str) -> None:
    """One document longer than the upstream's context: by default the request fails
    with 502 naming the upstream and that document; with ``on_error: "drop"`` the others
    are answered (right scores, right order) and the failed one is listed in ``dropped``,
    never given a score: on all three routes, and through the cohere SDK's
    ``additional_body_parameters``."""
    auth = {"Authorization": f"Bearer {KEY}"}
    dropped_before = metric(gateway, "rank1_dropped_documents_total")
    docs = [TEXTS[0], TOO_LONG, TEXTS[1]]
    body = {"model": "rank1-demo", "query": QUERY, "documents": docs}
    r = httpx.post(f"{gateway}/v2/rerank", json=body, headers=auth, timeout=60)
    assert r.status_code == 502, r.text
    assert r.json()["code"] == "upstream_error" and "passage 1" in r.json()["message"], r.text
    for path in ("/v2/rerank", "/v1/rerank", "/rerank"):
        r = httpx.post(f"{gateway}{path}", json={**body, "on_error": "drop"}, headers=auth,
                       timeout=60)
        assert r.status_code == 200, (path, r.text)
        out = r.json()
        assert [x["index"] for x in out["results"]] == [2, 0], (path, out)
        for x in out["results"]:
            want = EXPECTED[TEXTS.index(docs[x["index"]])]
            assert x["relevance_score"] == pytest.approx(want, abs=2e-3)
        (dropped,) = out["dropped"]
        assert dropped["index"] == 1 and "context" in dropped["error"], (path, dropped)
    co = cohere.ClientV2(api_key=KEY, base_url=gateway)
    out = co.rerank(model="rank1-demo", query=QUERY, documents=docs, request_options={
        **NO_RETRY, "additional_body_parameters": {"on_error": "drop"}})
    assert [x.index for x in out.results] == [2, 0]
    assert [d["index"] for d in out.dropped] == [1]  # type: ignore[attr-defined]
    # nothing failed: no "dropped" key at all
    r = httpx.post(f"{gateway}/v2/rerank", json={**body, "documents": TEXTS[:2],
                                                 "on_error": "drop"}, headers=auth, timeout=60)
    assert r.status_code == 200 and "dropped" not in r.json(), r.text
    # one dropped document per route and one through the SDK, counted in /metrics
    assert metric(gateway, "rank1_dropped_documents_total") == dropped_before + 4


def test_a_deadline_that_passes_is_a_504_and_cancels_the_upstream_work(
    demo_model: Path, slow_upstream: str,
) -> None:
    """Two documents whose chains take tens of seconds upstream, a 2-second deadline: the
    request is answered 504 ``deadline_exceeded`` soon after 2 s, in the route's error
    shape (the cohere SDK's GatewayTimeoutError on /v2/rerank), and the upstream's slots
    stop generating for it (no score stands in for the missing verdicts)."""
    body = {"query": QUERY, "documents": TEXTS[:2], "max_reasoning_tokens": 1500,
            "deadline": 2}
    with running_server(demo_model, upstream=slow_upstream, upstream_model="rank1-test") as url:
        root = url.removesuffix("/v1")
        start = time.monotonic()
        r = httpx.post(f"{root}/v1/rerank", json=body, timeout=30)
        took = time.monotonic() - start
        assert r.status_code == 504, r.text
        err = r.json()  # Cohere's message beside OpenAI's error object on /v1/rerank
        assert err["code"] == "deadline_exceeded" and "deadline of 2" in err["message"], err
        assert err["error"]["type"] == "timeout_error" and err["error"]["param"] == "deadline"
        assert 2 <= took < 2 + 8, f"the 504 took {took:.1f} s"
        assert _wait_idle(slow_upstream, 5) == 0, "the upstream still generates after a 504"
        co = cohere.ClientV2(api_key="x", base_url=root, timeout=30)
        start = time.monotonic()
        with pytest.raises(cohere.GatewayTimeoutError) as info:
            co.rerank(model="m", query=QUERY, documents=TEXTS[:2], request_options={
                **NO_RETRY, "additional_body_parameters": {
                    "deadline": 2, "max_reasoning_tokens": 1500}})
        assert time.monotonic() - start < 2 + 8
        assert info.value.body["code"] == "deadline_exceeded", info.value.body
        assert _wait_idle(slow_upstream, 5) == 0


def test_a_client_that_hangs_up_cancels_the_upstream_requests(
    demo_model: Path, slow_upstream: str,
) -> None:
    """The client gives up after 3 s and closes its connection while both documents are
    generating upstream: within 5 s no upstream slot generates any more."""
    with running_server(demo_model, upstream=slow_upstream, upstream_model="rank1-test") as url:
        gave_up: list[BaseException] = []

        def call() -> None:
            try:
                httpx.post(f"{url.removesuffix('/v1')}/rerank", timeout=3, json={
                    "query": QUERY, "documents": TEXTS[:2], "max_reasoning_tokens": 1500})
            except httpx.ReadTimeout as exc:
                gave_up.append(exc)

        caller = threading.Thread(target=call)
        caller.start()
        end = time.monotonic() + 3
        while not _generating(slow_upstream) and time.monotonic() < end:
            time.sleep(0.02)
        assert _generating(slow_upstream) > 0, "the upstream never started generating"
        caller.join()
        assert gave_up, "the request was answered before the client hung up"
        busy = _wait_idle(slow_upstream, 5)
        assert busy == 0, "the upstream still generates for a client that left"
