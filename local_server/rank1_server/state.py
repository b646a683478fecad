"""The server's state: the loaded model, engine and rank1 judge, kept on
``app.state.rank1`` for the routers (:func:`~rank1_server.deps.get_state`)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from rank1_integrations import Rank1Client
from rank1_integrations.protocol import THINK_START

from .backend import LlamaContext, LlamaModel
from .config import ServerConfig
from .engine import Engine
from .errors import ApiError
from .metrics import Metrics
from .rank1 import Rank1Judge, Rank1Vocab, VocabularyError

__all__ = ["ServerState"]

log = logging.getLogger("rank1_server")


class ServerState:
    """The loaded model, engine and rank1 judge (None while loading)."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.model_name = config.served_name()
        self.engine: Engine | None = None
        #: Gateway mode (``--upstream``): the client judging at the upstream; no engine.
        self.gateway: Rank1Client | None = None
        #: Gateway mode: documents admitted toward the upstream (in flight or waiting);
        #: more than ``parallel + max_queue`` are refused with 429 (see ``rerank``).
        self.gateway_admitted = 0
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
        """Load the model and start the engine (blocking: run it in a thread); in gateway
        mode, make the client that judges at the upstream instead."""
        cfg = self.config
        if cfg.upstream:
            # No cache, one concurrency bound toward the upstream for all requests, a
            # failed document fails its request (the routes answer 502 naming the cause).
            self.gateway = Rank1Client(
                base_url=cfg.upstream, api_key=cfg.upstream_api_key or "none",
                model=cfg.upstream_model, mode=cfg.upstream_mode,
                max_reasoning_tokens=cfg.max_reasoning_tokens, concurrency=cfg.parallel,
                on_error="raise", cache=False,
            )
            log.info("gateway to %s (%s mode): no model loaded", cfg.upstream, cfg.upstream_mode)
            return
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
        engine = Engine(model, ctx, max_queue=cfg.max_queue, deterministic=cfg.deterministic)
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
            "serving %s: %d slots x %d tokens, %d GPU layers, %d threads, repacking %s%s",
            self.model_name, cfg.parallel, n_ctx, model.n_gpu_layers, ctx.n_threads,
            "on" if cfg.repack else "off", ", deterministic" if cfg.deterministic else "",
        )

    def ready(self) -> Engine:
        if self.gateway is not None:
            raise ApiError(404, "this rank1-server is a gateway (--upstream): it serves the "
                           "rerank routes, /v1/models, /health and /metrics only",
                           code="not_served")
        if self.engine is None:
            if self.load_error:
                raise ApiError(503, f"the model failed to load: {self.load_error}",
                               type="service_unavailable", code="model_load_failed")
            raise ApiError(503, "the model is still loading", type="service_unavailable",
                           code="model_loading", headers={"Retry-After": "1"})
        return self.engine
