"""The examples run end to end against the fake server (given by RANK1_BASE_URL) and print
each hit's verdict, score and reasoning, best first."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from rank1_integrations.testing import FakeRank1Server, overlap_score

ROOT = Path(__file__).resolve().parents[2]
QUERY = "What causes ocean tides?"
HIT = re.compile(r"^(\d+)\. \[(relevant|not relevant)\] score=([0-9.]+) id=(\S+)", re.M)


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"example_{name}", ROOT / "examples" / name)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def corpus(name: str) -> dict[str, str]:
    module = load(name)
    if hasattr(module, "DOCUMENTS"):
        return {d.id: d.page_content for d in module.DOCUMENTS}
    return {n.node_id: n.get_content() for n in module.NODES}


@pytest.mark.slow  # a subprocess per example and mode
@pytest.mark.parametrize("name", ["langchain_retriever.py", "llamaindex_query_engine.py"])
@pytest.mark.parametrize("mode", [[], ["--async"]], ids=["sync", "async"])
def test_example_runs(server: FakeRank1Server, name: str, mode: list[str]) -> None:
    env = {**os.environ, "RANK1_BASE_URL": server.base_url, "PYTHONPATH": os.pathsep.join(
        [str(ROOT / "src"), *filter(None, [os.environ.get("PYTHONPATH")])])}
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / name), QUERY, "--top-n", "3", *mode],
        capture_output=True, text=True, env=env, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "Unclosed" not in done.stderr  # it cleans up after itself
    assert f"at {server.base_url}" in done.stdout

    texts = corpus(name)
    expected = sorted(texts, key=lambda pid: -overlap_score(QUERY, texts[pid]))[:3]
    hits = HIT.findall(done.stdout)
    assert [h[0] for h in hits] == ["1", "2", "3"]
    assert [h[3] for h in hits] == expected
    for _, verdict, score, pid in hits:
        p_true = overlap_score(QUERY, texts[pid])
        assert float(score) == pytest.approx(p_true, abs=1e-3)
        if abs(p_true - 0.5) > 0.01:
            assert verdict == ("relevant" if p_true > 0.5 else "not relevant")
    assert done.stdout.count("reasoning: The query asks about") == 3
