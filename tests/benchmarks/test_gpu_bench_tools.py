"""The GPU check's helpers that need no llama.cpp: the Q4_0 model writer
(``benchmarks/gpu/q4_model.py``) and the sdist repacking rules (``prepare.py``). The
script's CPU run against both real servers is ``tests/server/test_gpu_bench_cpu.py``."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
GPU = ROOT / "benchmarks" / "gpu"
sys.path.insert(0, str(GPU))

from prepare import keep  # noqa: E402


def test_q4_0_model_has_the_bias_channel_and_banned_rows(tmp_path: Path) -> None:
    np = pytest.importorskip("numpy", reason="the Q4_0 writer needs the server extra")
    gguf = pytest.importorskip("gguf", reason="the Q4_0 writer needs the server extra")
    from q4_model import SUPPRESS, Shape, write_q4_0_model
    from rank1_server.models import build_vocabulary

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
