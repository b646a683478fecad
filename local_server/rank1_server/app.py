"""The HTTP API: FastAPI routes over one engine.

Endpoints (OpenAI error shape ``{"error": {"message", "type", "param", "code"}}`` on
failure):

* ``POST /v1/completions`` - answered like vLLM: greedy only, ``logprobs`` up to 20 (by
  partial sort, only when asked), stop strings whose tokens stay in the logprobs,
  ``skip_special_tokens``, ``finish_reason`` and ``stop_reason``; ``prompt`` may be a list.
* ``POST /v1/chat/completions`` - basic: text messages, greedy, optional logprobs.
* ``POST /v1/rerank`` - Jina/Cohere shape with rank1's verdict per document.
* ``POST /tokenize`` - vLLM's shape: ``{prompt, add_special_tokens}`` ->
  ``{count, max_model_len, tokens}`` (special tokens written as text are parsed, as in
  completions).
* ``GET /v1/models`` (``max_model_len``: one slot's context, as vLLM publishes it),
  ``GET /health`` (503 while loading), ``GET /metrics`` (Prometheus).

Usage::

    app = create_app(ServerConfig(model_path="rank1.gguf"))
    uvicorn.run(app, host="127.0.0.1", port=8000)
"""

from __future__ import annotations

import asyncio
import ctypes
import hmac
import logging
import os
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from rank1_integrations.protocol import THINK_START

from .backend import LlamaContext, LlamaModel
from .engine import MAX_LOGPROBS, Engine, Generation, GenParams, PromptTooLong, QueueFull
from .metrics import Metrics
from .rank1 import Document, NoRoom, Rank1Judge, Rank1Vocab, VocabularyError
from .schemas import (
    ChatRequest,
    CompletionRequest,
    RerankDocument,
    RerankRequest,
    TokenizeRequest,
)

__all__ = ["ServerConfig", "ServerState", "create_app"]

log = logging.getLogger("rank1_server")
T = TypeVar("T")


@dataclass
class ServerConfig:
    """Everything ``rank1-server``'s flags set (see ``rank1-server --help``)."""

    model_path: str
    #: Name reported by /v1/models and in responses (default: the file name sans .gguf).
    model_name: str | None = None
    #: Sequence slots decoded together.
    parallel: int = 8
    #: Context per slot in tokens (default: min(training context, 4096)).
    n_ctx: int | None = None
    #: Layers offloaded to the GPU (None: all on a GPU build, else 0; -1: all).
    n_gpu_layers: int | None = None
    threads: int | None = None
    #: Tokens per llama_decode call (prompt chunks + one per generating slot).
    batch_size: int = 512
    api_key: str | None = None
    #: Requests that may wait for a slot; more get 429. Also the most documents or
    #: prompts one request may carry (413 above).
    max_queue: int = 512
    #: Reasoning budget of /v1/rerank when the request gives none.
    max_reasoning_tokens: int = 2048
    kv_unified: bool = False
    flash_attn: bool = False
    #: Let llama.cpp repack quantized weights for its CPU kernels (``--no-repack`` turns
    #: it off: needed where the CPU advertises AMX but the sandbox traps it, see
    #: :meth:`~rank1_server.backend.LlamaModel.load`).
    repack: bool = True
    max_body_bytes: int = 32 * 1024 * 1024

    def served_name(self) -> str:
        if self.model_name:
            return self.model_name
        base = os.path.basename(self.model_path)
        return base[: -len(".gguf")] if base.endswith(".gguf") else base


class ApiError(Exception):
    """An error answered in OpenAI's shape."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.type = status, message, type
        self.param, self.code, self.headers = param, code, headers

    def response(self) -> JSONResponse:
        return _error_response(
            self.status, self.message, self.type, self.param, self.code, self.headers
        )


class ClientGone(Exception):
    """The client disconnected before its answer was ready."""


def _error_response(
    status: int, message: str, type_: str, param: str | None = None, code: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = {"error": {"message": message, "type": type_, "param": param, "code": code}}
    return JSONResponse(body, status_code=status, headers=headers)


class ServerState:
    """The loaded model, engine and rank1 judge (None while loading)."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.model_name = config.served_name()
        self.engine: Engine | None = None
        self.judge: Rank1Judge | None = None
        self.rank1_error: str | None = None
        self.load_error: str | None = None
        self.chat_template: str | None = None
        self.think_start_special = False
        self.metrics = Metrics(lambda: self.engine)
        self.started = int(time.time())
        #: Called when the model fails to load (the CLI stops the server with it).
        self.on_load_error: Callable[[], None] | None = None

    def load(self) -> None:
        """Load the model and start the engine (blocking: run it in a thread)."""
        cfg = self.config
        model = LlamaModel.load(
            cfg.model_path, n_gpu_layers=cfg.n_gpu_layers, repack=cfg.repack
        )
        try:
            n_ctx = cfg.n_ctx or min(model.n_ctx_train or 4096, 4096)
            ctx = LlamaContext(
                model, n_seq=cfg.parallel, n_ctx_per_seq=n_ctx, n_batch=cfg.batch_size,
                n_threads=cfg.threads, kv_unified=cfg.kv_unified, flash_attn=cfg.flash_attn,
            )
        except BaseException:
            model.close()
            raise
        engine = Engine(model, ctx, max_queue=cfg.max_queue)
        try:
            vocab = Rank1Vocab.lookup(model)
            self.judge = Rank1Judge(
                engine, vocab, on_judgment=self.metrics.judgment_seconds.observe
            )
        except VocabularyError as exc:
            self.rank1_error = str(exc)
            log.warning("/v1/rerank disabled: %s", exc)
        self.chat_template = model.chat_template()
        self.think_start_special = len(model.tokenize(THINK_START, parse_special=True)) == 1
        engine.start()
        self.engine = engine
        log.info(
            "serving %s: %d slots x %d tokens, %d GPU layers, %d threads, repacking %s",
            self.model_name, cfg.parallel, n_ctx, model.n_gpu_layers, ctx.n_threads,
            "on" if cfg.repack else "off",
        )

    def ready(self) -> Engine:
        if self.engine is None:
            if self.load_error:
                raise ApiError(503, f"the model failed to load: {self.load_error}",
                               type="service_unavailable", code="model_load_failed")
            raise ApiError(503, "the model is still loading", type="service_unavailable",
                           code="model_loading", headers={"Retry-After": "1"})
        return self.engine


# --------------------------------------------------------------------------- middleware


class _Guard:
    """Pure ASGI middleware: 413 for bodies over the limit, request counting for metrics.

    (Not ``BaseHTTPMiddleware``: that one hides client disconnects from the routes.)
    """

    _ENDPOINTS = {"/v1/completions", "/v1/chat/completions", "/v1/rerank", "/rerank",
                  "/v1/models", "/tokenize", "/health", "/metrics"}

    def __init__(self, app: Any, state: ServerState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        endpoint = path if path in self._ENDPOINTS else "other"
        status = {"code": 500}

        async def send_wrapper(message: dict) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        limit = self.state.config.max_body_bytes
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        try:
            too_large = None
            if length is not None and length.isdigit() and int(length) > limit:
                too_large = f"{int(length)} bytes"
            elif length is None and b"transfer-encoding" in headers:
                # A chunked body announces no size: read it here, up to the limit.
                received, over = await _read_body(receive, limit)
                if over:
                    too_large = f"over {limit} bytes"
                receive = _replay(received, receive)
            if too_large is not None:
                response = _error_response(
                    413, f"the request body has {too_large}; the limit is {limit}",
                    "invalid_request_error", None, "request_too_large",
                )
                await response(scope, receive, send_wrapper)
                return
            await self.app(scope, receive, send_wrapper)
        finally:
            self.state.metrics.requests.labels(endpoint=endpoint, status=str(status["code"])).inc()


async def _read_body(receive: Any, limit: int) -> tuple[list[dict], bool]:
    """The ASGI messages of a request body, read until its end or until it has more than
    ``limit`` bytes; and whether it went over."""
    messages: list[dict] = []
    total = 0
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request":
            return messages, False
        total += len(message.get("body", b""))
        if total > limit:
            return messages, True
        if not message.get("more_body", False):
            return messages, False


def _replay(messages: list[dict], receive: Any) -> Callable[[], Awaitable[dict]]:
    """An ASGI ``receive`` that gives ``messages`` again, then the live ones."""
    pending = deque(messages)

    async def replay() -> dict:
        return pending.popleft() if pending else await receive()

    return replay


async def _until_disconnect(request: Request, work: Awaitable[T]) -> T:
    """Await ``work``; if the client goes away first, cancel it (freeing its slots)."""
    task = asyncio.ensure_future(work)
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=0.1)
            if done:
                return task.result()
            if await request.is_disconnected():
                task.cancel()
                try:
                    await task
                except BaseException:  # noqa: BLE001 - the client is gone either way
                    pass
                raise ClientGone()
    except asyncio.CancelledError:
        task.cancel()
        raise


# --------------------------------------------------------------------------- the app


def create_app(config: ServerConfig) -> FastAPI:
    """Build the app; the model loads in the background once the server starts."""
    state = ServerState(config)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async def load() -> None:
            try:
                await asyncio.to_thread(state.load)
            except Exception as exc:  # noqa: BLE001 - reported by /health and the CLI
                state.load_error = f"{type(exc).__name__}: {exc}"
                log.error("could not load %s: %s", config.model_path, state.load_error)
                if state.on_load_error is not None:
                    state.on_load_error()

        loader = asyncio.create_task(load())
        try:
            yield
        finally:
            await loader
            if state.engine is not None:
                await asyncio.to_thread(state.engine.stop)
                state.engine = None

    app = FastAPI(title="rank1-server", lifespan=lifespan)
    app.state.rank1 = state
    app.add_middleware(_Guard, state=state)

    # ------------------------------------------------------------------ errors

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return exc.response()

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        parts, param = [], None
        for err in errors[:5]:
            loc = [str(x) for x in err.get("loc", ()) if x != "body"]
            where = ".".join(loc) or "body"
            param = param or where
            parts.append(f"{where}: {err.get('msg')}")
        return _error_response(422, "; ".join(parts) or "invalid request",
                               "invalid_request_error", param, "invalid_value")

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _error_response(exc.status_code, str(exc.detail), "invalid_request_error",
                               None, None, getattr(exc, "headers", None))

    @app.exception_handler(ClientGone)
    async def _gone(request: Request, exc: ClientGone) -> Response:
        return Response(status_code=499)

    @app.exception_handler(Exception)
    async def _crash(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s", request.url.path)
        return _error_response(500, f"internal error: {type(exc).__name__}: {exc}",
                               "server_error")

    # ------------------------------------------------------------------ auth

    async def require_key(request: Request) -> None:
        key = config.api_key
        if not key:
            return
        given = request.headers.get("authorization", "")
        token = given[7:].strip() if given.lower().startswith("bearer ") else ""
        token = token or request.headers.get("x-api-key", "")
        if not hmac.compare_digest(token.encode(), key.encode()):
            raise ApiError(401, "missing or wrong API key (send 'Authorization: Bearer KEY')",
                           code="invalid_api_key")

    auth = [Depends(require_key)]

    # ------------------------------------------------------------------ plain routes

    @app.get("/health")
    async def health() -> JSONResponse:
        if state.engine is None:
            status = "error" if state.load_error else "loading"
            body: dict[str, Any] = {"status": status}
            if state.load_error:
                body["message"] = state.load_error
            return JSONResponse(body, status_code=503)
        engine = state.engine
        if engine.crashed:
            return JSONResponse({"status": "error", "message": f"engine crashed: {engine.crashed}"},
                                status_code=503)
        return JSONResponse({
            "status": "ok", "model": state.model_name, "slots": engine.n_slots,
            "busy_slots": engine.busy_slots, "queue_depth": engine.queue_depth,
            "n_ctx_per_slot": engine.n_ctx_per_slot, "rerank": state.judge is not None,
        })

    @app.get("/metrics")
    async def metrics() -> Response:
        body, content_type = state.metrics.render()
        return Response(body, media_type=content_type)

    @app.get("/v1/models", dependencies=auth)
    async def models() -> dict[str, Any]:
        engine = state.ready()
        return {"object": "list", "data": [{
            "id": state.model_name, "object": "model", "created": state.started,
            "owned_by": "rank1-server", "max_model_len": engine.n_ctx_per_slot,
        }]}

    @app.post("/tokenize", dependencies=auth)
    async def tokenize(body: TokenizeRequest) -> dict[str, Any]:
        engine = state.ready()
        model = engine.model
        ids = model.tokenize(body.prompt, add_special=body.add_special_tokens,
                             parse_special=True)
        out: dict[str, Any] = {"count": len(ids), "max_model_len": engine.n_ctx_per_slot,
                               "tokens": ids}
        if body.return_token_strs:
            out["token_strs"] = [_token_text(model, t) for t in ids]
        return out

    # ------------------------------------------------------------------ completions

    @app.post("/v1/completions", dependencies=auth)
    async def completions(body: CompletionRequest, request: Request) -> JSONResponse:
        engine = state.ready()
        model = engine.model
        _refuse_unsupported(body)
        if body.echo:
            raise ApiError(400, "echo is not supported", param="echo")
        if body.suffix:
            raise ApiError(400, "suffix is not supported", param="suffix")
        if body.logprobs is not None and body.logprobs > MAX_LOGPROBS:
            raise ApiError(400, f"logprobs must be at most {MAX_LOGPROBS}, got {body.logprobs}",
                           param="logprobs")
        prompts = _prompts(body.prompt, model)
        if len(prompts) > config.max_queue:
            raise ApiError(413, f"{len(prompts)} prompts in one request; the limit is "
                           f"{config.max_queue}", param="prompt", code="too_many_prompts")
        params = _gen_params(body, engine, body.max_tokens or 16, body.logprobs)
        items = [(ids, params) for _, ids in prompts]
        for i, (ids, p) in enumerate(items):
            _check(engine, ids, p, param="prompt" if len(items) == 1 else f"prompt.{i}")
        gens = await _generate(request, engine, items)
        choices = []
        for i, gen in enumerate(gens):
            logprobs = None
            if gen.logprobs is not None:
                logprobs = _completion_logprobs(
                    gen, model, body.return_tokens_as_token_ids,
                    exact=bool(body.logprob_token_ids),
                )
            choices.append({
                "index": i, "text": gen.text, "logprobs": logprobs,
                "finish_reason": gen.finish_reason, "stop_reason": gen.stop_reason,
            })
        return JSONResponse({
            "id": f"cmpl-{uuid.uuid4().hex}", "object": "text_completion",
            "created": int(time.time()), "model": state.model_name, "choices": choices,
            "usage": _usage(gens),
        })

    # ------------------------------------------------------------------ chat

    @app.post("/v1/chat/completions", dependencies=auth)
    async def chat(body: ChatRequest, request: Request) -> JSONResponse:
        engine = state.ready()
        model = engine.model
        _refuse_unsupported(body)
        k = (body.top_logprobs or 0) if body.logprobs else None
        if k is not None and k > MAX_LOGPROBS:
            raise ApiError(400, f"top_logprobs must be at most {MAX_LOGPROBS}",
                           param="top_logprobs")
        prompt = _chat_prompt(state, body)
        ids = model.tokenize(prompt, add_special=True, parse_special=True)
        max_tokens = body.max_completion_tokens or body.max_tokens
        if max_tokens is None:
            max_tokens = max(1, engine.n_ctx_per_slot - len(ids))
        params = _gen_params(body, engine, max_tokens, k)
        _check(engine, ids, params, param="messages")
        (gen,) = await _generate(request, engine, [(ids, params)])
        logprobs = None
        if gen.logprobs is not None:
            logprobs = {"content": [
                {**_chat_entry(model, lp.token, lp.logprob),
                 "top_logprobs": [_chat_entry(model, t, v) for t, v in lp.top]}
                for lp in gen.logprobs
            ]}
        return JSONResponse({
            "id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion",
            "created": int(time.time()), "model": state.model_name,
            "choices": [{
                "index": 0, "message": {"role": "assistant", "content": gen.text},
                "logprobs": logprobs, "finish_reason": gen.finish_reason,
                "stop_reason": gen.stop_reason,
            }],
            "usage": _usage([gen]),
        })

    # ------------------------------------------------------------------ rerank

    @app.post("/v1/rerank", dependencies=auth)
    @app.post("/rerank", dependencies=auth, include_in_schema=False)
    async def rerank(body: RerankRequest, request: Request) -> JSONResponse:
        state.ready()
        judge = state.judge
        if judge is None:
            raise ApiError(400, f"this model cannot run rank1: {state.rank1_error}",
                           param="model", code="model_not_supported")
        if len(body.documents) > config.max_queue:
            raise ApiError(413, f"{len(body.documents)} documents in one request; the limit "
                           f"is {config.max_queue}", param="documents", code="too_many_documents")
        docs = [
            Document(d.text, d.title) if isinstance(d, RerankDocument) else Document(d)
            for d in body.documents
        ]
        budget = body.max_reasoning_tokens or config.max_reasoning_tokens
        try:
            result = await _until_disconnect(request, judge.judge_many(
                body.query, docs, instruction=body.instruction, max_reasoning_tokens=budget,
            ))
        except QueueFull as exc:
            raise _queue_full(exc) from exc
        except NoRoom as exc:
            raise ApiError(400, str(exc), param="query", code="context_length_exceeded") from exc
        except ValueError as exc:
            raise ApiError(400, str(exc), param="max_reasoning_tokens") from exc
        order = sorted(result.judgments, key=lambda j: (-(j.score or 0.0), j.index))
        if body.top_n is not None:
            order = order[: body.top_n]
        results = []
        for j in order:
            item: dict[str, Any] = {
                "index": j.index, "relevance_score": j.score, "relevant": j.relevant,
                "reasoning": j.reasoning, "source": j.source.value if j.source else None,
                "score_estimated": j.score_estimated, "truncated": j.truncated,
                "reasoning_tokens": j.reasoning_tokens,
                "reasoning_budget": result.reasoning_budgets[j.index],
            }
            if body.return_documents:
                doc = docs[j.index]
                item["document"] = {"text": doc.text}
                if doc.title is not None:
                    item["document"]["title"] = doc.title
            results.append(item)
        return JSONResponse({
            "id": f"rerank-{uuid.uuid4().hex}", "model": state.model_name, "results": results,
            "usage": {
                "prompt_tokens": result.prompt_tokens,
                "completion_tokens": result.completion_tokens,
                "total_tokens": result.prompt_tokens + result.completion_tokens,
            },
        })

    return app


# --------------------------------------------------------------------------- helpers


def _refuse_unsupported(body: Any) -> None:
    bad = body.unsupported()
    if bad is not None:
        raise ApiError(400, bad[1], param=bad[0])
    try:
        body.stop_list()
    except ValueError as exc:
        raise ApiError(400, str(exc), param="stop") from exc


def _queue_full(exc: QueueFull) -> ApiError:
    return ApiError(429, f"the server is busy: {exc}; retry later", type="rate_limit_error",
                    code="queue_full", headers={"Retry-After": "1"})


def _prompts(prompt: Any, model: LlamaModel) -> list[tuple[str | None, list[int]]]:
    """Normalise the prompt field into (text or None, token ids) pairs."""
    if isinstance(prompt, str):
        raw: list[Any] = [prompt]
    elif prompt and all(isinstance(x, int) for x in prompt):
        raw = [list(prompt)]
    else:
        raw = list(prompt)
    out = []
    for i, p in enumerate(raw):
        if isinstance(p, str):
            out.append((p, model.tokenize(p, add_special=True, parse_special=True)))
        else:
            out.append((None, list(_ids(model, p, f"prompt.{i}"))))
    return out


def _ids(model: LlamaModel, ids: list[int] | None, param: str) -> tuple[int, ...] | None:
    """``ids`` as a tuple, or a 400 naming ``param`` for the first id outside the vocabulary."""
    if ids is None:
        return None
    bad = [t for t in ids if not 0 <= t < model.n_vocab]
    if bad:
        raise ApiError(400, f"token id {bad[0]} is outside the vocabulary "
                       f"(0..{model.n_vocab - 1})", param=param)
    return tuple(ids)


def _gen_params(body: Any, engine: Engine, max_tokens: int, logprobs: int | None) -> GenParams:
    model = engine.model
    stop_ids = _ids(model, body.stop_token_ids, "stop_token_ids") or ()
    allowed = _ids(model, body.allowed_token_ids, "allowed_token_ids")
    if allowed is not None and not allowed:
        raise ApiError(400, "allowed_token_ids must not be empty", param="allowed_token_ids")
    extra = _ids(model, body.logprob_token_ids, "logprob_token_ids") or ()
    if extra:
        # vLLM's semantics: logprob_token_ids replaces the top-k; exactly these ids are
        # reported at every position.
        logprobs = 0
    return GenParams(
        max_tokens=max_tokens,
        stop=tuple(body.stop_list()),
        stop_token_seqs=tuple((t,) for t in stop_ids),
        skip_special_tokens=body.skip_special_tokens,
        include_stop_str_in_output=body.include_stop_str_in_output,
        ignore_eos=body.ignore_eos,
        logprobs=logprobs,
        logprob_ids=extra,
        allowed_ids=allowed,
    )


def _check(engine: Engine, ids: list[int], params: GenParams, *, param: str) -> None:
    try:
        engine.check(ids, params)
    except PromptTooLong as exc:
        raise ApiError(400, str(exc), param=param, code="context_length_exceeded") from exc
    except ValueError as exc:
        raise ApiError(400, str(exc), param=param) from exc


async def _generate(
    request: Request, engine: Engine, items: list[tuple[list[int], GenParams]]
) -> list[Generation]:
    try:
        return await _until_disconnect(request, engine.generate_many(items))
    except QueueFull as exc:
        raise _queue_full(exc) from exc


def _token_text(model: LlamaModel, token: int, as_id: bool = False) -> str:
    if as_id:
        return f"token_id:{token}"
    return model.piece(token, special=True).decode("utf-8", "replace")


def _lp(value: float) -> float:
    return max(float(value), -9999.0)  # vLLM's stand-in for -inf


def _completion_logprobs(
    gen: Generation, model: LlamaModel, as_ids: bool, *, exact: bool = False
) -> dict[str, Any]:
    """vLLM's shape; the tokens that completed a stop string are kept.

    ``top_logprobs[i]`` holds the chosen token and the top-k; with ``exact`` (the request
    gave ``logprob_token_ids``) exactly the requested ids."""
    tokens, token_logprobs, top_logprobs, offsets = [], [], [], []
    offset = 0
    for lp in gen.logprobs or []:
        text = _token_text(model, lp.token, as_ids)
        tokens.append(text)
        token_logprobs.append(_lp(lp.logprob))
        top: dict[str, float] = {} if exact else {text: _lp(lp.logprob)}
        for t, v in lp.top:
            top.setdefault(_token_text(model, t, as_ids), _lp(v))
        top_logprobs.append(top)
        offsets.append(offset)
        offset += len(text)
    return {"tokens": tokens, "token_logprobs": token_logprobs, "top_logprobs": top_logprobs,
            "text_offset": offsets}


def _chat_entry(model: LlamaModel, token: int, logprob: float) -> dict[str, Any]:
    raw = model.piece(token, special=True)
    return {"id": token, "token": raw.decode("utf-8", "replace"), "logprob": _lp(logprob),
            "bytes": list(raw)}


def _usage(gens: list[Generation]) -> dict[str, int]:
    prompt = sum(g.prompt_tokens for g in gens)
    completion = sum(len(g.token_ids) for g in gens)
    return {"prompt_tokens": prompt, "completion_tokens": completion,
            "total_tokens": prompt + completion}


def _chat_prompt(state: ServerState, body: ChatRequest) -> str:
    """The model's chat template when the GGUF has one; otherwise the messages' text
    joined by newlines, followed by ``\\n<think>`` when ``<think>`` is a special token
    (a rank1 GGUF: this rebuilds the raw prompt it was trained on)."""
    messages = [(m.role, m.text()) for m in body.messages]
    tmpl = state.chat_template
    if tmpl:
        return _apply_template(tmpl, messages)
    text = "\n".join(content for _, content in messages)
    if state.think_start_special:
        text += "\n" + THINK_START
    return text


def _apply_template(tmpl: str, messages: list[tuple[str, str]]) -> str:
    import llama_cpp

    arr = (llama_cpp.llama_chat_message * len(messages))()
    keep = []
    for i, (role, content) in enumerate(messages):
        r, c = role.encode(), content.encode()
        keep += [r, c]
        arr[i].role, arr[i].content = r, c
    size = 4 * sum(len(c) for c in keep) + 1024
    for _ in range(2):
        buf = ctypes.create_string_buffer(size)
        n = llama_cpp.llama_chat_apply_template(tmpl.encode(), arr, len(messages), True, buf, size)
        if n < 0:
            raise ApiError(400, "the model's chat template could not be applied",
                           param="messages")
        if n <= size:
            return buf.raw[:n].decode("utf-8", "replace")
        size = n + 1
    raise ApiError(500, "chat template output too long", type="server_error")
