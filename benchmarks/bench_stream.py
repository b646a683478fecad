"""Time to the first verdict: rank1-server's streamed ``/v1/rerank`` against its whole
JSON answer, through ``Rank1Client(mode="rerank").arerank_iter``, side by side.

A rank1-server (a subprocess on loopback, so that its CPU is not the client's) serves a
generated model with random weights (4 layers x 256: a few ms per token; every chain runs
to the budget, then the forced answer), so each document costs the same known work. One
query of ``--docs`` passages per call; the two ways alternate over ``--rounds`` (the cache
off). Printed, per way: the median time to the first judgment and to the last (the call's
wall time) and the client's CPU per call, and the ratios streamed / whole. With the stream
the first verdict comes after about one document's work per slot; with the whole answer
only when every document is done.

Run: ``python benchmarks/bench_stream.py [--docs 8] [--parallel 2] [--budget 96]
[--rounds 5]``
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

from rank1_server.models import write_random_model

from rank1_integrations import Rank1Client
from rank1_integrations._spawn import free_port, spawn_server

ROOT = Path(__file__).resolve().parents[1]

QUERY = "what causes the tides?"


async def one_call(client: Rank1Client, docs: list[str]) -> tuple[float, float, float]:
    """(seconds to the first judgment, to the last, client CPU) of one arerank_iter."""
    started, cpu = time.perf_counter(), time.process_time()
    first = None
    async for judgment in client.arerank_iter(QUERY, docs):
        assert judgment.error is None, judgment.error
        if first is None:
            first = time.perf_counter() - started
    assert first is not None
    return first, time.perf_counter() - started, time.process_time() - cpu


async def run(base_url: str, args: argparse.Namespace) -> dict[str, list[tuple[float, ...]]]:
    times: dict[str, list[tuple[float, ...]]] = {"streamed": [], "whole": []}
    async with Rank1Client(base_url, model="rank1-bench", mode="rerank", cache=None,
                           max_reasoning_tokens=args.budget) as client:
        await one_call(client, ["warm-up"])
        for r in range(args.rounds):
            order = ["streamed", "whole"] if r % 2 == 0 else ["whole", "streamed"]
            for way in order:
                client.transport.streams = way == "streamed"  # type: ignore[attr-defined]
                docs = [f"Passage {r}-{i} of round {r} on the moon and the sea."
                        for i in range(args.docs)]
                times[way].append(await one_call(client, docs))
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=int, default=8)
    parser.add_argument("--parallel", type=int, default=2)
    parser.add_argument("--budget", type=int, default=96)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(ROOT / "src"), str(ROOT / "local_server"), os.environ.get("PYTHONPATH", "")])}
    with tempfile.TemporaryDirectory() as tmp:
        model = write_random_model(Path(tmp) / "random-slow.gguf", n_layer=4, n_embd=256)
        port = free_port()
        command = [sys.executable, "-m", "rank1_server.cli", "--model", str(model),
                   "--port", str(port), "--parallel", str(args.parallel), "--n-ctx", "1024",
                   "--max-reasoning-tokens", str(args.budget), "--no-repack",
                   "--log-level", "warning", "--model-name", "rank1-bench"]
        with spawn_server(command, port, env=env, startup_timeout=300) as root:
            times = asyncio.run(run(f"{root}/v1", args))
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
          f"{platform.python_version()}; {args.docs} docs, {args.parallel} slots, budget "
          f"{args.budget}, {args.rounds} rounds (medians)")
    med = {way: [statistics.median(t[k] for t in ts) for k in range(3)]
           for way, ts in times.items()}
    for way, (first, last, cpu) in med.items():
        print(f"{way:>8}: first judgment {first:.3f} s, last {last:.3f} s, "
              f"client CPU {cpu * 1000:.0f} ms per call")
    s, w = med["streamed"], med["whole"]
    print(f"streamed / whole: first judgment {s[0] / w[0]:.2f}x, call {s[1] / w[1]:.2f}x, "
          f"client CPU {s[2] / w[2]:.2f}x")


if __name__ == "__main__":
    main()
