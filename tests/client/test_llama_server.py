"""llama.cpp's ``llama-server`` as seen on the wire (see rank1_payloads' llama_server_*).

* After a streamed response it closes the connection while announcing keep-alive; the
  SDK's aiohttp stack then reuses the dead connection and the next request fails to write
  its body. Streamed requests ask for ``Connection: close``.
* Streamed chunks carry ``""`` as the token text of every token held back for a partial
  stop-string match, the answer token included: its text is in its own top_logprobs.
* Without ``--special`` it renders ``</think>`` as "", so the stop strings match only
  because the client asks for ``preserved_tokens``.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
import respx

from rank1_integrations import Rank1Client
from rank1_integrations.protocol import VerdictSource

from .rank1_payloads import (
    BASE_URL,
    LoopbackServer,
    body_of,
    http_client,
    llama_server_completion,
    llama_server_forced_sse,
    llama_server_sse,
    sigmoid_of,
    sse_response,
)

URL = f"{BASE_URL}/completions"


def make_client(**kwargs: Any) -> Rank1Client:
    kwargs.setdefault("cache", None)
    kwargs.setdefault("retry_backoff", 0.01)
    kwargs.setdefault("client", http_client())
    return Rank1Client(BASE_URL, model="rank1", **kwargs)


def llama_server(request: httpx.Request) -> httpx.Response:
    if body_of(request).get("stream"):
        return sse_response(llama_server_sse())
    return httpx.Response(200, json=llama_server_completion())


@pytest.mark.parametrize("special", [False, True])
@respx.mock
async def test_held_back_answer_token_is_read_from_its_top_logprobs(
    respx_mock: respx.MockRouter, special: bool
) -> None:
    respx_mock.post(URL).mock(side_effect=lambda request: sse_response(
        llama_server_sse(special=special)))
    client = make_client(max_retries=0)
    client.transport.stream = True  # type: ignore[attr-defined]
    judgment = await client.ajudge("q", "p")
    # read at the answer position, not through a forced answer
    assert judgment.source is VerdictSource.ANSWER_LOGPROBS
    assert judgment.score == pytest.approx(sigmoid_of(-0.2, -1.9))
    assert judgment.reasoning == "The passage covers tides."
    assert judgment.reasoning_tokens == 8  # the usage of the last chunk


@respx.mock
async def test_end_of_text_after_an_unmatched_stop_string_goes_to_the_forced_answer(
    respx_mock: respx.MockRouter,
) -> None:
    """finish_reason is "stop" for EOS too: the EOS position (whose top-k lists both
    answers) is not the answer position; the forced answer gives the verdict."""
    bodies: list[dict] = []

    def answer(request: httpx.Request) -> httpx.Response:
        bodies.append(body_of(request))
        if bodies[-1]["max_tokens"] == 1:
            return sse_response(llama_server_forced_sse([(830, " true", -0.4),
                                                         (895, " false", -1.3)]))
        return sse_response(llama_server_sse(eos=True))

    respx_mock.post(URL).mock(side_effect=answer)
    client = make_client(max_retries=0)
    client.transport.stream = True  # type: ignore[attr-defined]
    judgment = await client.ajudge("q", "p")
    assert [b["max_tokens"] for b in bodies] == [2048, 1]
    assert judgment.source is VerdictSource.FORCED_ANSWER
    assert judgment.score == pytest.approx(sigmoid_of(-0.4, -1.3))
    assert judgment.reasoning_tokens == 9


@respx.mock
async def test_streamed_requests_ask_to_close_the_connection(
    respx_mock: respx.MockRouter,
) -> None:
    route = respx_mock.post(URL).mock(side_effect=llama_server)
    await make_client().ajudge("q", "p")
    plain, streamed = (c.request for c in route.calls)
    assert streamed.headers["connection"] == "close"
    assert plain.headers.get("connection") != "close"  # keep-alive where it works
    assert body_of(plain)["preserved_tokens"] == ["</think>"]


class LlamaServerLike(LoopbackServer):
    """A loopback server that behaves like llama-server's HTTP layer: a streamed response
    is chunked, announces keep-alive, and the connection is closed after it (unless the
    request asked for ``Connection: close``: then the response says so)."""

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[dict[str, Any]] = []

    def answer(self, handler: Any) -> None:
        body = json.loads(handler.rfile.read(int(handler.headers["Content-Length"])))
        self.requests.append(body)
        asked_close = handler.headers.get("Connection", "").lower() == "close"
        handler.send_response(200)
        if asked_close:
            handler.send_header("Connection", "close")
        else:
            handler.send_header("Keep-Alive", "timeout=5, max=100")
        if not body.get("stream"):
            data = json.dumps(llama_server_completion()).encode()
            handler.send_header("Content-Type", "application/json; charset=utf-8")
            handler.send_header("Content-Length", str(len(data)))
            handler.end_headers()
            handler.wfile.write(data)
            return
        handler.send_header("Content-Type", "text/event-stream")
        handler.send_header("Transfer-Encoding", "chunked")
        handler.end_headers()
        for event in llama_server_sse().split(b"\n\n")[:-1]:
            event += b"\n\n"
            handler.wfile.write(b"%x\r\n%s\r\n" % (len(event), event))
        handler.wfile.write(b"0\r\n\r\n")
        handler.wfile.flush()
        handler.close_connection = True  # what llama-server does, unannounced


@pytest.mark.parametrize("concurrency", [1, 4])
async def test_many_judgments_over_the_default_stack(concurrency: int) -> None:
    """No retries allowed: every request must succeed on the connection it gets."""
    with LlamaServerLike() as server:
        client = Rank1Client(server.base_url, model="rank1", cache=None, max_retries=0,
                             concurrency=concurrency)
        try:
            judgments = await client.arerank("q", [f"passage {i}" for i in range(24)])
        finally:
            await client.aclose()
    assert all(j.source is VerdictSource.ANSWER_LOGPROBS for j in judgments)
    # one non-streamed probe per request in flight at first, then streaming
    assert len(server.requests) == 24 + concurrency
