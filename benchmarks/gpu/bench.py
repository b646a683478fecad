"""rank1-server vs llama-server on one GPU (or, with ``--cpu``, a small shape on CPU).

The same rank1 judgments (one query, distinct passages, reasoning budget 256; random
weights, so every judgment spends the whole budget and then takes the forced answer: two
requests each) run through

* ``rank1-server`` (this package), ``Rank1Client(mode="rerank")``: one ``/v1/rerank``
  request of S passages per round, so S slots decode together;
* llama.cpp's ``llama-server`` (same llama.cpp source), ``Rank1Client(mode="completions")``
  with S requests in flight,

at S = 1, 8, 16 and 32 slots, every layer on the GPU (``--n-gpu-layers -1`` / ``-ngl 999``),
each server started once with 32 slots. One table comes out, one row per server and S:

* judgments/s and generated tokens/s (reasoning plus forced answers, counted by the server);
* decode steps (``llama_decode`` calls, from each server's ``/metrics``) and ms per step
  (wall time / steps);
* for rank1-server, from its engine counters: ms per step inside ``llama_decode`` (made
  synchronous, so on a GPU it includes copying the logits back), the share of each step
  spent outside it (the engine's host work: argmax over 152k logits per slot, text and
  stop checks, batch filling, prefix placement) and that host work in microseconds per
  slot per step;
* the bandwidth floor: the bytes of the weights one step reads (every tensor but the token
  embeddings, which are only gathered) over the measured copy bandwidth (torch
  device-to-device copy on a GPU, numpy memory copy with ``--cpu``), and the measured step
  time as a multiple of it.

The model is written on first use (``q4_model.py``: rank1-7b's shape, Q4_0, ~4.3 GB;
``--cpu``: 2 layers x 256, 152,064 logits) and reused. ``--out DIR`` also writes the table
and ``results.json`` there, row by row.

Usage::

    python benchmarks/gpu/bench.py --llama-server PATH [--out DIR]      # on the GPU machine
    python benchmarks/gpu/bench.py --cpu --llama-server PATH            # small shape, CPU

``benchmarks/gpu/run.sh`` builds everything on a GPU machine without network and runs this.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))

from q4_model import RANK1_7B, Shape, add_shape_args, shape_from_args, write_q4_0_model  # noqa: E402

#: The small shape of ``--cpu``: what a 2-core CI machine runs in seconds, full vocabulary.
CPU_SHAPE = Shape(n_layer=2, n_embd=256, n_ff=512, n_head=4, n_head_kv=2, n_vocab=152_064)

QUERY = "how do tides form along the coast"
WORDS = (
    "the moon pulls ocean water toward it while the earth turns beneath and coastal "
    "harbours see the sea level rise and fall twice each day as gravity and rotation "
    "combine with the shape of the shore to make some tides far larger than others"
).split()


def passages(n: int) -> list[str]:
    """``n`` distinct passages of ~40 words (rotations of one text, numbered)."""
    return [f"{i}. " + " ".join(WORDS[i % len(WORDS):] + WORDS[: i % len(WORDS)])
            for i in range(n)]


@dataclass
class Row:
    """One line of the table."""

    server: str
    slots: int
    judgments: int
    verdicts: int
    forced: int
    #: The server generated exactly judgments x (budget + 1) tokens: every judgment spent
    #: the whole budget, then one forced-answer token.
    full_budget: bool
    wall_s: float
    judgments_per_s: float
    gen_tokens: int
    gen_tokens_per_s: float
    steps: int
    ms_per_step: float
    decode_ms_per_step: float | None
    host_share: float | None
    host_us_per_slot_step: float | None
    floor_ms: float
    step_over_floor: float


# ---------------------------------------------------------------------- measurements


def copy_bandwidth(cpu: bool) -> tuple[float, str]:
    """Bytes per second of a large memory copy (read + write counted), and how measured."""
    if cpu:
        import numpy as np

        n = 256 * 2**20
        a, b = np.ones(n, np.uint8), np.empty(n, np.uint8)
        best = float("inf")
        for _ in range(5):
            t = time.perf_counter()
            np.copyto(b, a)
            best = min(best, time.perf_counter() - t)
        return 2 * n / best, "numpy copy of 256 MiB, read + write counted, best of 5"
    import torch

    if not torch.cuda.is_available():
        raise SystemExit("bench: no CUDA device visible to torch (use --cpu for the CPU mode)")
    n = 2**30
    a = torch.empty(n, dtype=torch.uint8, device="cuda")
    b = torch.empty_like(a)
    for _ in range(3):
        b.copy_(a)
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    reps = 20
    start.record()
    for _ in range(reps):
        b.copy_(a)
    end.record()
    torch.cuda.synchronize()
    seconds = start.elapsed_time(end) / 1e3
    name = torch.cuda.get_device_name(0)
    del a, b
    torch.cuda.empty_cache()  # leave the GPU's memory to the servers
    return (2 * n * reps / seconds,
            f"torch device-to-device copy of 1 GiB x {reps} on {name}, read + write counted")


def weight_bytes(model: Path) -> tuple[int, int]:
    """(bytes of all tensors, bytes one decode step reads: all but ``token_embd``)."""
    import gguf

    reader = gguf.GGUFReader(str(model))
    total = sum(int(t.n_bytes) for t in reader.tensors)
    embd = sum(int(t.n_bytes) for t in reader.tensors if t.name == "token_embd.weight")
    return total, total - embd


def scrape(url: str) -> dict[str, float]:
    """A Prometheus text page as {name: value} (unlabelled samples only)."""
    text = httpx.get(url, timeout=30).text
    out: dict[str, float] = {}
    for line in text.splitlines():
        m = re.match(r"^([A-Za-z_:][A-Za-z0-9_:]*) ([-+0-9.eEinfa]+)$", line)
        if m:
            out[m.group(1)] = float(m.group(2))
    return out


# ---------------------------------------------------------------------- servers


def env() -> dict[str, str]:
    paths = [str(ROOT / "src"), str(ROOT / "local_server"), os.environ.get("PYTHONPATH", "")]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p)}


def rank1_server_command(args: argparse.Namespace, model: Path, port: int) -> list[str]:
    cmd = [sys.executable, "-m", "rank1_server.cli", "--model", str(model), "--port", str(port),
           "--parallel", str(max(args.slots)), "--n-ctx", str(args.n_ctx),
           "--threads", str(args.threads), "--n-gpu-layers", str(args.n_gpu_layers),
           "--batch-size", "512", "--max-reasoning-tokens", str(args.budget),
           "--log-level", "warning"]
    if args.cpu:
        cmd.append("--no-repack")  # the AMX trap of sandboxed CPUs (see README)
    return cmd


def llama_server_command(args: argparse.Namespace, model: Path, port: int) -> list[str]:
    slots = max(args.slots)
    cmd = [str(args.llama_server), "-m", str(model), "--port", str(port), "--host", "127.0.0.1",
           "-np", str(slots), "-c", str(args.n_ctx * slots), "-ngl",
           "999" if args.n_gpu_layers < 0 else str(args.n_gpu_layers),
           "-t", str(args.threads), "-tb", str(args.threads), "-b", "512", "-ub", "512",
           "-fa", "off", "--no-kv-unified", "--metrics"]
    if args.cpu:
        cmd.append("--no-repack")
    return cmd


# ---------------------------------------------------------------------- runs


def run_server(name: str, args: argparse.Namespace, model: Path, floor_s: float,
               log_dir: Path, emit) -> None:
    from rank1_integrations import Rank1Client
    from rank1_integrations._spawn import free_port, spawn_server
    from rank1_integrations.protocol import VerdictSource

    port = free_port()
    root = f"http://127.0.0.1:{port}"
    if name == "rank1-server":
        cmd, mode = rank1_server_command(args, model, port), "rerank"
        keys = ("rank1_decode_calls_total", "rank1_generated_tokens_total",
                "rank1_decode_seconds_total", "rank1_step_seconds_total")
    else:
        cmd, mode = llama_server_command(args, model, port), "completions"
        keys = ("llamacpp:n_decode_total", "llamacpp:tokens_predicted_total", None, None)
    answer_ids = args.answer_ids

    def client(slots: int, budget: int) -> Rank1Client:
        return Rank1Client(base_url=f"{root}/v1", model="bench", mode=mode,
                           concurrency=slots, max_reasoning_tokens=budget, cache=None,
                           timeout=3600, max_retries=0, on_error="keep",
                           answer_token_ids=answer_ids)

    with spawn_server(cmd, port, name=name, env=env(), log=log_dir / f"{name}.log",
                      startup_timeout=600, poll_interval=0.2, stop_timeout=30):
        with client(1, 8) as warm:
            warm.rerank("warm up", ["warm up the engine"])
        for slots in args.slots:
            n = args.rounds * slots
            docs = passages(n)
            before = scrape(f"{root}/metrics")
            t = time.perf_counter()
            with client(slots, args.budget) as c:
                if mode == "rerank":  # one request of `slots` passages per round
                    judgments = [j for r in range(args.rounds)
                                 for j in c.rerank(QUERY, docs[r * slots:(r + 1) * slots])]
                else:
                    judgments = c.rerank(QUERY, docs)
            wall = time.perf_counter() - t
            after = scrape(f"{root}/metrics")
            delta = {k: after.get(k, 0.0) - before.get(k, 0.0) for k in keys if k}
            steps = int(delta[keys[0]])
            gen = int(delta[keys[1]])
            decode_ms = host_share = host_us = None
            if keys[2]:
                dec, step = delta[keys[2]], delta[keys[3]]
                decode_ms = 1e3 * dec / steps
                host_share = (step - dec) / step
                host_us = 1e6 * (step - dec) / gen
            ms = 1e3 * wall / steps
            emit(Row(
                server=name, slots=slots, judgments=len(judgments),
                verdicts=sum(1 for j in judgments if j.ok),
                forced=sum(1 for j in judgments if j.source is VerdictSource.FORCED_ANSWER),
                full_budget=gen == len(judgments) * (args.budget + 1),
                wall_s=wall, judgments_per_s=len(judgments) / wall, gen_tokens=gen,
                gen_tokens_per_s=gen / wall, steps=steps, ms_per_step=ms,
                decode_ms_per_step=decode_ms, host_share=host_share,
                host_us_per_slot_step=host_us, floor_ms=1e3 * floor_s,
                step_over_floor=ms / (1e3 * floor_s),
            ))


HEADER = (f"{'server':<13} {'slots':>5} {'judg':>5} {'judg/s':>8} {'gen tok/s':>10} "
          f"{'steps':>6} {'ms/step':>8} {'decode ms':>9} {'host %':>7} {'host us/slot':>12} "
          f"{'floor ms':>8} {'x floor':>7}  verdicts")


def fmt(row: Row) -> str:
    def opt(v: float | None, spec: str, width: int) -> str:
        return format(v, spec).rjust(width) if v is not None else "n/a".rjust(width)

    note = (f"{row.verdicts}/{row.judgments} ok, {row.forced} forced"
            f"{'' if row.full_budget else ', NOT all full budget + forced answer'}")
    return (f"{row.server:<13} {row.slots:>5} {row.judgments:>5} {row.judgments_per_s:>8.2f} "
            f"{row.gen_tokens_per_s:>10.1f} {row.steps:>6} {row.ms_per_step:>8.2f} "
            f"{opt(row.decode_ms_per_step, '.2f', 9)} "
            f"{opt(None if row.host_share is None else 100 * row.host_share, '.1f', 7)} "
            f"{opt(row.host_us_per_slot_step, '.1f', 12)} {row.floor_ms:>8.3f} "
            f"{row.step_over_floor:>7.1f}  {note}")


#: The reproducibility table's lines, as printed (also appended to ``table.txt``).
REPRO_LINES: list[str] = []


def reproducibility(args: argparse.Namespace, model: Path) -> list[dict[str, object]]:
    """``benchmarks/bench_repro.py``'s comparison on this model and device, in-process on
    rank1-server's engine: the same judgments alone, mixed among others arriving at random
    over the slots, and again from a warm prompt cache; default and deterministic mode."""
    sys.path.insert(0, str(HERE.parent))
    from bench_repro import compare

    out = []
    head = (f"reproducibility: {args.repro_n} judgments alone vs among {args.repro_others} "
            f"others over {args.repro_slots} slots vs warm cache, budget {args.repro_budget}")
    REPRO_LINES.extend([head, f"{'mode':<14} {'loaded: max dscore, flips, chains':>36} "
                        f"{'warm: max dscore, flips, chains':>34} {'loaded j/s':>10} "
                        f"{'bit-identical':>13}"])
    print("\n" + "\n".join(REPRO_LINES), flush=True)
    for det in (False, True):
        c = compare(model, n=args.repro_n, others=args.repro_others, slots=args.repro_slots,
                    budget=args.repro_budget, deterministic=det, threads=args.threads,
                    n_ctx=args.repro_budget + 256, repack=not args.cpu,
                    n_gpu_layers=args.n_gpu_layers, spread_s=args.repro_spread)
        lo, wa = c.loaded_vs_alone, c.warm_vs_alone
        mode = "deterministic" if det else "default"
        REPRO_LINES.append(
            f"{mode:<14} {f'{lo[0]:.2e}, {lo[1]}, {lo[2]}':>36} "
            f"{f'{wa[0]:.2e}, {wa[1]}, {wa[2]}':>34} "
            f"{c.loaded_judgments / c.loaded_seconds:>10.2f} {'yes' if c.identical else 'no':>13}")
        print(REPRO_LINES[-1], flush=True)
        out.append({"mode": mode, "loaded_vs_alone": lo, "warm_vs_alone": wa,
                    "loaded_judgments_per_s": c.loaded_judgments / c.loaded_seconds,
                    "identical": c.identical})
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cpu", action="store_true",
                    help="CPU mode: small shape (2 layers x 256, 152,064 logits), no GPU layers, "
                    "llama.cpp's weight repacking off (sandboxed CPUs trap its AMX kernels)")
    ap.add_argument("--llama-server", type=Path, default=os.environ.get("LLAMA_SERVER"),
                    help="llama.cpp's llama-server binary (env LLAMA_SERVER)")
    ap.add_argument("--skip-llama-server", action="store_true")
    ap.add_argument("--model-only", action="store_true",
                    help="only write (or find) the generated model, print its path, and exit")
    ap.add_argument("--model", type=Path, help="a GGUF to use instead of the generated one")
    ap.add_argument("--work", type=Path, default=HERE / ".work",
                    help="where the generated model is kept (default benchmarks/gpu/.work)")
    ap.add_argument("--out", type=Path, help="also write table.txt and results.json here")
    ap.add_argument("--slots", default="1,8,16,32", help="slot counts (default 1,8,16,32)")
    ap.add_argument("--rounds", type=int, default=2,
                    help="judgments per slot count = rounds x slots (default 2)")
    ap.add_argument("--budget", type=int, default=256, help="reasoning tokens (default 256)")
    ap.add_argument("--n-ctx", type=int, default=None,
                    help="context per slot (default: budget + 256)")
    ap.add_argument("--threads", type=int, default=None,
                    help="llama.cpp threads for both servers (default: rank1-server's default)")
    ap.add_argument("--n-gpu-layers", type=int, default=None,
                    help="layers on the GPU (default -1 = all; 0 with --cpu)")
    ap.add_argument("--skip-repro", action="store_true",
                    help="skip the reproducibility comparison (alone / loaded / warm cache)")
    ap.add_argument("--repro-n", type=int, default=None,
                    help="target judgments of the comparison (default 16; 4 with --cpu)")
    ap.add_argument("--repro-others", type=int, default=None,
                    help="other judgments mixed in (default 48; 8 with --cpu)")
    ap.add_argument("--repro-slots", type=int, default=None,
                    help="slots of the comparison (default 16; 4 with --cpu)")
    ap.add_argument("--repro-budget", type=int, default=None,
                    help="reasoning budget of the comparison (default 64; 8 with --cpu)")
    ap.add_argument("--repro-spread", type=float, default=None,
                    help="seconds over which the loaded run's judgments arrive "
                    "(default 1; 0.3 with --cpu)")
    add_shape_args(ap)
    args = ap.parse_args(argv)
    for name, gpu, cpu in (("repro_n", 16, 4), ("repro_others", 48, 8), ("repro_slots", 16, 4),
                           ("repro_budget", 64, 8), ("repro_spread", 1.0, 0.3)):
        if getattr(args, name) is None:
            setattr(args, name, cpu if args.cpu else gpu)
    args.slots = [int(s) for s in args.slots.split(",")]
    if min(args.slots) < 1 or args.rounds < 1 or args.budget < 1:
        ap.error("--slots, --rounds and --budget must be positive")
    if not (args.skip_llama_server or args.model_only) and (args.llama_server is None
                                       or not os.access(args.llama_server, os.X_OK)):
        ap.error(f"--llama-server: not an executable: {args.llama_server} "
                 "(build it with scripts/build_llama_server.sh, or pass --skip-llama-server)")
    args.n_ctx = args.n_ctx or args.budget + 256
    if args.n_gpu_layers is None:
        args.n_gpu_layers = 0 if args.cpu else -1
    sys.path.insert(0, str(ROOT / "local_server"))
    from rank1_server.backend import default_threads

    args.threads = args.threads or default_threads()

    shape = shape_from_args(args, CPU_SHAPE if args.cpu else RANK1_7B)
    model = args.model
    if model is None:
        model = args.work / (f"q4_0-{shape.n_layer}x{shape.n_embd}x{shape.n_ff}-"
                             f"h{shape.n_head}-{shape.n_head_kv}-v{shape.n_vocab}.gguf")
        if not model.is_file():
            t = time.perf_counter()
            write_q4_0_model(model.with_suffix(".tmp"), shape).rename(model)
            print(f"wrote {model.name} ({model.stat().st_size / 2**30:.2f} GiB) in "
                  f"{time.perf_counter() - t:.1f} s", flush=True)
    if args.model_only:
        print(model)
        return 0
    from rank1_server.models.vocab import build_vocabulary

    from rank1_integrations.protocol import ANSWER_FALSE, ANSWER_TRUE

    vocab = build_vocabulary(think_end_special=True)
    args.answer_ids = (vocab.token_id(ANSWER_TRUE), vocab.token_id(ANSWER_FALSE))

    total, per_step = weight_bytes(model)
    bw, how = copy_bandwidth(args.cpu)
    floor_s = per_step / bw
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores; threads={args.threads}, "
          f"n_gpu_layers={args.n_gpu_layers}{' (CPU mode)' if args.cpu else ''}")
    print(f"model: {model.name}: {shape.n_layer} layers x {shape.n_embd}, FFN {shape.n_ff}, "
          f"{shape.n_head}/{shape.n_head_kv} heads, {shape.n_vocab:,} logits, Q4_0, "
          f"{total / 2**20:,.1f} MiB ({per_step / 2**20:,.1f} MiB read per step)")
    print(f"copy bandwidth: {bw / 1e9:,.1f} GB/s ({how}); floor {1e3 * floor_s:.3f} ms/step")
    print(f"judgments: budget {args.budget}, forced answer every time (random weights), "
          f"{args.rounds} x slots per row\n", flush=True)

    out = args.out
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    rows: list[Row] = []
    lines = [HEADER]
    print(HEADER, flush=True)

    def emit(row: Row) -> None:
        rows.append(row)
        lines.append(fmt(row))
        print(lines[-1], flush=True)
        if out is not None:
            (out / "table.txt").write_text("\n".join(lines) + "\n")
            (out / "results.json").write_text(json.dumps({
                "model": model.name, "shape": asdict(shape), "weight_bytes": total,
                "bytes_per_step": per_step, "copy_bandwidth": bw, "bandwidth_how": how,
                "threads": args.threads, "n_gpu_layers": args.n_gpu_layers, "cpu": args.cpu,
                "budget": args.budget, "rows": [asdict(r) for r in rows],
            }, indent=2))

    servers = ["rank1-server"] + ([] if args.skip_llama_server else ["llama-server"])
    with tempfile.TemporaryDirectory() as tmp:
        log_dir = out or Path(tmp)
        for name in servers:
            run_server(name, args, model, floor_s, log_dir, emit)
    repro: list[dict[str, object]] = []
    if not args.skip_repro:
        repro = reproducibility(args, model)
        if out is not None:
            (out / "table.txt").write_text("\n".join(lines + ["", *REPRO_LINES]) + "\n")
            results = json.loads((out / "results.json").read_text()) if rows else {}
            results["reproducibility"] = repro
            (out / "results.json").write_text(json.dumps(results, indent=2))
    if any(r.server == "llama-server" and r.verdicts < r.judgments for r in rows):
        print("\nllama-server ignores allowed_token_ids: its forced answers on random weights "
              "rarely list ' true'/' false'\nin the top-20, so those judgments end without a "
              "verdict after the same two requests (same token work).")
    bad = [r for r in rows if not r.full_budget
           or (r.server == "rank1-server" and (r.forced, r.verdicts) != (r.judgments,) * 2)]
    if bad:
        print("\nwarning: some judgments did not spend the whole budget and take the forced "
              "answer; the rows above are not the intended worst case", flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
