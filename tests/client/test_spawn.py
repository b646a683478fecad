"""``rank1_integrations._spawn``: the one spawn-and-wait helper of the CLI's local server,
the fake server's subprocess, the real-server tests and the benchmarks."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import httpx
import pytest

from rank1_integrations._spawn import ServerStartError, free_port, spawn_server

#: A server that answers 503 on /health for its first two polls, then 200, and logs a line.
SERVER = """
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer
polls = 0
class H(BaseHTTPRequestHandler):
    def do_GET(self):
        global polls
        polls += self.path == "/health"
        self.send_response(200 if polls > 2 or self.path != "/health" else 503)
        self.end_headers()
        self.wfile.write(b"ok")
    def log_message(self, *a):
        pass
print("serving", flush=True)
HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"""


def test_free_port_is_bindable() -> None:
    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def test_waits_for_200_yields_the_root_and_stops_the_process(tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "server.log"
    with spawn_server([sys.executable, "-c", SERVER, str(port)], port, log=log,
                      poll_interval=0.02) as root:
        assert root == f"http://127.0.0.1:{port}"
        assert httpx.get(f"{root}/health").status_code == 200  # past the 503s
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{root}/health", timeout=2)
    assert log.read_text() == "serving\n"


def test_an_early_exit_names_the_server_and_quotes_its_output() -> None:
    command = [sys.executable, "-c", "import sys; print('no model here'); sys.exit(3)"]
    with pytest.raises(ServerStartError, match=r"(?s)my-server exited with status 3 .*no model"):
        with spawn_server(command, free_port(), name="my-server"):
            pytest.fail("not ready")


def test_a_server_that_never_answers_times_out() -> None:
    command = [sys.executable, "-c", "import time; print('loading', flush=True); time.sleep(60)"]
    with pytest.raises(ServerStartError, match=r"(?s)not ready after 0.5 s.*loading"):
        with spawn_server(command, free_port(), startup_timeout=0.5, stop_timeout=5):
            pytest.fail("not ready")
