"""``rank1-server`` as a process: it starts, reports loading then ready, serves, and
refuses a missing model clearly."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from rank1_server.cli import build_parser, main
from rank1_server.testing import free_port

ROOT = Path(__file__).resolve().parents[2]


def test_missing_model_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["--model", str(tmp_path / "nope.gguf")]) == 2
    assert "model file not found" in capsys.readouterr().err


def test_defaults() -> None:
    args = build_parser().parse_args([])
    assert (args.host, args.port, args.parallel) == ("127.0.0.1", 8000, 8)
    assert args.n_gpu_layers is None and args.kv_unified is False and args.flash_attn is False


def test_every_setting_has_its_generated_flag(monkeypatch: pytest.MonkeyPatch) -> None:
    """The flags are ServerConfig's fields: a new field is a new flag, with the field's
    default, check and description; no default is written twice."""
    from rank1_server.config import ServerConfig

    monkeypatch.delenv("RANK1_SERVER_API_KEY", raising=False)
    parser = build_parser()
    args = vars(parser.parse_args([]))
    assert set(args) == set(ServerConfig.model_fields)
    for name, field in ServerConfig.model_fields.items():
        if name != "model_path":  # required in the config; the CLI falls back to the demo
            assert args[name] == field.default, name
        assert " ".join((field.description or "").split())[:40] in " ".join(
            parser.format_help().split()), name
    with pytest.raises(SystemExit):
        parser.parse_args(["--parallel", "0"])  # ge=1 on the field
    assert not parser.parse_args(["--no-repack"]).repack
    monkeypatch.setenv("RANK1_SERVER_API_KEY", "sk-env")
    assert build_parser().parse_args([]).api_key == "sk-env"


def test_process_serves_and_stops(random_model: Path) -> None:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(ROOT / "src"), str(ROOT / "local_server"), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen(
        [sys.executable, "-m", "rank1_server.cli", "--model", str(random_model),
         "--port", str(port), "--parallel", "2", "--n-ctx", "256", "--log-level", "warning"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    try:
        statuses = set()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/health", timeout=2)
                statuses.add(r.status_code)
                if r.status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None, proc.stdout.read().decode()
            time.sleep(0.02)
        assert 200 in statuses
        r = httpx.post(f"http://127.0.0.1:{port}/v1/rerank",
                       json={"query": "q", "documents": ["a"], "max_reasoning_tokens": 4})
        assert r.status_code == 200 and r.json()["results"][0]["source"] == "forced_answer"
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert proc.returncode in (0, -15)  # uvicorn re-raises SIGTERM after a clean shutdown


def test_process_exits_when_the_model_cannot_load(tmp_path: Path) -> None:
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"not a gguf file")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(ROOT / "src"), str(ROOT / "local_server"), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run(
        [sys.executable, "-m", "rank1_server.cli", "--model", str(bad), "--port",
         str(free_port())], env=env, capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 1
    assert "could not load" in proc.stderr
