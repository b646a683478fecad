"""Start a server as a child process on a loopback port and wait until it answers.

One helper for every place that runs a server program for a while: ``rank1 demo`` and
``rank1 rerank --local`` (rank1-server), the fake server in a subprocess
(:func:`rank1_integrations.testing.fake_server_process`), the real-server tests and the
benchmarks. Not test code: the CLI uses it.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO

import httpx

__all__ = ["ServerStartError", "free_port", "spawn_server"]

#: How much of the child's output a start failure quotes.
_LOG_TAIL_CHARS = 4000


class ServerStartError(RuntimeError):
    """The server process exited, or did not answer, before it was ready."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def spawn_server(
    command: Sequence[str], port: int, *, ready_path: str = "/health", name: str | None = None,
    startup_timeout: float = 180.0, env: Mapping[str, str] | None = None,
    log: str | os.PathLike[str] | None = None, poll_interval: float = 0.1,
    stop_timeout: float = 20.0,
) -> Iterator[str]:
    """Run ``command`` (a server that will listen on ``127.0.0.1:port``) until
    ``GET ready_path`` answers 200; yield its root URL (``http://127.0.0.1:PORT``); on
    exit, Ctrl-C included, terminate it (kill after ``stop_timeout`` s).

    The child's stdout and stderr go to ``log`` (a file path), else to a temporary file;
    if it exits or stays unready past ``startup_timeout`` s, :class:`ServerStartError`
    says so under ``name`` (default: the program) and quotes the end of that output.
    """
    label = name or os.path.basename(command[0])
    root = f"http://127.0.0.1:{port}"
    with _output(log) as out:
        proc = subprocess.Popen(
            list(command), stdout=out, stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else None,
        )
        try:
            _wait_ready(proc, f"{root}{ready_path}", label, out, startup_timeout, poll_interval)
            yield root
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=stop_timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@contextlib.contextmanager
def _output(log: str | os.PathLike[str] | None) -> Iterator[IO[bytes]]:
    if log is None:
        with tempfile.TemporaryFile() as out:
            yield out
    else:
        with Path(log).open("w+b") as out:
            yield out


def _tail(out: IO[bytes]) -> str:
    """The end of what the child wrote (read without moving the shared file offset)."""
    fd = out.fileno()
    size = os.fstat(fd).st_size
    start = max(0, size - 4 * _LOG_TAIL_CHARS)
    data = os.pread(fd, size - start, start)
    return data.decode("utf-8", "replace")[-_LOG_TAIL_CHARS:]


def _wait_ready(
    proc: subprocess.Popen[bytes], url: str, label: str, out: IO[bytes], timeout: float,
    poll_interval: float,
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise ServerStartError(
                f"{label} exited with status {proc.returncode} before it was ready:\n{_tail(out)}"
            )
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise ServerStartError(f"{label} not ready after {timeout} s:\n{_tail(out)}")
        time.sleep(poll_interval)
