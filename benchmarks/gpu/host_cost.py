"""The engine's host-side work per slot per decode step, measured in-process on CPU.

Runs rank1-server's :class:`~rank1_server.engine.Engine` directly (no HTTP) on a small
Q4_0 model with a full 152,064-token vocabulary: S requests in S slots, each greedy for
``--steps`` tokens with rank1's first-request parameters (stop strings, stop token
sequences, the ``</think>`` probe). ``llama_decode`` (plus ``llama_synchronize``) is timed
by wrapping the context's ``decode``; everything else the engine thread does between two
decodes (filling the batch, reading logits, argmax, text, stop checks, placement) is host
work. It prints, per slot count, microseconds of host work per slot per step, as the engine
thread's CPU time (robust on a shared machine; see :func:`measure`).

The measurement does not depend on the engine's own counters, so the same script measures
the engine before and after a change.

Usage::

    python benchmarks/gpu/host_cost.py [--slots 1,8,16,32] [--steps 48] [--vocab 152064]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from q4_model import Shape, write_q4_0_model  # noqa: E402
from rank1_server.backend import LlamaContext, LlamaModel, import_llama_cpp  # noqa: E402
from rank1_server.engine import Engine, GenParams  # noqa: E402
from rank1_server.rank1 import Rank1Vocab  # noqa: E402

from rank1_integrations.protocol import STOP_STRINGS, THINK_END  # noqa: E402


def load_model(path: Path, *, repack: bool) -> LlamaModel:
    """Load a GGUF on CPU, with llama.cpp's weight repacking on or off (``use_extra_bufts``:
    off avoids the AMX kernels that sandboxes like this one trap with SIGILL)."""
    lib = import_llama_cpp()
    params = lib.llama_model_default_params()
    params.n_gpu_layers = 0
    params.use_extra_bufts = repack
    ptr = lib.llama_model_load_from_file(str(path).encode(), params)
    if not ptr:
        raise RuntimeError(f"llama.cpp could not load {path}")
    return LlamaModel(lib, ptr, str(path))


def measure(model_path: Path, slots: int, steps: int, threads: int, repack: bool) -> dict:
    """Host work of one run: ``slots`` requests decoded together for ``steps`` tokens.

    Times are the engine thread's CPU time (``time.thread_time``), which a busy machine's
    other processes do not inflate: with one llama.cpp thread, ``llama_decode`` computes
    on the calling thread, so its CPU time is the decode; the rest of the engine thread's
    CPU time between the first and the last decode is the host work of ``calls - 1`` steps.
    """
    model = load_model(model_path, repack=repack)
    ctx = LlamaContext(model, n_seq=slots, n_ctx_per_seq=256, n_batch=512, n_threads=threads)
    marks: list[tuple[float, float]] = []  # (thread CPU time before, after) per decode
    inner = ctx.decode
    lib = model._lib

    def timed_decode() -> int:
        t = time.thread_time()
        rc = inner()
        lib.llama_synchronize(ctx.ptr)
        marks.append((t, time.thread_time()))
        return rc

    ctx.decode = timed_decode  # type: ignore[method-assign]
    engine = Engine(model, ctx, prefix_cache=False)
    vocab = Rank1Vocab.lookup(model)
    params = GenParams(
        max_tokens=steps, stop=STOP_STRINGS,
        stop_token_seqs=(vocab.think_end + (vocab.true_id,), vocab.think_end + (vocab.false_id,)),
        skip_special_tokens=False, probe_ids=(vocab.true_id, vocab.false_id),
        probe_after=vocab.think_end, probe_after_text=THINK_END,
    )
    # distinct one-token prompts: every decode holds exactly one token per slot
    prompts = [model.tokenize(f" word{i}", parse_special=False)[:1] for i in range(slots)]
    engine.start()
    try:
        engine.submit_many([(prompts[0], GenParams(max_tokens=2))])[0].result()  # warm up
        marks.clear()
        gens = [f.result() for f in engine.submit_many([(p, params) for p in prompts])]
    finally:
        engine.stop()
    tokens = sum(len(g.token_ids) for g in gens)
    if tokens != slots * steps or len(marks) != steps:
        raise RuntimeError(f"expected {steps} steps of {slots} tokens, got {len(marks)} "
                           f"steps and {tokens} tokens (a request stopped early?)")
    decode = sum(b - a for a, b in marks)
    between = (marks[-1][1] - marks[0][0]) - decode
    host_step = between / (len(marks) - 1)
    return {
        "slots": slots, "steps": len(marks), "tokens": tokens,
        "decode_ms_per_step": 1e3 * decode / len(marks),
        "host_ms_per_step": 1e3 * host_step,
        "host_us_per_slot_step": 1e6 * host_step / slots,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--slots", default="1,8,16,32")
    ap.add_argument("--steps", type=int, default=48, help="tokens per request")
    ap.add_argument("--vocab", type=int, default=152_064)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3, help="runs per slot count (median shown)")
    ap.add_argument("--repack", action="store_true",
                    help="let llama.cpp repack the weights (dies with SIGILL where AMX is trapped)")
    ap.add_argument("--model", type=Path, help="reuse a GGUF instead of writing a 2-layer one")
    args = ap.parse_args()
    tmp = tempfile.TemporaryDirectory()
    model = args.model
    if model is None:
        model = write_q4_0_model(
            Path(tmp.name) / "host.gguf",
            Shape(n_layer=2, n_embd=256, n_ff=512, n_head=4, n_head_kv=2, n_vocab=args.vocab),
        )
    print(f"engine host work, {args.vocab:,}-token logits, threads={args.threads}, "
          f"{args.steps} tokens per slot, median of {args.repeats}")
    print(f"{'slots':>5} {'decode ms/step':>15} {'host ms/step':>13} {'host us/slot/step':>18}")
    for s in [int(x) for x in args.slots.split(",")]:
        runs = [measure(model, s, args.steps, args.threads, args.repack)
                for _ in range(args.repeats)]
        med = {k: statistics.median(r[k] for r in runs)
               for k in ("decode_ms_per_step", "host_ms_per_step", "host_us_per_slot_step")}
        print(f"{s:>5} {med['decode_ms_per_step']:>15.2f} {med['host_ms_per_step']:>13.3f} "
              f"{med['host_us_per_slot_step']:>18.1f}", flush=True)
    tmp.cleanup()


if __name__ == "__main__":
    main()
