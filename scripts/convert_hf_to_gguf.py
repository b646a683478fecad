"""Convert a Hugging Face model directory to GGUF with llama.cpp's own converter.

The converter (``convert_hf_to_gguf.py``, its ``conversion`` package and ``gguf-py``) is
taken from the pinned llama-cpp-python sdist (its vendored llama.cpp: the same commit as
rank1-server's engine and the ``llama-server`` the tests build), downloaded by pip from
the package registry and kept under the cache. It runs under the vLLM venv's Python (it
needs torch and transformers, which that venv has and ours does not).

This is how a user moves a rank1 checkpoint from vLLM to the llama.cpp servers; the
tests do it to the demo model's Hugging Face copy (``scripts/build_hf_demo_model.py``)
so that vLLM and the llama.cpp servers serve weights that went through the real
converter, and hold their verdicts to each other.

One patch: the converter recognises a BPE pre-tokenizer only by a hash of a published
vocabulary's output; the demo vocabulary is new, so it is told ``qwen2`` (the demo's
vocabulary is trained with Qwen2's split regex: ``rank1_server.models.vocab``).

    .venv/bin/python scripts/convert_hf_to_gguf.py HF_DIR --python VLLM_PYTHON
    # prints HF_DIR.f32.gguf (kept: a second run converts nothing)
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: Run under the vLLM venv: the converter with the pre-tokenizer patch (module doc).
_CONVERT = """
import sys
src, hf, out = sys.argv[1:4]
sys.path[:0] = [src + "/gguf-py", src]
sys.argv = ["convert_hf_to_gguf.py", hf, "--outfile", out, "--outtype", "f32"]
import conversion
conversion.TextModel.get_vocab_base_pre = lambda self, tokenizer: "qwen2"
import convert_hf_to_gguf
convert_hf_to_gguf.main()
"""


def llama_cpp_python_version() -> str:
    text = (ROOT / "local_server" / "pyproject.toml").read_text()
    match = re.search(r"llama-cpp-python==([0-9.]+)", text)
    if match is None:
        raise SystemExit("no llama-cpp-python==X pin in local_server/pyproject.toml")
    return match.group(1)


def converter(cache: Path) -> Path:
    """The converter's folder from the pinned sdist (extracted once into ``cache``)."""
    version = llama_cpp_python_version()
    out = cache / f"llama-convert-{version}"
    if (out / "convert_hf_to_gguf.py").is_file():
        return out
    with tempfile.TemporaryDirectory() as work:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
             "--no-binary", ":all:", f"llama-cpp-python=={version}", "-d", work],
            check=True, stdout=sys.stderr,
        )
        vendor = f"llama_cpp_python-{version}/vendor/llama.cpp/"
        wanted = ("convert_hf_to_gguf.py", "conversion/", "gguf-py/")
        staging = Path(work) / "converter"
        with tarfile.open(Path(work) / f"llama_cpp_python-{version}.tar.gz") as tar:
            for member in tar.getmembers():
                rest = member.name.removeprefix(vendor)
                if member.name.startswith(vendor) and rest.startswith(wanted):
                    member.name = rest
                    if hasattr(tarfile, "data_filter"):  # Python 3.10.12+, 3.11.4+
                        tar.extract(member, staging, filter="data")
                    else:
                        tar.extract(member, staging)
        out.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staging, out)
    return out


def convert(hf: Path, python: str, cache: Path) -> Path:
    out = hf.with_name(hf.name + ".f32.gguf")  # beside the folder, not in vLLM's
    if out.is_file():
        return out
    tmp = out.with_suffix(".tmp")
    env = {**os.environ, "NO_LOCAL_GGUF": ""}
    subprocess.run([python, "-c", _CONVERT, os.fspath(converter(cache)), os.fspath(hf),
                    os.fspath(tmp)], check=True, env=env, stdout=sys.stderr)
    os.replace(tmp, out)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("hf", type=Path, help="the Hugging Face model directory")
    ap.add_argument("--python", required=True,
                    help="a Python with torch and transformers (the vLLM venv's)")
    args = ap.parse_args()
    cache = Path(os.environ.get("RANK1_CACHE_DIR", Path.home() / ".cache/rank1-integrations"))
    print(convert(args.hf, args.python, cache))


if __name__ == "__main__":
    main()
