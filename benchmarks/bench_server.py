"""rank1-server throughput: continuous batching vs one at a time vs llama-cpp-python's server.

On a generated mid-size GGUF (8 layers, 512 wide, Qwen2.5-sized 151,936-token logits, f16;
random weights, so every judgment spends its whole reasoning budget and then takes the
forced answer: the worst case, 2 requests per judgment), the script runs the same 16
rank1 judgments (same query, same 16 passages, same budget) and prints, side by side in
one run:

* ``rank1-server``, ``Rank1Client(mode="rerank")``: one request with the 16 passages
  (batched together) vs 16 requests one after another (target >= 3x);
* ``rank1-server``, ``Rank1Client(mode="completions")`` with 16 requests in flight vs 1;
* llama-cpp-python's own server (``python -m llama_cpp.server``, ``logits_all`` on, which
  its logprobs need) through ``Rank1Client(mode="completions")`` with 16 requests in
  flight: it serves one at a time and sorts the whole vocabulary at every token (target:
  rank1-server >= 10x faster).

Each server runs in its own process with the same thread count. Judgments per second and
generated tokens per second (reasoning + forced answers) are printed for each setup.

Needs the ``server`` extra, plus for the llama-cpp-python baseline
``pip install sse-starlette starlette-context pydantic-settings`` (skip it with
``--skip-llama-cpp-server``).

Run: ``python benchmarks/bench_server.py [--n 16] [--budget 64] [--threads N]``
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from rank1_server.backend import default_threads
from rank1_server.models import build_vocabulary, write_random_model
from rank1_server.testing import free_port

from rank1_integrations import Rank1Client
from rank1_integrations.judgment import Judgment
from rank1_integrations.protocol import ANSWER_FALSE, ANSWER_TRUE, VerdictSource

ROOT = Path(__file__).resolve().parents[1]
QUERY = "how do tides form along the coast"
WORDS = (
    "the moon pulls ocean water toward it while the earth turns beneath and coastal "
    "harbours see the sea level rise and fall twice each day as gravity and rotation "
    "combine with the shape of the shore to make some tides far larger than others"
).split()


def passages(n: int) -> list[str]:
    """n distinct passages of ~40 words (rotations of one text)."""
    return [" ".join(WORDS[i % len(WORDS):] + WORDS[: i % len(WORDS)]) for i in range(n)]


def env() -> dict[str, str]:
    paths = [str(ROOT / "src"), str(ROOT / "local_server"), os.environ.get("PYTHONPATH", "")]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p)}


def wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {proc.stdout.read().decode()[-2000:]}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise TimeoutError(url)


def start_rank1_server(model: Path, threads: int, n: int, n_ctx: int):
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "rank1_server.cli", "--model", str(model), "--port", str(port),
         "--parallel", str(n), "--n-ctx", str(n_ctx), "--threads", str(threads),
         "--log-level", "warning"],
        env=env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    wait_ready(f"http://127.0.0.1:{port}/health", proc)
    return proc, f"http://127.0.0.1:{port}/v1"


def start_llama_cpp_server(model: Path, threads: int, n_ctx: int):
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--port", str(port),
         "--n_ctx", str(n_ctx), "--logits_all", "true", "--n_threads", str(threads),
         "--n_threads_batch", str(threads), "--verbose", "false"],
        env=env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    wait_ready(f"http://127.0.0.1:{port}/v1/models", proc)
    return proc, f"http://127.0.0.1:{port}/v1"


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()


def tokens(judgments: list[Judgment]) -> int:
    """Generated tokens: the reasoning, plus one per forced answer."""
    return sum(j.reasoning_tokens + int(j.source is VerdictSource.FORCED_ANSWER) for j in judgments)


def run(label: str, fn) -> dict:
    start = time.perf_counter()
    judgments = fn()
    wall = time.perf_counter() - start
    ok = sum(1 for j in judgments if j.ok)
    gen = tokens(judgments) if ok == len(judgments) else None
    row = {"label": label, "wall": wall, "n": len(judgments), "ok": ok, "tokens": gen}
    rate = f"{len(judgments) / wall:7.2f} judgments/s"
    tok = f"{gen / wall:8.1f} gen tok/s" if gen is not None else "      (see note)"
    print(f"  {label:<58} {wall:8.2f} s  {rate}  {tok}  verdicts {ok}/{len(judgments)}",
          flush=True)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=16, help="judgments (default 16)")
    ap.add_argument("--budget", type=int, default=64, help="reasoning tokens (default 64)")
    ap.add_argument("--threads", type=int, default=default_threads())
    ap.add_argument("--dtype", choices=["f16", "f32"], default="f16",
                    help="weights of the generated model (default f16)")
    ap.add_argument("--model", type=Path, help="reuse a GGUF instead of generating one")
    ap.add_argument("--baseline-n", type=int, default=None,
                    help="judgments for the llama-cpp-python server (default: --n; it is slow: "
                    "a smaller number is compared per judgment)")
    ap.add_argument("--skip-llama-cpp-server", action="store_true")
    args = ap.parse_args()

    tmp = tempfile.TemporaryDirectory()
    model = args.model
    if model is None:
        t = time.perf_counter()
        model = write_random_model(Path(tmp.name) / "mid.gguf", n_layer=8, n_embd=512,
                                   n_vocab=151_936, dtype=args.dtype)
        print(f"wrote {model.name} (8 layers x 512, 151,936 logits, {args.dtype}) in "
              f"{time.perf_counter() - t:.1f} s")
    vocab = build_vocabulary(think_end_special=True)
    answer_ids = (vocab.token_id(ANSWER_TRUE), vocab.token_id(ANSWER_FALSE))
    docs = passages(args.n)
    n_ctx = 512
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
          f"threads={args.threads}; {args.n} judgments, reasoning budget {args.budget} "
          f"(random weights: every judgment = budget + forced answer)\n")

    def client(url: str, mode: str, concurrency: int, **kw) -> Rank1Client:
        return Rank1Client(base_url=url, model="bench", mode=mode, concurrency=concurrency,
                           max_reasoning_tokens=args.budget, cache=None, timeout=3600,
                           max_retries=0, answer_token_ids=answer_ids, **kw)

    rows = {}
    proc, url = start_rank1_server(model, args.threads, args.n, n_ctx)
    try:
        with client(url, "rerank", 1) as warm:
            warm.rerank("warm up", ["warm up the engine"])
        print("rank1-server (this package), one process, "
              f"--parallel {args.n} --threads {args.threads}:")
        with client(url, "rerank", 1) as c:
            rows["batched"] = run(f"rerank: 1 request x {args.n} passages (batched)",
                                  lambda: c.rerank(QUERY, docs))
            rows["sequential"] = run(
                f"rerank: {args.n} requests x 1 passage, one after another",
                lambda: [c.rerank(QUERY, [d])[0].model_copy(update={"index": i})
                         for i, d in enumerate(docs)])
        with client(url, "completions", args.n) as c:
            rows["c16"] = run(f"completions mode, {args.n} in flight",
                              lambda: c.rerank(QUERY, docs))
        with client(url, "completions", 1) as c:
            rows["c1"] = run("completions mode, 1 in flight", lambda: c.rerank(QUERY, docs))
    finally:
        stop(proc)

    if not args.skip_llama_cpp_server:
        proc, url = start_llama_cpp_server(model, args.threads, n_ctx)
        try:
            with client(url, "completions", args.n, on_error="keep") as warm:
                warm.rerank("warm up", ["warm up"])
            print(f"\nllama-cpp-python {_version()} server (python -m llama_cpp.server, "
                  f"logits_all, --n_threads {args.threads}):")
            nb = args.baseline_n or args.n
            with client(url, "completions", args.n, on_error="keep") as c:
                rows["llama"] = run(f"completions mode, {nb} judgments, all in flight",
                                    lambda: c.rerank(QUERY, docs[:nb]))
        finally:
            stop(proc)

    b, s = rows["batched"]["wall"], rows["sequential"]["wall"]
    print("\nratios (wall time, same judgments):")
    print(f"  rerank batched vs one after another:            {s / b:5.1f}x  (target >= 3x)")
    print(f"  completions {args.n} in flight vs 1:                  "
          f"{rows['c1']['wall'] / rows['c16']['wall']:5.1f}x")
    if "llama" in rows:
        # per judgment, in case the baseline ran fewer judgments
        lw = rows["llama"]["wall"] / rows["llama"]["n"]
        print(f"  rerank batched vs llama-cpp-python server:      {lw / (b / args.n):5.1f}x"
              "  (target >= 10x; judgments/s ratio)")
        print(f"  completions ({args.n} in flight) vs llama-cpp-python: "
              f"{lw / (rows['c16']['wall'] / args.n):5.1f}x")
        if rows["llama"]["ok"] < rows["llama"]["n"]:
            print("  note: llama-cpp-python ignores allowed_token_ids/logprob_token_ids, so its "
                  "forced answers\n  on random weights rarely list ' true'/' false' in the "
                  "top-20: those judgments end\n  with NoVerdictError after doing the same "
                  "requests (same token work).")
    tmp.cleanup()


def _version() -> str:
    try:
        import llama_cpp

        return llama_cpp.__version__
    except ImportError:  # pragma: no cover
        return "?"


if __name__ == "__main__":
    main()
