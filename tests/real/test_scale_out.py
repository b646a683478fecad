"""``examples/scale_out/run.sh`` run as a user runs it: two real vLLM replicas behind the
real ``vllm-router``, rank1-server's gateway in front, LangChain's ``CohereRerank`` in a
``ContextualCompressionRetriever`` on top; everything it started is stopped. About 1-2
minutes here (the two vLLM start-ups)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from .servers import vllm_python

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_scale_out_example() -> None:
    env = {**os.environ, "RANK1_VLLM_PYTHON": os.fspath(vllm_python()),
           "PYTHON": sys.executable, "QUERIES": "6"}
    router = Path(sys.executable).parent / "vllm-router"
    assert router.exists(), "vllm-router is in the test extra (pip install -e '.[test]')"
    run = subprocess.run(["bash", "examples/scale_out/run.sh"], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=900)
    out = run.stdout
    assert run.returncode == 0, out[-3000:] + run.stderr[-3000:]
    # the demo model's verdicts, best first, through both replicas
    assert "'how do bees make honey from nectar': honey 0.966, hives 0.736" in out, out
    assert "'why do volcanoes erupt': volcano 0.966" in out, out
    assert "'what is lava made of magma': magma 0.876, volcano 0.465" in out, out
    # the router spread the 56 judgments (7 calls of 8 documents) over both replicas
    served = {m[0]: int(m[1]) for m in re.findall(r"^replica (\w): (\d+) vLLM requests$",
                                                  out, re.M)}
    assert set(served) == {"a", "b"} and all(served.values()), out
    assert sum(served.values()) == 56, served
    assert "same rankings" in out and "stopped everything" in out, out
    # nothing it started is left running (its services' command lines name their ports)
    ports = sorted(set(re.findall(r"--port (\d+)", out)))
    assert len(ports) == 5, out  # two replicas, the router, two gateways
    alive = subprocess.run(["pgrep", "-af", "--", f"--port ({'|'.join(ports)})( |$)"],
                           capture_output=True, text=True)
    assert not alive.stdout.strip(), f"still running: {alive.stdout}"
