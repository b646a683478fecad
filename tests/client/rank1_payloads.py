"""Realistic server responses for the client tests, in each server's own shape.

* vLLM ``/v1/completions`` (built on the recorded vLLM 0.32.0 responses in ``recorded/``,
  with the tokens and logprobs a test needs): text without the stop string, the
  stop-string tokens kept in ``tokens``/``top_logprobs``, ``stop_reason`` = the matched stop
  string, -9999.0 for -inf.
* llama-cpp-python: the same legacy shape, keys collapsed by string, no ``stop_reason``.
* llama.cpp ``llama-server`` (shapes as captured from the real binary, llama-cpp-python
  0.3.36's vendored llama.cpp): chat-style ``logprobs.content`` with ids; non-streaming
  drops the stop-string tokens' entries (and more), streaming (SSE) keeps them with empty
  ``token`` text and no bytes (held back for the stop-string match).
* vLLM chat completions with a reasoning parser (built on the recorded one).
"""

from __future__ import annotations

import copy
import json
import math
import time
from pathlib import Path
from typing import Any

import httpx

BASE_URL = "http://rank1.test/v1"
RECORDED = Path(__file__).parent / "recorded"

#: Qwen2.5 ids of ' true' / ' false', and the (inferred) id of '</think>' in rank1.
TRUE_ID, FALSE_ID, THINK_END_ID = 830, 895, 151666
#: Qwen2.5's <|endoftext|>.
EOS_ID = 151643

HEAD = (
    "Determine if the following passage is relevant to the query. "
    "Answer only with 'true' or 'false'.\n"
)


def prompt_for(query: str, passage: str) -> str:
    """The expected prompt, written out (not built with the code under test)."""
    return f"{HEAD}Query: {query}\nPassage: {passage}\n<think>"


def sigmoid_of(lt: float, lf: float) -> float:
    return math.exp(lt) / (math.exp(lt) + math.exp(lf))


REASONING = ["The", " query", " asks", " about", " tides", ".", " The", " passage", " is",
             " true", " to", " it", "."]


def recorded_vllm(name: str, path: str, number: int = 0) -> dict[str, Any]:
    """A fresh copy of the ``number``-th response body to ``path`` in the vLLM recording
    ``recorded/<name>`` (vLLM 0.32.0, re-recorded by ``scripts/record_fixtures.sh vllm
    vllm-reasoning``): the envelope every vLLM builder below fills in."""
    bodies = [
        exchange["response"]["body"]
        for exchange in json.loads((RECORDED / name).read_text())["exchanges"]
        if exchange["request"]["path"] == path
    ]
    body = bodies[number]
    return copy.deepcopy(json.loads(body) if isinstance(body, str) else body)


def vllm_completion(
    *,
    reasoning: list[str] | None = None,
    answer: str | None = " true",
    answer_top: dict[str, float] | None = None,
    finish: str = "stop",
    stop_reason: str | None = "default",
    last_top: dict[str, float] | None = None,
) -> dict[str, Any]:
    """A vLLM completion: the recorded one (``vllm-demo-completions.json``) with these
    tokens. With ``answer`` the output stopped on ``</think>{answer}``; the tokens of the
    stop string stay in ``tokens``/``top_logprobs`` though not in ``text``, and
    ``stop_reason`` is the matched stop string, as recorded."""
    reasoning = list(REASONING if reasoning is None else reasoning)
    tokens = list(reasoning)
    tops: list[dict[str, float]] = [{t: -0.05, " the": -3.1, ",": -4.0} for t in reasoning]
    text = "".join(reasoning)
    if answer is not None:
        top = answer_top or {" true": -0.1, " false": -2.4, " True": -6.0, "\n": -7.5}
        tokens += ["\n", "</think>", answer]
        tops += [{"\n": -0.01, " ": -5.0}, {"</think>": -0.02, " The": -4.4}, top]
        text += "\n"
        if stop_reason == "default":
            stop_reason = "</think>" + answer
    elif stop_reason == "default":
        stop_reason = None
    if last_top is not None:
        tops[-1] = last_top
    body = recorded_vllm("vllm-demo-completions.json", "/v1/completions")
    body["choices"][0].update({
        "text": text, "finish_reason": finish, "stop_reason": stop_reason,
        "logprobs": {
            "text_offset": list(range(len(tokens))),
            "token_logprobs": [top.get(t, -0.05) for t, top in zip(tokens, tops, strict=True)],
            "tokens": tokens,
            "top_logprobs": tops,
        },
    })
    body["usage"].update(prompt_tokens=61, total_tokens=61 + len(tokens),
                         completion_tokens=len(tokens))
    return body


def vllm_forced(top: dict[str, float], token: str = " true") -> dict[str, Any]:
    """vLLM's answer to the one-token forced request (the recorded one in
    ``vllm-demo-completions-cut.json``, with this token and these logprobs)."""
    body = recorded_vllm("vllm-demo-completions-cut.json", "/v1/completions", 1)
    body["choices"][0].update({
        "text": token, "finish_reason": "length", "stop_reason": None,
        "logprobs": {"text_offset": [0], "token_logprobs": [top.get(token, -0.1)],
                     "tokens": [token], "top_logprobs": [top]},
    })
    body["usage"].update(prompt_tokens=90, total_tokens=91, completion_tokens=1)
    return body


def llama_cpp_python_completion(answer_top: dict[str, float]) -> dict[str, Any]:
    """llama-cpp-python's ``create_completion``: legacy shape, no ``stop_reason``, the
    stop-string tokens kept, one key per distinct string."""
    tokens = ["The", " passage", " covers", " it", ".", "\n", "</think>", " true"]
    tops = [{t: -0.1, " a": -3.0} for t in tokens[:-1]] + [answer_top]
    return {
        "id": "cmpl-7e1d", "object": "text_completion", "created": 1764290002,
        "model": "rank1.gguf",
        "choices": [{
            "text": "The passage covers it.\n", "index": 0, "finish_reason": "stop",
            "logprobs": {
                "tokens": tokens, "text_offset": list(range(len(tokens))),
                "token_logprobs": [top.get(t, -0.1) for t, top in zip(tokens, tops, strict=True)],
                "top_logprobs": tops,
            },
        }],
        "usage": {"prompt_tokens": 40, "completion_tokens": 8, "total_tokens": 48},
    }


def _ls_entry(token_id: int, token: str, logprob: float,
              top: list[tuple[int, str, float]], *, held_back: bool = False) -> dict[str, Any]:
    """One entry of llama-server's ``logprobs.content``. A token the server held back for a
    partial stop-string match (streaming) has ``""`` as its token and no bytes: its text is
    only in its own ``top_logprobs`` entry (same id)."""
    return {
        "id": token_id, "token": "" if held_back else token,
        "bytes": [] if held_back else list(token.encode()), "logprob": logprob,
        "top_logprobs": [
            {"id": i, "token": t, "bytes": list(t.encode()), "logprob": lp} for i, t, lp in top
        ],
    }


LS_REASONING = [(785, "The"), (3239, " passage"), (14521, " covers"), (41938, " tides"),
                (13, "."), (198, "\n")]
LS_ANSWER_TOP = [(TRUE_ID, " true", -0.2), (FALSE_ID, " false", -1.9), (3007, " True", -5.5),
                 (198, "\n", -7.0)]
_LS_META = {"created": 1764290003, "model": "rank1.gguf", "system_fingerprint": "b0-unknown",
            "object": "text_completion"}
_LS_USAGE = {"completion_tokens": 8, "prompt_tokens": 40, "total_tokens": 48,
             "prompt_tokens_details": {"cached_tokens": 0}}
_LS_TIMINGS = {"cache_n": 0, "prompt_n": 40, "prompt_ms": 5.1, "predicted_n": 8,
               "predicted_ms": 7.1}


def llama_server_entries(*, with_stop_tokens: bool, special: bool = False) -> list[dict[str, Any]]:
    """The reasoning's entries, then (``with_stop_tokens``) the two held-back stop-string
    tokens. ``'</think>'`` is a special (CONTROL) token: even its top_logprobs text is empty
    unless the server runs with ``--special`` (the ``preserved_tokens`` the client sends
    make the stop string match, not the logprobs render it)."""
    entries = [_ls_entry(i, t, -0.1, [(i, t, -0.1), (279, " the", -3.2), (11, ",", -4.1)])
               for i, t in LS_REASONING]
    if with_stop_tokens:
        think_end = "</think>" if special else ""
        entries.append(_ls_entry(THINK_END_ID, think_end, -0.05,
                                 [(THINK_END_ID, think_end, -0.05), (576, " The", -3.9)],
                                 held_back=True))
        entries.append(_ls_entry(TRUE_ID, " true", -0.2, LS_ANSWER_TOP, held_back=True))
    return entries


def llama_server_completion() -> dict[str, Any]:
    """llama-server's non-streaming /v1/completions: chat-style logprobs; the text lacks
    the stop string, and the logprobs lack as many trailing entries as the stop string has
    tokens when tokenized as plain text (4 for ``"</think> true"``: the answer, ``</think>``
    and, as measured, two reasoning tokens before them)."""
    return {
        "choices": [{
            "text": "The passage covers tides.\n", "index": 0,
            "logprobs": {"content": llama_server_entries(with_stop_tokens=False)[:-2]},
            "finish_reason": "stop",
        }],
        **_LS_META, "usage": _LS_USAGE, "id": "chatcmpl-ls1", "timings": _LS_TIMINGS,
    }


def _ls_sse(entries: list[dict[str, Any]], finish: str) -> bytes:
    chunks = []
    for entry in entries:
        chunks.append({
            "choices": [{"text": entry["token"], "index": 0,
                         "logprobs": {"content": [entry]}, "finish_reason": None}],
            **_LS_META, "id": "chatcmpl-ls2",
        })
    chunks.append({
        "choices": [{"text": "", "index": 0, "logprobs": None, "finish_reason": finish}],
        **_LS_META, "usage": {**_LS_USAGE, "completion_tokens": len(entries)},
        "id": "chatcmpl-ls2", "timings": _LS_TIMINGS,
    })
    body = "".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + "data: [DONE]\n\n"
    return body.encode()


def llama_server_sse(*, special: bool = False, eos: bool = False) -> bytes:
    """llama-server's streaming /v1/completions as seen on the wire: one chunk per token,
    the held-back stop-string tokens with empty ``text`` and ``token`` (their text only in
    their own top_logprobs), then a chunk with ``logprobs: null``, ``finish_reason: "stop"``
    (for EOS and stop strings alike; there is no ``stop_reason``) and the usage, then
    ``[DONE]``.

    ``eos``: the stop string did not match (a server that renders ``</think>`` as "" and
    got no ``preserved_tokens``): nothing is held back, `` true`` is written as text, and
    generation ends on the end-of-text token (empty text)."""
    if not eos:
        return _ls_sse(llama_server_entries(with_stop_tokens=True, special=special), "stop")
    entries = llama_server_entries(with_stop_tokens=False)
    entries.append(_ls_entry(THINK_END_ID, "", -0.05, [(THINK_END_ID, "", -0.05)]))
    entries.append(_ls_entry(TRUE_ID, " true", -0.2, LS_ANSWER_TOP))
    entries.append(_ls_entry(EOS_ID, "", -0.01, [(EOS_ID, "", -0.01), (TRUE_ID, " true", -9.0),
                                                 (FALSE_ID, " false", -9.5)]))
    return _ls_sse(entries, "stop")


def llama_server_forced_sse(top: list[tuple[int, str, float]]) -> bytes:
    """llama-server's streamed answer to the one-token forced request (no stop strings:
    nothing is held back)."""
    token_id, token, logprob = top[0]
    return _ls_sse([_ls_entry(token_id, token, logprob, top)], "length")


def sse_response(body: bytes) -> httpx.Response:
    return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=body)


def chat_reply(
    *,
    content: str | None,
    reasoning: str | None = None,
    reasoning_key: str = "reasoning",
    tokens: list[tuple[str, list[tuple[str, float]]]] | None = None,
    finish: str = "stop",
) -> dict[str, Any]:
    """A vLLM chat completion: the recorded one from a vLLM started with
    ``--reasoning-parser deepseek_r1`` (``vllm-reasoning-demo-chat.json``) with this
    content, chain (under ``reasoning``, or ``reasoning_content`` as older vLLMs and
    llama-server name it) and logprobs."""
    body = recorded_vllm("vllm-reasoning-demo-chat.json", "/v1/chat/completions")
    choice = body["choices"][0]
    message = choice["message"]
    message.pop("reasoning", None)
    message["content"] = content
    if reasoning is not None:
        message[reasoning_key] = reasoning
    logprobs = None
    if tokens is not None:
        logprobs = {"content": [
            {"token": t, "logprob": top[0][1] if top else -0.1, "bytes": list(t.encode()),
             "top_logprobs": [{"token": k, "logprob": v, "bytes": list(k.encode())}
                              for k, v in top]}
            for t, top in tokens
        ]}
    choice.update(logprobs=logprobs, finish_reason=finish, stop_reason=None)
    body["usage"].update(prompt_tokens=70, total_tokens=90, completion_tokens=20)
    return body


def body_of(request: httpx.Request) -> dict[str, Any]:
    return json.loads(request.content)


class LoopbackServer:
    """A loopback HTTP/1.1 server in a thread, for tests of what the SDK's default HTTP
    stack (aiohttp: respx cannot see it) sends and survives. Subclasses answer each POST
    in :meth:`answer`, given the request handler."""

    def __init__(self) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802
                outer.answer(self)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def answer(self, handler: Any) -> None:
        raise NotImplementedError

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v1"

    def __enter__(self) -> Any:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


class RecordingServer(LoopbackServer):
    """Records each request (path, headers, JSON body) and answers every POST with
    ``payload``, after answering the first ones with the HTTP statuses in ``fail_first``."""

    def __init__(
        self, payload: dict[str, Any] | None = None, *, fail_first: tuple[int, ...] = (),
        delay: float = 0.0,
    ) -> None:
        super().__init__()
        self.payload = payload or vllm_completion()
        self.fail_first = list(fail_first)
        self.delay = delay
        self.requests: list[tuple[str, dict[str, str], dict[str, Any]]] = []

    def answer(self, handler: Any) -> None:
        raw = handler.rfile.read(int(handler.headers.get("Content-Length") or 0))
        headers = {k.lower(): v for k, v in handler.headers.items()}
        self.requests.append((handler.path, headers, json.loads(raw or b"{}")))
        status = self.fail_first.pop(0) if self.fail_first else 200
        if self.delay:
            time.sleep(self.delay)
        answer = self.payload if status == 200 else {"error": {"message": "failed"}}
        data = json.dumps(answer).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)


def http_client() -> httpx.AsyncClient:
    """The (legacy) httpx client the respx tests inject: the openai SDK here sends through
    httpx2/aiohttp unless handed an httpx client, and respx intercepts httpx. The URLs are
    plain http, so no TLS context is loaded (that costs ~0.1 s per client)."""
    return httpx.AsyncClient(verify=False)
