#!/usr/bin/env python
"""Rebuild the shipped demo model, local_server/rank1_server/demo/rank1-demo.gguf.

The demo model is a development stand-in for offline pipelines, not a relevance model:
hand-set weights that write a fixed rank1-style reasoning chain and score word overlap
(see rank1_server/models/demo_model.py). The build is deterministic: rerunning it gives
the same bytes, so the file committed to git can be checked against its source.

Usage::

    python scripts/build_demo_model.py                 # rewrite the shipped file
    python scripts/build_demo_model.py --output x.gguf # write elsewhere
    python scripts/build_demo_model.py --check         # exit 1 if the shipped file is stale
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
try:
    import rank1_server  # noqa: F401
except ImportError:  # running from a checkout without `pip install -e .`
    sys.path[:0] = [str(ROOT / "src"), str(ROOT / "local_server")]

from rank1_server.models.demo_model import DEMO_MODEL_PATH, write_demo_model  # noqa: E402


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", type=Path, default=DEMO_MODEL_PATH, help="where to write")
    parser.add_argument(
        "--check", action="store_true", help="build to a temporary file and compare with --output"
    )
    args = parser.parse_args(argv)

    if args.check:
        with tempfile.TemporaryDirectory() as tmp:
            fresh = write_demo_model(Path(tmp) / "rank1-demo.gguf")
            same = args.output.exists() and sha256(fresh) == sha256(args.output)
        print(f"{args.output}: {'up to date' if same else 'STALE: rebuild it with this script'}")
        return 0 if same else 1

    start = time.perf_counter()
    path = write_demo_model(args.output)
    seconds = time.perf_counter() - start
    size_mb = path.stat().st_size / 1e6
    print(f"wrote {path} ({size_mb:.1f} MB) in {seconds:.1f} s, sha256 {sha256(path)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
