"""Re-record the real servers' responses that the client's unit tests replay.

    bash scripts/record_fixtures.sh        # = python -m tests.real.record

For each real server (rank1-server, llama-server, llama-cpp-python's server), model (the
demo model, SmolLM2 Q4_1) and client mode it serves, one ``Rank1Client.judge_all`` of two
passages runs through :class:`~rank1_integrations.testing.recording.RecordingTransport`;
the exchanges and the judgments the client made of them are written to
``tests/client/recorded/<server>-<model>-<mode>.json``. Completions mode is recorded one
step (``two_step="off"``) and, on llama-server, also two steps (``-two-step``).

vLLM (``vllm``, its CPU build) serves the demo model's Hugging Face copy: completions and
chat, each also with a budget that cuts the chain (``-cut``: the forced answer), and chat
from a second vLLM started with ``--reasoning-parser deepseek_r1`` (``vllm-reasoning``).

    bash scripts/record_fixtures.sh vllm vllm-reasoning   # only those
"""

from __future__ import annotations

import asyncio
import json
import sys
from contextlib import ExitStack
from pathlib import Path

import httpx

from rank1_integrations import Rank1Client
from rank1_integrations.testing.recording import RecordingTransport

from .conftest import BUDGET, MODEL_NAME, model_path
from .servers import (
    hf_demo_model,
    llama_cpp_python_server,
    llama_server,
    llama_server_binary,
    vllm_server,
)

OUT = Path(__file__).resolve().parents[1] / "client" / "recorded"
QUERY = "how do bees make honey from nectar"
PASSAGES = [
    "Worker bees collect nectar from flowers and make honey in the hive.",
    "A volcano erupts when magma rises through the crust.",
]
MODES = {
    "rank1-server": ("completions", "chat", "rerank"),
    "llama-server": ("completions", "completions-two-step", "chat"),
    "llama-cpp-python": ("completions", "chat"),
    "vllm": ("completions", "completions-cut", "chat", "chat-cut"),
    "vllm-reasoning": ("chat",),
}
#: The models each server is recorded on (vLLM reads the demo model's HF copy only).
MODELS = {"vllm": ("demo",), "vllm-reasoning": ("demo",)}
#: A budget that cuts the demo model's chain, for the ``-cut`` recordings.
CUT_BUDGET = 6


def _start(kind: str, model: str, stack: ExitStack) -> str:
    from rank1_server.testing import running_server

    if kind.startswith("vllm"):
        extra = ("--reasoning-parser", "deepseek_r1") if kind == "vllm-reasoning" else ()
        return stack.enter_context(vllm_server(hf_demo_model(), name=MODEL_NAME, extra=extra))
    path = model_path(model)
    if kind == "rank1-server":
        return stack.enter_context(running_server(
            path, parallel=2, n_ctx=2048, threads=1, model_name=MODEL_NAME,
            max_reasoning_tokens=BUDGET[model], repack=False,
        ))
    if kind == "llama-server":
        return stack.enter_context(
            llama_server(llama_server_binary(), path, parallel=2, alias=MODEL_NAME)
        )
    return stack.enter_context(llama_cpp_python_server(path, alias=MODEL_NAME))


async def record(base_url: str, model: str, variant: str) -> dict:
    """One recording: ``variant`` is the client mode, with ``-cut`` (a budget that cuts
    the chain) or ``-two-step`` (``two_step="on"``; else ``"off"``) after it."""
    mode = variant.split("-")[0]
    budget = CUT_BUDGET if variant.endswith("-cut") else BUDGET[model]
    two_step = "on" if variant.endswith("-two-step") else "off"
    recorder = RecordingTransport()
    async with httpx.AsyncClient(transport=recorder, timeout=300) as http:
        client = Rank1Client(
            base_url, model=MODEL_NAME, mode=mode, max_reasoning_tokens=budget,
            cache=None, on_error="keep", concurrency=1, max_retries=0, client=http,
            two_step=two_step,
        )
        judgments = await client.ajudge_all(QUERY, PASSAGES)
    return {
        "query": QUERY, "passages": PASSAGES, "mode": mode, "two_step": two_step,
        "model_name": MODEL_NAME,
        "max_reasoning_tokens": budget, "base_url": base_url,
        "exchanges": recorder.exchanges,
        "judgments": [j.model_dump(mode="json") for j in judgments],
    }


def main(argv: list[str]) -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    kinds = argv or list(MODES)
    for kind in kinds:
        for model in MODELS.get(kind, ("demo", "smollm2")):
            with ExitStack() as stack:
                base_url = _start(kind, model, stack)
                for mode in MODES[kind]:
                    data = asyncio.run(record(base_url, model, mode))
                    path = OUT / f"{kind}-{model}-{mode}.json"
                    path.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n")
                    errors = [j["error"] for j in data["judgments"] if j["error"]]
                    print(f"{path.name}: {len(data['exchanges'])} exchanges, "
                          f"{len(errors)} failed judgment(s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
