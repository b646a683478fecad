"""Are rank1-server's verdicts the same alone, under load and from the prompt cache?

The same ``--n`` target judgments (one query, distinct passages) run three ways on
rank1-server's engine (``Rank1Judge``, what ``/v1/rerank`` runs):

* **alone**: a fresh engine, one judgment at a time;
* **loaded**: another fresh engine, the targets mixed among ``--others`` other judgments
  (other queries, other passages) that all arrive at random times over ``--slots`` slots;
* **warm**: right after that, on the same engine, the targets again one at a time: every
  prompt is now in the prompt cache.

For each of loaded and warm against alone it reports the largest |Δscore|, the verdicts
that flipped and the chains that differ; and the judgments/s of the loaded run. With
``--deterministic`` (``rank1-server --deterministic``) all three must agree bit for bit.

Models (``--models``): ``f16``, a generated 4 x 256 f16 model with 151,936-token logits
(random weights: every chain spends the whole budget and takes the forced answer), and
``smollm2``, SmolLM2-135M-Instruct Q4_1, a real quantized model
(``scripts/fetch_test_model.sh``; ``$RANK1_TEST_GGUF``).

Run: ``python benchmarks/bench_repro.py [--n 16] [--others 48] [--slots 16] [--budget 48]``
(adds a side-by-side cost table of deterministic mode at ``--cost-slots`` 1, 8, 16).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench_server import QUERY, WORDS  # the benchmarks' one query and passage text
from rank1_server.backend import LlamaContext, LlamaModel
from rank1_server.engine import Engine
from rank1_server.rank1 import Document, Rank1Judge, Rank1Vocab

from rank1_integrations.judgment import Judgment

OTHER_QUERIES = ("what is photosynthesis", "who wrote the odyssey", "how do vaccines work")


def passage(i: int, words: int = 30) -> str:
    """Passage ``i``: a numbered rotation of one text (distinct for distinct ``i``)."""
    k = i % len(WORDS)
    return f"{i}. " + " ".join((WORDS[k:] + WORDS[:k])[:words])


@dataclass
class Comparison:
    """One run of the three ways, and how far they agree."""

    alone: list[Judgment]
    loaded: list[Judgment]
    warm: list[Judgment]
    loaded_seconds: float
    loaded_judgments: int

    @staticmethod
    def _diff(a: list[Judgment], b: list[Judgment]) -> tuple[float, int, int]:
        delta = max(abs(x.score - y.score) for x, y in zip(a, b, strict=True))
        flips = sum(x.relevant != y.relevant for x, y in zip(a, b, strict=True))
        chains = sum(x.reasoning != y.reasoning for x, y in zip(a, b, strict=True))
        return delta, flips, chains

    @property
    def loaded_vs_alone(self) -> tuple[float, int, int]:
        """(max |Δscore|, verdict flips, chains that differ)."""
        return self._diff(self.alone, self.loaded)

    @property
    def warm_vs_alone(self) -> tuple[float, int, int]:
        return self._diff(self.alone, self.warm)

    @property
    def identical(self) -> bool:
        """Scores equal bit for bit and chains equal, in both comparisons."""
        return all(
            x.score == y.score and x.reasoning == y.reasoning and x.source == y.source
            for other in (self.loaded, self.warm)
            for x, y in zip(self.alone, other, strict=True)
        )


def _judge(path: Path, slots: int, *, deterministic: bool, threads: int | None, n_ctx: int,
           repack: bool, n_gpu_layers: int = 0) -> Rank1Judge:
    model = LlamaModel.load(path, n_gpu_layers=n_gpu_layers, repack=repack)
    ctx = LlamaContext(model, n_seq=slots, n_ctx_per_seq=n_ctx, n_threads=threads,
                       n_batch=max(512, slots))
    engine = Engine(model, ctx, deterministic=deterministic)
    engine.start()
    return Rank1Judge(engine, Rank1Vocab.lookup(model))


async def _one(judge: Rank1Judge, query: str, text: str, budget: int) -> Judgment:
    result = await judge.judge_many(query, [Document(text)], max_reasoning_tokens=budget)
    return result.judgments[0]


def compare(
    path: Path, *, n: int = 16, others: int = 48, slots: int = 16, budget: int = 48,
    deterministic: bool = False, threads: int | None = 1, n_ctx: int = 1024,
    repack: bool = False, spread_s: float = 2.0, seed: int = 0, n_gpu_layers: int = 0,
) -> Comparison:
    """Run the targets alone, loaded and warm (see the module docstring)."""
    targets = [passage(i) for i in range(n)]

    async def alone() -> list[Judgment]:
        judge = _judge(path, slots, deterministic=deterministic, threads=threads,
                       n_ctx=n_ctx, repack=repack, n_gpu_layers=n_gpu_layers)
        try:
            return [await _one(judge, QUERY, t, budget) for t in targets]
        finally:
            judge.engine.stop()

    async def loaded_then_warm() -> tuple[list[Judgment], list[Judgment], float]:
        rng = random.Random(seed)
        work = [(QUERY, t, i) for i, t in enumerate(targets)]
        work += [(rng.choice(OTHER_QUERIES + (QUERY,)), passage(n + j), None)
                 for j in range(others)]
        rng.shuffle(work)
        delays = sorted(rng.uniform(0, spread_s) for _ in work)
        judge = _judge(path, slots, deterministic=deterministic, threads=threads,
                       n_ctx=n_ctx, repack=repack, n_gpu_layers=n_gpu_layers)
        try:
            async def arrive(delay: float, query: str, text: str) -> Judgment:
                await asyncio.sleep(delay)
                return await _one(judge, query, text, budget)

            start = time.perf_counter()
            got = await asyncio.gather(
                *(arrive(d, q, t) for d, (q, t, _) in zip(delays, work, strict=True))
            )
            seconds = time.perf_counter() - start
            by_target = {i: j for (_, _, i), j in zip(work, got, strict=True) if i is not None}
            loaded = [by_target[i] for i in range(n)]
            warm = [await _one(judge, QUERY, t, budget) for t in targets]
            return loaded, warm, seconds
        finally:
            judge.engine.stop()

    first = asyncio.run(alone())
    loaded, warm, seconds = asyncio.run(loaded_then_warm())
    return Comparison(first, loaded, warm, seconds, n + others)


def throughput(path: Path, *, slots: int, deterministic: bool, n: int, budget: int,
               threads: int, n_ctx: int, repack: bool) -> float:
    """Judgments/s of ``n`` judgments sent together (one query, distinct passages)."""
    judge = _judge(path, slots, deterministic=deterministic, threads=threads, n_ctx=n_ctx,
                   repack=repack)
    try:
        docs = [Document(passage(i)) for i in range(n)]
        start = time.perf_counter()
        asyncio.run(judge.judge_many(QUERY, docs, max_reasoning_tokens=budget))
        return n / (time.perf_counter() - start)
    finally:
        judge.engine.stop()


def _models(names: list[str], tmp: Path) -> dict[str, tuple[Path, bool]]:
    """name -> (path, repack); repacking off for the quantized model (sandboxes trap AMX)."""
    out: dict[str, tuple[Path, bool]] = {}
    for name in names:
        if name == "f16":
            from rank1_server.models import write_random_model

            out[name] = (write_random_model(tmp / "f16.gguf", n_layer=4, n_embd=256,
                                            n_vocab=151_936, dtype="f16"), True)
        elif name == "smollm2":
            gguf = os.environ.get("RANK1_TEST_GGUF")
            if not gguf:
                raise SystemExit("bench_repro: set RANK1_TEST_GGUF "
                                 "(RANK1_TEST_GGUF=$(bash scripts/fetch_test_model.sh))")
            out[name] = (Path(gguf), False)
        else:
            raise SystemExit(f"bench_repro: unknown model {name!r} (f16, smollm2)")
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default="f16,smollm2")
    ap.add_argument("--n", type=int, default=16)
    ap.add_argument("--others", type=int, default=48)
    ap.add_argument("--slots", type=int, default=16)
    ap.add_argument("--budget", type=int, default=48)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--cost-slots", default="1,8,16")
    ap.add_argument("--cost-n", type=int, default=16)
    args = ap.parse_args()
    print(f"# {platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}, "
          f"{args.threads} llama.cpp thread(s), budget {args.budget}, "
          f"{args.n} targets + {args.others} others over {args.slots} slots")
    with tempfile.TemporaryDirectory() as tmp:
        models = _models(args.models.split(","), Path(tmp))
        print("\n| model | mode | loaded vs alone: max Δscore, flips, chains | "
              "warm vs alone: max Δscore, flips, chains | bit-identical |")
        print("|---|---|---|---|---|")
        for name, (path, repack) in models.items():
            for det in (False, True):
                c = compare(path, n=args.n, others=args.others, slots=args.slots,
                            budget=args.budget, deterministic=det, threads=args.threads,
                            repack=repack)
                lo, wa = c.loaded_vs_alone, c.warm_vs_alone
                print(f"| {name} | {'deterministic' if det else 'default'} | "
                      f"{lo[0]:.2e}, {lo[1]}, {lo[2]} | {wa[0]:.2e}, {wa[1]}, {wa[2]} | "
                      f"{'yes' if c.identical else 'no'} |", flush=True)
        print("\n| model | slots | default j/s | deterministic j/s | deterministic/default |")
        print("|---|---:|---:|---:|---:|")
        for name, (path, repack) in models.items():
            for slots in (int(s) for s in args.cost_slots.split(",")):
                # side by side: default, deterministic, default again (the mean of the two)
                runs = [throughput(path, slots=slots, deterministic=det, n=args.cost_n,
                                   budget=args.budget, threads=args.threads, n_ctx=1024,
                                   repack=repack) for det in (False, True, False)]
                base = (runs[0] + runs[2]) / 2
                print(f"| {name} | {slots} | {base:.2f} | {runs[1]:.2f} | "
                      f"{runs[1] / base:.2f}x |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
