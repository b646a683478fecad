"""Start the bundled ``rank1-server`` in the background for one command's duration."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

from ..testing import free_port

__all__ = ["local_server"]


@contextlib.contextmanager
def local_server(
    model: str | None = None, *, startup_timeout: float = 180.0, extra_args: list[str] | None = None
) -> Iterator[str]:
    """Run ``rank1-server`` (the bundled demo model when ``model`` is None) on a free
    loopback port; yield its ``/v1`` base URL; stop it on exit, Ctrl-C included."""
    try:
        import rank1_server  # noqa: F401
    except ImportError as exc:
        raise ImportError(
            'the local server is not installed: pip install "rank1-integrations[server]"'
        ) from exc
    port = free_port()
    command = [sys.executable, "-m", "rank1_server.cli", "--host", "127.0.0.1", "--port", str(port)]
    if model is not None:
        command += ["--model", model]
    command += extra_args or []
    log = tempfile.TemporaryFile()  # the server's stderr, shown if it fails to start
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=log)
    try:
        deadline = time.monotonic() + startup_timeout
        health = f"http://127.0.0.1:{port}/health"
        while True:
            if proc.poll() is not None:
                log.seek(0)
                err = log.read().decode(errors="replace")[-4000:]
                raise RuntimeError(f"rank1-server exited with status {proc.returncode}:\n{err}")
            try:
                with urllib.request.urlopen(health, timeout=2) as response:
                    if response.status == 200:
                        break
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"rank1-server did not become healthy in {startup_timeout} s")
            time.sleep(0.2)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
