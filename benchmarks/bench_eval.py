"""``rank1 eval`` engine throughput: the cost of the SQLite store, and of resuming.

A synthetic collection (Q queries x D documents) is reranked against the loopback fake
server (in a subprocess, so its CPU is not counted) that answers each completion after a
fixed delay, at most C at once. The ideal wall time is ``ceil(Q*D / C) x delay``. Printed,
measured side by side in one run:

* reranking with judgments kept in memory only (``--no-store``), ratio to the ideal
  (best of two after a warm-up run, as is each figure below);
* the same with every judgment committed to a fresh SQLite store, and its ratio to the
  in-memory run (target <= 1.05: the store must not slow a run down);
* for comparison, one ``Rank1Client.rerank`` call per query in turn (each query's last
  judgments leave slots idle; the eval runner keeps C judgments in flight across queries);
* a rerun on the filled store (every judgment read back, no request), in judgments/s.

Run: ``python benchmarks/bench_eval.py [--queries 20] [--depth 50] [--delay 0.1]
[--concurrency 32]``
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import tempfile
import time
from pathlib import Path

from rank1_integrations import Rank1Client
from rank1_integrations.evaluation.io import Document
from rank1_integrations.evaluation.runner import CountingCache, rerank_run
from rank1_integrations.store import JudgmentStore
from rank1_integrations.testing import fake_server_process


def collection(
    n_queries: int, depth: int
) -> tuple[dict[str, str], dict[str, Document], dict[str, dict[str, float]]]:
    queries = {f"q{q}": f"ocean tides moon gravity question {q}" for q in range(n_queries)}
    corpus: dict[str, Document] = {}
    run: dict[str, dict[str, float]] = {}
    for q in range(n_queries):
        run[f"q{q}"] = {}
        for d in range(depth):
            docid = f"q{q}-d{d}"
            words = " ".join(["ocean", "tides", "moon", "gravity"][: d % 5])
            corpus[docid] = Document(text=f"Passage {docid} about {words}.", title=f"T{d}")
            run[f"q{q}"][docid] = float(depth - d)
    return queries, corpus, run


def timed(base_url: str, cap: int, cache: object, data: tuple, depth: int) -> float:
    queries, corpus, run = data
    with Rank1Client(base_url=base_url, model="fake", concurrency=cap, cache=cache) as client:
        t0 = time.perf_counter()
        result = rerank_run(
            client, queries, corpus, run, depth=depth, concurrency=cap, progress=False
        )
        wall = time.perf_counter() - t0
    assert not result.failures and result.pairs == len(queries) * depth
    return wall


def timed_per_query(base_url: str, cap: int, data: tuple, depth: int) -> float:
    """The naive alternative: one ``client.rerank`` call per query, queries in turn."""
    queries, corpus, run = data
    with Rank1Client(base_url=base_url, model="fake", concurrency=cap, cache=None) as client:
        t0 = time.perf_counter()
        for qid, scores in run.items():
            docs = [corpus[d] for d in list(scores)[:depth]]
            client.rerank(queries[qid], [{"text": d.text, "title": d.title} for d in docs])
        return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=20)
    parser.add_argument("--depth", type=int, default=50)
    parser.add_argument("--delay", type=float, default=0.1)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    cap, delay, depth = args.concurrency, args.delay, args.depth
    data = collection(args.queries, depth)
    n = args.queries * depth
    with fake_server_process(delay=delay, concurrency=cap) as base_url:
        with tempfile.TemporaryDirectory() as tmp:
            timed(base_url, cap, None, data, depth)  # warm-up, not counted
            # best of two for each, alternating, so neither gets the quieter moment
            memory = stored = naive = math.inf
            for attempt in range(2):
                naive = min(naive, timed_per_query(base_url, cap, data, depth))
                memory = min(memory, timed(base_url, cap, None, data, depth))
                store = JudgmentStore(Path(tmp) / f"bench{attempt}.sqlite")
                stored = min(stored, timed(base_url, cap, CountingCache(store), data, depth))
            counting = CountingCache(store)
            rerun = timed(base_url, cap, counting, data, depth)
            assert counting.hits == n and counting.puts == 0
            store.close()

    ideal = math.ceil(n / cap) * delay
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}"
    )
    print(f"{n} judgments ({args.queries} queries x depth {depth}), server delay "
          f"{delay * 1000:.0f} ms, concurrency {cap}; ideal wall {ideal:.3f} s")  # fmt: skip
    print(f"one client.rerank per query, in turn: {naive:.3f} s  ratio to ideal: "
          f"{naive / ideal:.3f}x")  # fmt: skip
    print(
        f"in memory:    {memory:.3f} s  ratio to ideal: {memory / ideal:.3f}x  "
        f"speed-up over per-query rerank: {naive / memory:.2f}x"
    )
    print(
        f"SQLite store: {stored:.3f} s  ratio to ideal: {stored / ideal:.3f}x  "
        f"ratio to in-memory: {stored / memory:.3f}x (target <= 1.05)"
    )
    print(f"rerun, all from the store: {rerun:.3f} s  ({n / rerun:.0f} judgments/s, 0 requests)")


if __name__ == "__main__":
    main()
