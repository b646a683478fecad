"""Re-record the real servers' responses that the client's unit tests replay.

    bash scripts/record_fixtures.sh        # = python -m tests.real.record

For each real server (rank1-server, llama-server, llama-cpp-python's server), model (the
demo model, SmolLM2 Q4_1) and client mode it serves, one ``Rank1Client.rerank`` of two
passages runs through :class:`~rank1_integrations.testing.recording.RecordingTransport`;
the exchanges and the judgments the client made of them are written to
``tests/client/recorded/<server>-<model>-<mode>.json``. Completions mode is recorded one
step (``two_step="off"``) and, on the servers in :data:`TWO_STEP`, also two steps
(``<server>-<model>-completions-two-step.json``).
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
from .servers import llama_cpp_python_server, llama_server, llama_server_binary

OUT = Path(__file__).resolve().parents[1] / "client" / "recorded"
QUERY = "how do bees make honey from nectar"
PASSAGES = [
    "Worker bees collect nectar from flowers and make honey in the hive.",
    "A volcano erupts when magma rises through the crust.",
]
MODES = {
    "rank1-server": ("completions", "chat", "rerank"),
    "llama-server": ("completions", "chat"),
    "llama-cpp-python": ("completions", "chat"),
}
#: Servers whose completions mode is also recorded with ``two_step="on"``.
TWO_STEP = ("llama-server",)


def _start(kind: str, model: str, stack: ExitStack) -> str:
    from rank1_server.testing import running_server

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


async def record(base_url: str, model: str, mode: str, two_step: str = "off") -> dict:
    recorder = RecordingTransport()
    async with httpx.AsyncClient(transport=recorder, timeout=300) as http:
        client = Rank1Client(
            base_url, model=MODEL_NAME, mode=mode, max_reasoning_tokens=BUDGET[model],
            cache=None, on_error="keep", concurrency=1, max_retries=0, client=http,
            two_step=two_step,
        )
        judgments = await client.ajudge_all(QUERY, PASSAGES)
    return {
        "query": QUERY, "passages": PASSAGES, "mode": mode, "two_step": two_step,
        "model_name": MODEL_NAME,
        "max_reasoning_tokens": BUDGET[model], "base_url": base_url,
        "exchanges": recorder.exchanges,
        "judgments": [j.model_dump(mode="json") for j in judgments],
    }


def main(argv: list[str]) -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    kinds = argv or list(MODES)
    for kind in kinds:
        for model in ("demo", "smollm2"):
            with ExitStack() as stack:
                base_url = _start(kind, model, stack)
                runs = [(mode, "off", mode) for mode in MODES[kind]]
                if kind in TWO_STEP:
                    runs.append(("completions", "on", "completions-two-step"))
                for mode, two_step, name in runs:
                    data = asyncio.run(record(base_url, model, mode, two_step))
                    path = OUT / f"{kind}-{model}-{name}.json"
                    path.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n")
                    errors = [j["error"] for j in data["judgments"] if j["error"]]
                    print(f"{path.name}: {len(data['exchanges'])} exchanges, "
                          f"{len(errors)} failed judgment(s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
