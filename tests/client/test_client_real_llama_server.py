"""The client against the real ``llama-server`` binary, when one is built.

``bash scripts/build_llama_server.sh`` builds it (cached under
``~/.cache/rank1-integrations``); ``LLAMA_SERVER_BIN`` may name another. Without one this
module is skipped. It guards what only the real server shows: it closes the connection
after every streamed response, and it writes ``""`` as the token text of the held-back
answer token.
"""

from __future__ import annotations

import glob
import os
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from rank1_integrations import Rank1Client
from rank1_integrations.protocol import VerdictSource

DEMO = Path(__file__).parents[2] / "local_server" / "rank1_server" / "demo" / "rank1-demo.gguf"


def _binary() -> str | None:
    named = os.environ.get("LLAMA_SERVER_BIN")
    if named:
        return named
    found = sorted(glob.glob(os.path.expanduser(
        "~/.cache/rank1-integrations/llama-server-*/bin/llama-server")))
    return found[-1] if found else None


@pytest.fixture(scope="module")
def llama_server() -> Iterator[str]:
    binary = _binary()
    if binary is None or not os.access(binary, os.X_OK):
        pytest.skip("no llama-server binary (bash scripts/build_llama_server.sh)")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # --no-repack: some sandboxed CPUs trap the repacked kernels (SIGILL); no --special:
    # the client must cope with the server's default rendering of </think>
    proc = subprocess.Popen(
        [binary, "-m", str(DEMO), "--host", "127.0.0.1", "--port", str(port), "-np", "2",
         "-c", "4096", "--no-repack", "-t", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"llama-server did not start (exit code {proc.poll()})")
                time.sleep(0.2)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.mark.parametrize("concurrency", [1, 4])
async def test_many_judgments_in_a_row(llama_server: str, concurrency: int) -> None:
    """No retries: every request must succeed on its connection, every answer be read at
    the answer position (not through the forced answer)."""
    client = Rank1Client(llama_server, model="demo", cache=None, max_retries=0,
                         concurrency=concurrency)
    try:
        judgments = []
        for query in ("how do honey bees make honey", "what is a volcano"):
            judgments += await client.arerank(query, [
                "Honey bees make honey from the nectar of flowers.",
                "A volcano is an opening in the crust where magma erupts.",
                "Bread rises because yeast makes gas.",
                "Chess is a board game for two players.",
            ] * 3)
    finally:
        await client.aclose()
    assert len(judgments) == 24
    assert all(j.source is VerdictSource.ANSWER_LOGPROBS for j in judgments)
    assert not any(j.score_estimated for j in judgments)
    assert client.transport.stream  # type: ignore[attr-defined]
    # the demo model: the passage that shares the query's words comes first
    assert judgments[0].score > judgments[2].score and judgments[13].score > judgments[15].score
