"""A loopback stand-in for a rank1 server, for tests and benchmarks.

It answers ``POST /v1/completions`` the way vLLM answers rank1 (reasoning text, the
stop-string tokens kept in the logprobs, ``finish_reason``/``stop_reason``) and
``POST /v1/chat/completions`` the way vLLM's reasoning parser does. Its verdict is not a
model's: P(true) follows the share of query words found in the passage
(:func:`overlap_score`), which makes results predictable in tests. It is no relevance model.

Options: a fixed ``delay`` per request (or ``delay_for(passage)``, a delay per passage)
and a ``concurrency`` cap (requests beyond it wait), to measure a client against a server
of known speed. ``requests`` counts what it served; ``log`` records each completion
request (its passage, when it started and ended, and whether the client went away while
it was being worked on: a delay is spent watching the connection, and a client that
closes it frees the slot at once, as rank1-server does); ``disconnects`` counts those.

Usage::

    with FakeRank1Server(delay=0.05, concurrency=8) as server:
        client = Rank1Client(base_url=server.base_url)
        ...

or from a shell: ``python -m rank1_integrations.testing.fake_server --port 8000``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import re
import select
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from .._spawn import free_port, spawn_server
from ..protocol import (
    ANSWER_FALSE,
    ANSWER_TRUE,
    STOP_STRINGS,
    THINK_END,
    THINK_START,
    is_relevant,
    parse_forced_answer_prompt,
    parse_prompt,
)

__all__ = [
    "FakeRank1Server", "RequestRecord", "fake_server_process", "free_port", "overlap_score",
    "prompt_token_count",
]

_WORD = re.compile(r"[a-z0-9]+")


def overlap_score(query: str, passage: str) -> float:
    """The fake's P(true): a logistic curve over the share of query words in the passage
    (0 shared -> ~0.05, all shared -> ~0.95)."""
    words = set(_WORD.findall(query.lower()))
    found = words & set(_WORD.findall(passage.lower()))
    share = len(found) / len(words) if words else 0.0
    return 1.0 / (1.0 + math.exp(-6.0 * (share - 0.5)))


@dataclass
class RequestRecord:
    """One completion (or chat) request the fake worked on."""

    #: The passage of its rank1 prompt (``None`` when it is no rank1 prompt).
    passage: str | None
    #: ``time.monotonic()`` when its work began (after waiting for a slot) and ended.
    started: float
    ended: float | None = None
    #: True when the client closed the connection before the answer was sent.
    disconnected: bool = False


def _passage_in(body: dict[str, Any]) -> str | None:
    prompt = body.get("prompt")
    if prompt is None:
        messages = body.get("messages") or []
        prompt = messages[-1].get("content", "") + "\n" + THINK_START if messages else None
    if not isinstance(prompt, str):
        return None
    forced = parse_forced_answer_prompt(prompt)
    parsed = parse_prompt(forced[0] if forced is not None else prompt)
    return parsed[1] if parsed is not None else None


def _answer_top(p_true: float) -> dict[str, float]:
    lt, lf = math.log(p_true), math.log1p(-p_true)
    return {ANSWER_TRUE: lt, ANSWER_FALSE: lf, "\n": min(lt, lf) - 3.0}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass  # quiet

    def _send(self, status: int, payload: dict[str, Any]) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802
        if self.path.rstrip("/") in ("/health", "/v1/health"):
            self._send(200, {"status": "ok"})
        elif self.path.rstrip("/") == "/v1/models":
            self._send(200, {"object": "list", "data": [{"id": "fake-rank1", "object": "model"}]})
        else:
            self._send(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})

    def do_POST(self) -> None:  # noqa: N802
        length = int(self.headers.get("Content-Length") or 0)
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
        except json.JSONDecodeError as exc:
            self._send(400, {"error": {"message": f"bad JSON: {exc}", "type": "invalid_request"}})
            return
        route = self.path.rstrip("/")
        if route == "/v1/completions":
            handler = self.server.completion
        elif route == "/v1/chat/completions":
            handler = self.server.chat
        else:
            self._send(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})
            return
        with self.server.slots:
            record = RequestRecord(_passage_in(body), time.monotonic())
            with self.server.count_lock:
                self.server.requests += 1
                self.server.log.append(record)
            delay = self.server.delay
            if self.server.delay_for is not None and record.passage is not None:
                delay = self.server.delay_for(record.passage)
            gone = delay > 0 and self._client_left_within(delay)
            if not gone:
                status, payload = handler(body)
            record.ended = time.monotonic()
            if gone:
                record.disconnected = True
                with self.server.count_lock:
                    self.server.disconnects += 1
                self.close_connection = True
                return  # the slot is freed at once
        self._send(status, payload)

    def _client_left_within(self, seconds: float) -> bool:
        """Spend ``seconds`` watching the connection; True as soon as the client closes it."""
        end = time.monotonic() + seconds
        sock = self.connection
        while (left := end - time.monotonic()) > 0:
            readable, _, _ = select.select([sock], [], [], left)
            if not readable:
                return False
            try:
                data = sock.recv(1, socket.MSG_PEEK)
            except OSError:
                return True
            if not data:
                return True
            time.sleep(left)  # bytes of a next request: nothing to watch for
            return False
        return False


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 512

    def __init__(
        self, address: tuple[str, int], delay: float, concurrency: int | None,
        delay_for: Callable[[str], float] | None = None,
    ) -> None:
        super().__init__(address, _Handler)
        self.delay = delay
        self.delay_for = delay_for
        self.slots = threading.BoundedSemaphore(concurrency or 10_000)
        self.count_lock = threading.Lock()
        self.requests = 0
        self.disconnects = 0
        self.log: list[RequestRecord] = []

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Quiet about clients that went away (cancelled requests); loud about the rest."""
        if isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            return
        super().handle_error(request, client_address)

    def completion(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        prompt = body.get("prompt")
        if not isinstance(prompt, str):
            return 400, {"error": {"message": "prompt must be a string", "type": "invalid"}}
        max_tokens = int(body.get("max_tokens") or 16)
        forced = parse_forced_answer_prompt(prompt)
        parsed = parse_prompt(forced[0] if forced is not None else prompt)
        if parsed is None:
            return 400, {"error": {"message": "not a rank1 prompt", "type": "invalid"}}
        query, passage = parsed
        p_true = overlap_score(query, passage)
        relevant = is_relevant(p_true)
        if forced is not None:  # the forced answer: one token
            answer = ANSWER_TRUE if relevant else ANSWER_FALSE
            return 200, _completion(
                answer, [answer], [_answer_top(p_true)], "length", None, prompt=prompt
            )
        words = _WORD.findall(query.lower())
        reasoning = (
            f"The query asks about {' '.join(words[:6]) or 'nothing'}. "
            f"I compare its words with the passage. "
            f"The passage {'covers' if relevant else 'does not cover'} them."
        )
        tokens = [w if i == 0 else " " + w for i, w in enumerate(reasoning.split(" "))]
        tops: list[dict[str, float]] = [{t: -0.01} for t in tokens]
        if len(tokens) + 2 > max_tokens:  # out of budget: cut, no answer
            cut = tokens[:max_tokens]
            return 200, _completion(
                "".join(cut), cut, tops[: len(cut)], "length", None, prompt=prompt
            )
        answer = ANSWER_TRUE if relevant else ANSWER_FALSE
        stop = THINK_END + answer
        tokens += ["\n", THINK_END, answer]
        tops += [{"\n": -0.01}, {THINK_END: -0.01}, _answer_top(p_true)]
        return 200, _completion(reasoning + "\n", tokens, tops, "stop", stop, prompt=prompt)

    def chat(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        messages = body.get("messages") or []
        content = messages[-1].get("content", "") if messages else ""
        status, completion = self.completion({**body, "prompt": content + "\n" + THINK_START})
        if status != 200:
            return status, completion
        choice = completion["choices"][0]
        if choice["finish_reason"] != "stop":
            return 200, {"choices": [{"index": 0, "finish_reason": "length", "message": {
                "role": "assistant", "content": "", "reasoning": choice["text"]}}]}
        answer = choice["stop_reason"][len(THINK_END):]
        top = choice["logprobs"]["top_logprobs"][-1]
        logprobs = None
        if body.get("logprobs"):
            logprobs = {"content": [{
                "token": answer, "logprob": top[answer], "bytes": None,
                "top_logprobs": [{"token": k, "logprob": v, "bytes": None} for k, v in top.items()],
            }]}
        message = {"role": "assistant", "content": answer.strip(), "reasoning": choice["text"]}
        return 200, {
            "id": "chatcmpl-fake", "object": "chat.completion", "model": body.get("model"),
            "choices": [{"index": 0, "message": message, "logprobs": logprobs,
                         "finish_reason": "stop"}],
            "usage": completion["usage"],
        }


def prompt_token_count(prompt: str) -> int:
    """The fake's ``usage.prompt_tokens``: one token per whitespace-separated word."""
    return len(prompt.split())


def _completion(
    text: str, tokens: list[str], tops: list[dict[str, float]], finish: str, stop: str | None,
    *, prompt: str,
) -> dict[str, Any]:
    assert stop is None or stop in STOP_STRINGS
    prompt_tokens = prompt_token_count(prompt)
    return {
        "id": "cmpl-fake", "object": "text_completion", "model": "fake-rank1",
        "choices": [{
            "index": 0, "text": text, "finish_reason": finish, "stop_reason": stop,
            "logprobs": {
                "tokens": tokens,
                "token_logprobs": [top.get(t, -0.01) for t, top in zip(tokens, tops, strict=True)],
                "top_logprobs": tops,
                "text_offset": [0] * len(tokens),
            },
        }],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": len(tokens),
                  "total_tokens": prompt_tokens + len(tokens)},
    }


class FakeRank1Server:
    """The fake served from a background thread on 127.0.0.1 (``port=0``: a free port)."""

    def __init__(
        self, *, delay: float = 0.0, concurrency: int | None = None,
        host: str = "127.0.0.1", port: int = 0,
        delay_for: Callable[[str], float] | None = None,
    ) -> None:
        self._server = _Server((host, port), delay, concurrency, delay_for)
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/v1"

    @property
    def requests(self) -> int:
        """Requests served so far (completions and chat)."""
        return self._server.requests

    @property
    def disconnects(self) -> int:
        """Requests whose client closed the connection before the answer (cancelled)."""
        return self._server.disconnects

    @property
    def log(self) -> list[RequestRecord]:
        """Every completion/chat request worked on so far, in the order they began."""
        with self._server.count_lock:
            return list(self._server.log)

    def start(self) -> FakeRank1Server:
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FakeRank1Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def fake_server_process(
    *, delay: float = 0.0, concurrency: int | None = None, startup_timeout: float = 30.0
) -> Iterator[str]:
    """The fake in a subprocess (so its CPU is not the caller's, as benchmarks need);
    yields its ``/v1`` base URL and stops it on exit."""
    port = free_port()
    # ``-c`` rather than ``-m``: runpy warns when the package already imported the module
    entry = f"from {__name__} import main; main()"
    command = [sys.executable, "-c", entry, "--port", str(port), "--delay", str(delay)]
    if concurrency is not None:
        command += ["--concurrency", str(concurrency)]
    with spawn_server(command, port, name="the fake rank1 server",
                      startup_timeout=startup_timeout, poll_interval=0.05) as root:
        yield root + "/v1"


def main(argv: list[str] | None = None) -> None:  # pragma: no cover - manual use
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("--concurrency", type=int, default=None)
    args = parser.parse_args(argv)
    server = FakeRank1Server(delay=args.delay, concurrency=args.concurrency, port=args.port)
    print(f"fake rank1 server on {server.base_url}", flush=True)
    server._server.serve_forever()


if __name__ == "__main__":  # pragma: no cover
    main()
