"""Bring what the GPU check needs into ``benchmarks/gpu/.vendor/`` (gitignored), for a GPU
machine with no network whose image has CUDA's compiler, CMake, ninja and Python 3.12
with PyTorch, numpy, httpx and tokenizers, and that gets everything else from the
repository (at most 64 MiB in all).

* ``wheels/``: the Python packages that image lacks, ``pip download``-ed for CPython 3.12
  on manylinux x86_64 with their dependencies (the runtime dependencies of this package's
  client and ``server`` extra and of llama-cpp-python's Python code), pinned to the
  versions installed where this runs when those exist. numpy and tokenizers are left out
  (the image has them; numpy alone is ~16 MB).
* ``llama_cpp_python-<version>-min.tar.gz``: the pinned llama-cpp-python sdist (77 MB)
  repacked without what building llama.cpp's libraries and ``llama-server`` does not use:
  the vendored vocabulary models, docs, media, the web UI's sources, tests, benchmarks,
  examples, gguf-py, and the GPU backends other than CUDA.

Usage (needs network; ``--sdist`` reuses a downloaded sdist)::

    python benchmarks/gpu/prepare.py [--sdist llama_cpp_python-0.3.36.tar.gz]

It fails when ``.vendor`` plus the repository's tracked files exceed ``--limit-mib``.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import io
import re
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
VENDOR = HERE / ".vendor"

#: Packages the GPU image already has (never shipped).
IN_IMAGE = {"numpy", "tokenizers", "huggingface-hub", "torch"}

#: Top-level parts of ``vendor/llama.cpp`` kept (everything else is dropped).
LLAMA_KEEP = {"CMakeLists.txt", "CMakePresets.json", "LICENSE", "cmake", "common", "ggml",
              "include", "licenses", "scripts", "src", "tools", "vendor"}
#: ggml backends kept (the CPU one always runs beside a GPU).
GGML_BACKENDS = {"ggml-cpu", "ggml-cuda"}
#: Dropped anywhere below ``tools``: tests, benchmarks, the web UI's sources and media.
TOOLS_DROP = re.compile(
    r"^tools/(server/(tests|bench|public\w*|webui)/|ui/[^/]+/|mtmd/test-[^/]*$|[^/]+/README[^/]*$"
    r"|ui/(package-lock\.json|package\.json)$)"
)


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirements(sdist: tarfile.TarFile, top: str) -> list[str]:
    """Runtime requirements: the client's and rank1-server's (``local_server/``) without
    llama-cpp-python itself and the two packages of this repository (run from source), and
    llama-cpp-python's own dependencies, minus what the image has."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    server = tomllib.loads((ROOT / "local_server" / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"]) + list(server["dependencies"])
    member = sdist.extractfile(f"{top}/pyproject.toml")
    assert member is not None
    reqs += tomllib.loads(member.read().decode())["project"]["dependencies"]
    out = []
    for req in reqs:
        name = _norm(re.split(r"[\[<>=!~; ]", req, maxsplit=1)[0])
        if name not in IN_IMAGE and name not in {
            "llama-cpp-python", "rank1-integrations", "rank1-server",
        }:
            out.append(req)
    return sorted(set(out))


def constraints() -> str:
    """``name==version`` of every distribution installed here (the versions tests use)."""
    seen = {}
    for dist in importlib.metadata.distributions():
        name = dist.metadata["Name"]
        if name and _norm(name) not in IN_IMAGE and _norm(name) != "rank1-integrations":
            seen[_norm(name)] = f"{name}=={dist.version}"
    return "\n".join(sorted(seen.values())) + "\n"


def download_wheels(reqs: list[str], dest: Path, python_version: str) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
        f.write(constraints())
    abi = f"cp{python_version.replace('.', '')}"
    cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--only-binary=:all:",
           "--python-version", python_version, "--implementation", "cp", "--abi", abi,
           "--abi", "abi3", "--abi", "none",
           "--platform", "manylinux_2_28_x86_64", "--platform", "manylinux_2_17_x86_64",
           "--platform", "manylinux2014_x86_64", "--platform", "any",
           "-d", str(dest), *reqs]
    try:
        subprocess.run([*cmd, "--constraint", f.name], check=True)
    except subprocess.CalledProcessError:
        print("prepare: pinned versions unavailable for this platform; resolving unpinned",
              file=sys.stderr)
        subprocess.run(cmd, check=True)
    finally:
        Path(f.name).unlink()
    for wheel in dest.glob("*.whl"):
        if _norm(wheel.name.split("-", 1)[0]) in IN_IMAGE:
            wheel.unlink()


def keep(rel: str) -> bool:
    """Whether a path inside the sdist (without its top folder) is kept."""
    parts = rel.split("/")
    if parts[0] != "vendor":
        return parts[0] in {"CMakeLists.txt", "pyproject.toml", "PKG-INFO", "LICENSE.md",
                            "llama_cpp"}
    if len(parts) < 2 or parts[1] != "llama.cpp":
        return False
    sub = "/".join(parts[2:])
    if not sub:
        return True
    head = parts[2]
    if head not in LLAMA_KEEP:
        return False
    if head == "ggml" and len(parts) > 4 and parts[3] == "src" and parts[4].startswith("ggml-") \
            and "." not in parts[4] and parts[4] not in GGML_BACKENDS:
        return False
    if head == "ggml" and len(parts) > 3 and parts[3] in {"tests", "examples", "docs"}:
        return False
    if head == "scripts":
        return len(parts) == 4 and parts[3].endswith(".cmake")
    if head == "tools" and TOOLS_DROP.match(sub):
        return False
    return True


def repack(sdist_path: Path, dest: Path) -> Path:
    """Write the trimmed sdist next to ``dest`` and return its path."""
    with tarfile.open(sdist_path) as src:
        top = src.getmembers()[0].name.split("/")[0]
        out = dest / f"{top}-min.tar.gz"
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:gz", compresslevel=9) as dst:
            for m in src.getmembers():
                rel = m.name.split("/", 1)[1] if "/" in m.name else ""
                if rel and not keep(rel):
                    continue
                if m.isfile():
                    dst.addfile(m, src.extractfile(m))
                elif m.isdir() or m.issym():
                    dst.addfile(m)
        out.write_bytes(buf.getvalue())
    return out


def tracked_bytes() -> int:
    files = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-z"], check=True,
                           capture_output=True).stdout.split(b"\0")
    paths = [ROOT / f.decode() for f in files if f]
    return sum(p.stat().st_size for p in paths if p.is_file())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sdist", type=Path, help="llama-cpp-python sdist (default: pip download)")
    ap.add_argument("--version", default=None, help="llama-cpp-python version (default: pinned)")
    ap.add_argument("--python-version", default="3.12")
    ap.add_argument("--limit-mib", type=float, default=60.0,
                    help="fail above this many MiB of .vendor + tracked files (default 60)")
    ap.add_argument("--skip-wheels", action="store_true")
    args = ap.parse_args()
    version = args.version or re.search(
        r"llama-cpp-python==([0-9.]+)",
        (ROOT / "local_server" / "pyproject.toml").read_text()).group(1)
    VENDOR.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        sdist = args.sdist
        if sdist is None:
            subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
                            "--no-binary", ":all:", f"llama-cpp-python=={version}", "-d", tmp],
                           check=True)
            sdist = next(Path(tmp).glob("llama_cpp_python-*.tar.gz"))
        for old in VENDOR.glob("*-min.tar.gz"):
            old.unlink()
        packed = repack(sdist, VENDOR)
        print(f"{packed.name}: {packed.stat().st_size / 2**20:.1f} MiB "
              f"(from {sdist.stat().st_size / 2**20:.1f} MiB)")
        if not args.skip_wheels:
            with tarfile.open(sdist) as src:
                top = src.getmembers()[0].name.split("/")[0]
                reqs = requirements(src, top)
            wheels = VENDOR / "wheels"
            for old in wheels.glob("*.whl"):
                old.unlink()
            download_wheels(reqs, wheels, args.python_version)
            size = sum(w.stat().st_size for w in wheels.glob("*.whl"))
            print(f"wheels/: {len(list(wheels.glob('*.whl')))} wheels, {size / 2**20:.1f} MiB "
                  f"for {' '.join(reqs)}")
    vendor = sum(p.stat().st_size for p in VENDOR.rglob("*") if p.is_file())
    total = vendor + tracked_bytes()
    print(f".vendor: {vendor / 2**20:.1f} MiB; with the tracked files {total / 2**20:.1f} MiB "
          f"(limit {args.limit_mib} MiB)")
    if total > args.limit_mib * 2**20:
        print("prepare: over the limit", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
