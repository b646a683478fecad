"""Load on the rerank gateway: N concurrent rerank requests (default 600) against
``rank1-server --upstream`` (queue ``--max-queue``, default 64; ``--parallel`` documents in
flight toward the upstream, default 4) in front of a real llama-server on the demo model.

Checks, and prints: every request answered 200 or 429 with ``Retry-After`` (anything
else is a failure), nothing lost or duplicated (each request's document is unique and
comes back in its own answer exactly once), the gateway's RSS before/peak/after (sampled
from /proc every 20 ms), wall time and answers per second.

Usage::

    RANK1_LLAMA_SERVER=$(bash scripts/build_llama_server.sh) \\
        .venv/bin/python benchmarks/bench_gateway_load.py [--requests 600] [--max-queue 64]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import httpx

from rank1_integrations._spawn import free_port, spawn_server

ROOT = Path(__file__).resolve().parents[1]
QUERY = "how do bees make honey from nectar"


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def gateway_pid(port: int) -> int:
    """The pid of the process listening on ``port`` (the gateway we spawned)."""
    import subprocess

    out = subprocess.run(["ss", "-ltnpH", f"sport = :{port}"], capture_output=True,
                         text=True).stdout
    return int(out.split("pid=")[1].split(",")[0])


async def one(http: httpx.AsyncClient, root: str, i: int) -> tuple[int, str, object]:
    doc = f"Bees make honey from nectar. Request {i}."
    r = await http.post(f"{root}/v1/rerank", json={
        "query": QUERY, "documents": [doc], "return_documents": True,
        "max_reasoning_tokens": 64})
    if r.status_code == 200:
        texts = [x["document"]["text"] for x in r.json()["results"]]
        return 200, doc, texts
    return r.status_code, doc, r.headers.get("retry-after")


async def load(root: str, n: int) -> list[tuple[int, str, object]]:
    limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
    async with httpx.AsyncClient(timeout=600, limits=limits) as http:
        return await asyncio.gather(*(one(http, root, i) for i in range(n)))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=600)
    ap.add_argument("--max-queue", type=int, default=64)
    ap.add_argument("--concurrency", type=int, default=4,
                    help="the gateway's --parallel: documents in flight toward the upstream")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT / "tests"))
    from rank1_server.models.demo_model import write_demo_model
    from real.servers import llama_server, llama_server_binary

    tmp = tempfile.TemporaryDirectory(prefix="rank1-bench-")
    demo = write_demo_model(Path(tmp.name) / "rank1-demo.gguf")
    with tmp, llama_server(llama_server_binary(), demo, parallel=4, alias="rank1-demo") as upstream:
        port = free_port()
        command = [sys.executable, "-m", "rank1_server.cli", "--upstream", upstream,
                   "--upstream-model", "rank1-demo", "--port", str(port),
                   "--max-queue", str(args.max_queue), "--max-reasoning-tokens", "64",
                   "--parallel", str(args.concurrency), "--log-level", "warning"]
        with spawn_server(command, port, name="rank1-server --upstream") as root:
            pid = gateway_pid(port)
            before = rss_kib(pid)
            peak = [before]
            stop = threading.Event()

            def sample() -> None:
                while not stop.is_set():
                    peak[0] = max(peak[0], rss_kib(pid))
                    time.sleep(0.02)

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            started = time.perf_counter()
            answers = asyncio.run(load(root, args.requests))
            wall = time.perf_counter() - started
            stop.set()
            sampler.join()
            after = rss_kib(pid)
    statuses = Counter(status for status, _, _ in answers)
    bad = [a for a in answers if a[0] not in (200, 429)]
    no_retry_after = [a for a in answers if a[0] == 429 and not a[2]]
    wrong = [a for a in answers if a[0] == 200 and a[2] != [a[1]]]
    docs = [a[1] for a in answers]
    print(f"machine: {os.cpu_count()} CPUs ({os.uname().machine}), shared")
    print(f"requests: {args.requests} concurrent, gateway queue {args.max_queue}, "
          f"{args.concurrency} in flight toward llama-server (demo model, 4 slots)")
    print(f"answers: {dict(sorted(statuses.items()))}; other statuses: {len(bad)}; "
          f"429 without Retry-After: {len(no_retry_after)}")
    print(f"lost or duplicated: {args.requests - len(set(docs)) + len(wrong)} "
          f"(wrong/missing document in a 200: {len(wrong)})")
    print(f"wall: {wall:.2f} s; 200s per second: {statuses[200] / wall:.1f}")
    print(f"gateway RSS: before {before / 1024:.1f} MiB, peak {peak[0] / 1024:.1f} MiB, "
          f"after {after / 1024:.1f} MiB")
    return 0 if not bad and not no_retry_after and not wrong else 1


if __name__ == "__main__":
    sys.exit(main())
