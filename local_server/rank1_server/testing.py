"""Run a real ``rank1-server`` on loopback for tests and benchmarks.

Usage::

    from rank1_server.testing import running_server

    with running_server("model.gguf", parallel=4, n_ctx=1024) as base_url:
        client = Rank1Client(base_url=base_url, mode="rerank")   # base_url ends in /v1
        ...

The server runs uvicorn in a daemon thread on a free port of 127.0.0.1; the context
manager returns once ``/health`` says the model is loaded, and stops the server (and
frees the model) on exit. Options are :class:`~rank1_server.app.ServerConfig` fields.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from os import PathLike
from typing import Any

import httpx

from rank1_integrations._spawn import free_port

__all__ = ["LLAMA_CPP_PYTHON_SERVER_NO_REPACK", "running_server", "free_port"]

#: ``python -c`` code that runs llama-cpp-python's own server (``python -m
#: llama_cpp.server``, same arguments) with llama.cpp's weight repacking off: that server
#: has no switch for it, so this turns it off in the model parameters every ``Llama``
#: starts from (the AMX trap of sandboxed CPUs: see ``rank1-server --no-repack``). For the
#: tests and benchmarks that compare against that server.
LLAMA_CPP_PYTHON_SERVER_NO_REPACK = """
import sys
import llama_cpp.llama_cpp as lib
_default = lib.llama_model_default_params
def _no_repack():
    params = _default()
    params.use_extra_bufts = False
    return params
lib.llama_model_default_params = _no_repack
from llama_cpp.server.__main__ import main
sys.argv[0] = "llama_cpp.server"
main()
"""


@contextmanager
def running_server(
    model_path: str | PathLike[str], *, startup_timeout: float = 120.0, **options: Any
) -> Iterator[str]:
    """Serve ``model_path`` on a free loopback port; yield the ``.../v1`` base URL."""
    import uvicorn

    from .app import ServerConfig, create_app

    config = ServerConfig(model_path=str(model_path), **options)
    for attempt in range(3):  # another process may take the free port before uvicorn binds it
        app = create_app(config)
        port = free_port()
        server = uvicorn.Server(uvicorn.Config(
            app, host="127.0.0.1", port=port, log_level="warning", lifespan="on",
        ))
        thread = threading.Thread(target=server.run, name=f"rank1-server-{port}", daemon=True)
        thread.start()
        root = f"http://127.0.0.1:{port}"
        try:
            if _wait_ready(root, thread, app, startup_timeout):
                break
        except BaseException:
            server.should_exit = True
            thread.join(timeout=30)
            raise
        thread.join(timeout=30)
        if attempt == 2:
            raise RuntimeError(f"rank1-server could not start (last port {port})")
    try:
        yield f"{root}/v1"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def _wait_ready(root: str, thread: threading.Thread, app: Any, timeout: float) -> bool:
    """True once /health is 200; False if the server thread exited (port taken)."""
    deadline = time.monotonic() + timeout
    while True:
        if not thread.is_alive():
            state = app.state.rank1
            if state.load_error:
                raise RuntimeError(f"rank1-server failed to load: {state.load_error}")
            return False
        try:
            r = httpx.get(f"{root}/health", timeout=5)
            if r.status_code == 200:
                return True
            if r.json().get("status") == "error":
                raise RuntimeError(f"rank1-server failed to load: {r.json().get('message')}")
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"rank1-server not ready after {timeout} s")
        time.sleep(0.05)
