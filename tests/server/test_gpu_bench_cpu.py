"""The GPU check's script in its CPU mode (``benchmarks/gpu/bench.py --cpu``), so that the
GPU run is not its first run: a tiny Q4_0 model, both real servers (rank1-server and
llama.cpp's llama-server, from ``scripts/build_llama_server.sh``), two slot counts, and the
table's numbers checked. Also the Q4_0 writer and the sdist repacking rules."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
GPU = ROOT / "benchmarks" / "gpu"
sys.path.insert(0, str(GPU))

from prepare import keep  # noqa: E402
from q4_model import SUPPRESS, Shape, write_q4_0_model  # noqa: E402
from rank1_server.models import build_vocabulary  # noqa: E402

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


def test_q4_0_model_has_the_bias_channel_and_banned_rows(tmp_path: Path) -> None:
    import gguf

    shape = Shape(n_layer=1, n_embd=64, n_ff=128, n_head=2, n_head_kv=1, n_vocab=4096)
    path = write_q4_0_model(tmp_path / "m.gguf", shape)
    tensors = {t.name: t for t in gguf.GGUFReader(str(path)).tensors}
    assert tensors["blk.0.ffn_down.weight"].tensor_type == gguf.GGMLQuantizationType.Q4_0

    def deq(name: str) -> np.ndarray:
        t = tensors[name]
        return gguf.quants.dequantize(t.data, t.tensor_type)

    emb, out, o = deq("token_embd.weight"), deq("output.weight"), deq("blk.0.attn_output.weight")
    assert emb.shape == (4096, 64) and np.all(emb[:, 0] == emb[0, 0]) and emb[0, 0] > 1
    assert abs(float(emb[:, 1:].std()) - 1) < 0.05
    banned = out[:, 0] < 0
    assert np.all(out[banned, 0] == -SUPPRESS) and np.all(out[banned, 1:] == 0)
    assert np.all(out[~banned, 0] == 0)
    vocab = build_vocabulary(think_end_special=True)
    assert banned[vocab.size:].all() and banned[vocab.token_id("</think>")]  # padding, specials
    assert not banned[vocab.token_id(" true")] and not banned[vocab.token_id(" false")]
    assert banned.sum() < 4096 - 2000
    assert np.all(o[0] == 0) and np.all(deq("blk.0.ffn_down.weight")[0] == 0)
    assert write_q4_0_model(tmp_path / "again.gguf", shape).read_bytes() == path.read_bytes()


@pytest.mark.parametrize(("path", "kept"), [
    ("llama_cpp/llama_cpp.py", True),
    ("CMakeLists.txt", True),
    ("docs/index.md", False),
    ("vendor/llama.cpp/models/ggml-vocab-qwen2.gguf", False),
    ("vendor/llama.cpp/docs/build.md", False),
    ("vendor/llama.cpp/media/llama0-logo.png", False),
    ("vendor/llama.cpp/tests/test-backend-ops.cpp", False),
    ("vendor/llama.cpp/ggml/src/ggml-cuda/mmq.cu", True),
    ("vendor/llama.cpp/ggml/src/ggml-cpu/ggml-cpu.c", True),
    ("vendor/llama.cpp/ggml/src/ggml-vulkan/ggml-vulkan.cpp", False),
    ("vendor/llama.cpp/ggml/src/ggml.c", True),
    ("vendor/llama.cpp/tools/server/server-context.cpp", True),
    ("vendor/llama.cpp/tools/server/tests/unit/test_basic.py", False),
    ("vendor/llama.cpp/tools/ui/CMakeLists.txt", True),
    ("vendor/llama.cpp/tools/ui/ui.cpp.in", True),
    ("vendor/llama.cpp/tools/ui/src/app.html", False),
    ("vendor/llama.cpp/tools/ui/package-lock.json", False),
    ("vendor/llama.cpp/tools/mtmd/clip.cpp", True),
    ("vendor/llama.cpp/scripts/ui-assets.cmake", True),
    ("vendor/llama.cpp/scripts/sync_vendor.py", False),
    ("vendor/llama.cpp/vendor/nlohmann/json.hpp", True),
])
def test_sdist_repack_keeps_what_the_build_needs(path: str, kept: bool) -> None:
    assert keep(path) is kept
