"""The GPU check's script in its CPU mode (``benchmarks/gpu/bench.py --cpu``), so that the
GPU run is not its first run: a tiny Q4_0 model, both real servers (rank1-server and
llama.cpp's llama-server, from ``scripts/build_llama_server.sh``), two slot counts, and the
table's numbers checked. The Q4_0 writer and the sdist repacking rules, which need no
llama.cpp, are tested in ``tests/benchmarks/test_gpu_bench_tools.py``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
GPU = ROOT / "benchmarks" / "gpu"

BUDGET = 12
SLOTS = (1, 3)


@pytest.fixture(scope="module")
def llama_server() -> str:
    """The llama-server binary: ``$RANK1_LLAMA_SERVER``, else the one
    ``scripts/build_llama_server.sh`` builds and caches (instant once cached)."""
    path = os.environ.get("RANK1_LLAMA_SERVER")
    if not path:
        out = subprocess.run(
            ["bash", str(ROOT / "scripts" / "build_llama_server.sh")],
            env={**os.environ, "PYTHON": sys.executable}, capture_output=True, text=True,
            timeout=3600, check=True,
        )
        path = out.stdout.strip().splitlines()[-1]
    assert os.access(path, os.X_OK), path
    return path


def test_bench_cpu_mode_prints_a_sane_table(llama_server: str, tmp_path: Path) -> None:
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(ROOT / "src"), str(ROOT / "local_server"), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run(
        [sys.executable, str(GPU / "bench.py"), "--cpu", "--llama-server", llama_server,
         "--layers", "1", "--embd", "64", "--ff", "128", "--heads", "2", "--kv-heads", "1",
         "--vocab", "8192", "--slots", ",".join(map(str, SLOTS)), "--rounds", "1",
         "--budget", str(BUDGET), "--threads", "1", "--work", str(tmp_path), "--out", str(out)],
        env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    text = proc.stdout
    assert "judg/s" in text and "host %" in text and "x floor" in text
    result = json.loads((out / "results.json").read_text())
    assert result["cpu"] is True and result["n_gpu_layers"] == 0
    assert result["shape"]["n_vocab"] == 8192 and result["budget"] == BUDGET
    assert result["copy_bandwidth"] > 1e8  # bytes/s
    assert 0 < result["bytes_per_step"] < result["weight_bytes"]
    rows = result["rows"]
    assert [(r["server"], r["slots"]) for r in rows] == [
        (s, n) for s in ("rank1-server", "llama-server") for n in SLOTS]
    floor_ms = 1e3 * result["bytes_per_step"] / result["copy_bandwidth"]
    for r in rows:
        n = r["slots"]  # one round: one judgment per slot
        assert r["judgments"] == n and r["full_budget"] is True
        assert r["gen_tokens"] == n * (BUDGET + 1)  # the budget, then one forced token
        assert r["steps"] >= BUDGET + 1  # the slots decode together...
        assert r["steps"] < 2 * n * (BUDGET + 1)  # ...not one after another
        assert r["judgments_per_s"] == pytest.approx(n / r["wall_s"])
        assert r["gen_tokens_per_s"] == pytest.approx(r["gen_tokens"] / r["wall_s"])
        assert r["ms_per_step"] == pytest.approx(1e3 * r["wall_s"] / r["steps"])
        assert r["floor_ms"] == pytest.approx(floor_ms)
        assert r["step_over_floor"] == pytest.approx(r["ms_per_step"] / floor_ms)
        line = next(ln for ln in text.splitlines()
                    if ln.split()[:2] == [r["server"], str(n)])
        assert f"{r['judgments_per_s']:.2f}" in line and f"{r['ms_per_step']:.2f}" in line
        if r["server"] == "rank1-server":
            assert r["verdicts"] == r["forced"] == n  # every judgment took the forced answer
            assert 0 < r["decode_ms_per_step"] < r["ms_per_step"]
            assert 0 < r["host_share"] < 1
            assert r["host_us_per_slot_step"] > 0
        else:
            assert r["host_share"] is None and "n/a" in line
    assert (out / "table.txt").read_text().splitlines()[0].startswith("server")
    # the reproducibility comparison (alone / loaded / warm cache), both modes
    repro = {r["mode"]: r for r in result["reproducibility"]}
    assert set(repro) == {"default", "deterministic"}
    assert repro["deterministic"]["identical"] is True
    assert repro["deterministic"]["loaded_vs_alone"] == [0.0, 0, 0]
    assert repro["deterministic"]["warm_vs_alone"] == [0.0, 0, 0]
    assert all(r["loaded_judgments_per_s"] > 0 for r in repro.values())
    assert "reproducibility:" in text and "bit-identical" in text
    assert "reproducibility:" in (out / "table.txt").read_text()
