"""Client throughput: 200 judgments against a loopback server of known speed.

The server (``rank1_integrations.testing.fake_server``, in a subprocess so its CPU is not
counted as the client's) answers each rank1 completion after a fixed delay and serves at
most C requests at once. The ideal wall time is ``ceil(200 / C) x delay``. The script
prints, measured side by side in one run:

* wall time of ``Rank1Client.rerank`` over 200 passages, and its ratio to the ideal
  (target <= 1.15);
* the speed-up over a sequential loop of ``judge`` calls (target >= 20x);
* client CPU time per judgment (target <= 0.5 ms);
* the overhead of tracing: client CPU time of the same rerank calls (``--trace-calls``
  calls of 10 passages) with an OpenTelemetry SDK tracer provider and an in-memory
  exporter, against the same calls with tracing off, rounds alternated (target < 5%;
  skipped without ``opentelemetry-sdk``).
* ``rerank_many`` over 20 queries x 10 passages against one ``rerank`` per query, at the
  same concurrency (target >= 1.5x): one bound across the queries keeps every slot busy,
  where one call per query waits for each query's slowest passage.

Run: ``python benchmarks/bench_client.py [--n 200] [--delay 0.2] [--concurrency 32]
[--queries 20] [--per-query 10]``
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import time

from rank1_integrations import Rank1Client
from rank1_integrations.testing import fake_server_process


def passages(n: int, tag: str) -> list[str]:
    # distinct texts so the cache never answers
    return [f"Passage {tag}-{i} about ocean tides and the moon, number {i}." for i in range(n)]


def tracing_overhead(client: Rank1Client, calls: int, rounds: int = 6) -> str:
    """Client CPU of ``calls`` rerank calls (10 passages each) with and without an SDK
    tracer provider, alternated over ``rounds`` (the least of each kept): one line."""
    try:
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    except ImportError:
        return "tracing overhead: skipped (pip install opentelemetry-sdk)"
    from rank1_integrations import telemetry

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    traced = telemetry._get_tracer()  # the package's tracer, now on the SDK provider

    def run(tag: str) -> float:
        cpu0 = time.process_time()
        for i in range(calls):
            judgments = client.rerank("ocean tides moon", passages(10, f"{tag}{i}"))
            assert all(j.ok for j in judgments)
        return time.process_time() - cpu0

    off, on = [], []
    for r in range(rounds):  # alternated, each first in turn
        for traced_now in ((False, True) if r % 2 == 0 else (True, False)):
            telemetry._tracer = traced if traced_now else None  # None: no span at all
            (on if traced_now else off).append(run(f"{traced_now}{r}-"))
    telemetry._tracer = traced
    spans = len(exporter.get_finished_spans())
    assert spans == rounds * calls, spans
    best_off, best_on = min(off), min(on)
    # the span alone (open, record 10 judgments, end, export), without the HTTP noise
    sample = client.rerank("ocean tides moon", passages(10, "span"))
    k = 2000
    cpu0 = time.process_time()
    for _ in range(k):
        with telemetry.rerank_span(client.span_endpoint, len(sample)) as span:
            span.record(sample)
    span_cpu = (time.process_time() - cpu0) / k
    per_call = best_off / calls
    return (f"tracing overhead ({calls} calls x 10 passages, best of {rounds}): client CPU "
            f"{per_call * 1000:.2f} ms/call untraced, {best_on * 1000 / calls:.2f} "
            f"ms/call traced: {(best_on / best_off - 1) * 100:+.1f}%; the span alone "
            f"{span_cpu * 1e6:.0f} us/call = {span_cpu / per_call * 100:.1f}% (target < 5%)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--delay", type=float, default=0.2)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--sequential-n", type=int, default=40,
                        help="judgments in the sequential loop, extrapolated to --n")
    parser.add_argument("--trace-calls", type=int, default=20,
                        help="rerank calls per round of the tracing overhead (0: skip)")
    parser.add_argument("--queries", type=int, default=20, help="queries for rerank_many")
    parser.add_argument("--per-query", type=int, default=10, help="passages per query")
    args = parser.parse_args()
    n, delay, cap = args.n, args.delay, args.concurrency
    seq_n = args.sequential_n or n
    with fake_server_process(delay=delay, concurrency=cap) as base_url:
        client = Rank1Client(base_url=base_url, model="fake", concurrency=cap, cache=None)
        client.rerank("warm up", ["connection pool warm-up"] * cap)  # open connections

        cpu0, t0 = time.process_time(), time.perf_counter()
        judgments = client.rerank("ocean tides moon", passages(n, "c"))
        wall = time.perf_counter() - t0
        cpu = time.process_time() - cpu0
        assert len(judgments) == n and all(j.ok for j in judgments)

        t0 = time.perf_counter()
        for text in passages(seq_n, "s"):
            client.judge("ocean tides moon", text)
        seq_wall = (time.perf_counter() - t0) * n / seq_n
        traced = tracing_overhead(client, args.trace_calls) if args.trace_calls else None

        requests = [(f"ocean tides moon {q}", passages(args.per_query, f"m{q}"))
                    for q in range(args.queries)]
        t0 = time.perf_counter()
        per_query = [client.rerank(query, docs) for query, docs in requests]
        one_by_one = time.perf_counter() - t0
        requests = [(query, [p + " again" for p in docs]) for query, docs in requests]
        t0 = time.perf_counter()
        many = client.rerank_many(requests)
        many_wall = time.perf_counter() - t0
        assert [len(js) for js in many] == [len(js) for js in per_query]
        assert all(j.ok for js in many for j in js)
        client.close()

    ideal = math.ceil(n / cap) * delay
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}")
    print(f"{n} judgments, server delay {delay * 1000:.0f} ms, server concurrency cap {cap}")
    print(f"concurrent rerank wall: {wall:.3f} s  ideal: {ideal:.3f} s  "
          f"ratio: {wall / ideal:.3f}x (target <= 1.15)")
    print(f"sequential loop wall:   {seq_wall:.3f} s"
          f"{'' if seq_n == n else f' (extrapolated from {seq_n})'}  "
          f"speed-up: {seq_wall / wall:.1f}x (target >= 20)")
    print(f"client CPU per judgment: {cpu / n * 1000:.3f} ms (target <= 0.5)")
    if traced is not None:
        print(traced)
    print(f"{args.queries} queries x {args.per_query} passages: one rerank per query "
          f"{one_by_one:.3f} s  rerank_many {many_wall:.3f} s  "
          f"ratio: {one_by_one / many_wall:.2f}x (target >= 1.5)")


if __name__ == "__main__":
    main()
