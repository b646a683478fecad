"""Start the bundled ``rank1-server`` in the background for one command's duration.

The server runs as a separate process started by module name (``python -m
rank1_server.cli``): this package never imports the server package.
"""

from __future__ import annotations

import contextlib
import importlib.util
import sys
from collections.abc import Iterator

from .._spawn import free_port, spawn_server

__all__ = ["local_server"]

#: What to install when the server package or its dependencies are missing.
INSTALL_HINT = 'pip install "rank1-integrations[server]"'


@contextlib.contextmanager
def local_server(
    model: str | None = None, *, startup_timeout: float = 180.0, extra_args: list[str] | None = None
) -> Iterator[str]:
    """Run ``rank1-server`` (the bundled demo model when ``model`` is None) on a free
    loopback port; yield its ``/v1`` base URL; stop it on exit, Ctrl-C included.

    Raises :class:`ImportError` when the server package is not installed, and
    :class:`~rank1_integrations._spawn.ServerStartError` (quoting the server's output,
    which names the extra to install when a dependency is missing) when it exits before
    it is ready or is not ready within ``startup_timeout`` seconds."""
    if importlib.util.find_spec("rank1_server") is None:
        raise ImportError(f"the local server is not installed: {INSTALL_HINT}")
    port = free_port()
    command = [sys.executable, "-m", "rank1_server.cli", "--host", "127.0.0.1", "--port", str(port)]
    if model is not None:
        command += ["--model", model]
    command += extra_args or []
    with spawn_server(command, port, name="rank1-server", startup_timeout=startup_timeout,
                      poll_interval=0.2, stop_timeout=10.0) as root:
        yield f"{root}/v1"
