"""``rank1 demo`` end to end: the real local server on the bundled demo model, the real
LangChain and LlamaIndex pipelines."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytest.importorskip("llama_cpp", reason="the demo needs the bundled server")

from rank1_server.models import DEMO_MODEL_PATH  # noqa: E402
from rank1_server.testing import running_server  # noqa: E402

from rank1_integrations.cli.demo_cmd import (  # noqa: E402
    TOP_N,
    demo_data,
    run_langchain,
    run_llamaindex,
)
from rank1_integrations.evaluation.metrics import default_metrics, evaluate  # noqa: E402
from rank1_integrations.testing import default_sigint  # noqa: E402


@pytest.fixture(scope="module")
def demo_server():
    with running_server(DEMO_MODEL_PATH, parallel=8) as base_url:
        yield base_url


def test_demo_pipelines_rank_the_bundled_corpus_sensibly(demo_server):
    corpus, queries = demo_data()
    texts = [q["text"] for q in queries]
    qrels = {q["id"]: q["relevance"] for q in queries}
    for run_pipeline in (run_langchain, run_llamaindex):
        results = run_pipeline(demo_server, None, corpus, texts)
        assert list(results) == texts
        run = {}
        for q in queries:
            kept = results[q["text"]]
            assert 1 <= len(kept) <= TOP_N
            scores = [d["score"] for d in kept]
            assert scores == sorted(scores, reverse=True)
            assert all(isinstance(s, float) and 0.0 <= s <= 1.0 for s in scores)
            assert all(d["reasoning"] for d in kept)
            # the pipeline's order as scores (trec_eval breaks score ties by doc id)
            run[q["id"]] = {d["id"]: float(TOP_N - rank) for rank, d in enumerate(kept)}
        ndcg3 = evaluate(qrels, run, default_metrics(ndcg_k=3)).mean["nDCG@3"]
        assert ndcg3 >= 0.9, (run_pipeline.__name__, ndcg3, run)


def test_rank1_demo_command_runs_and_stops_its_server():
    result = subprocess.run(
        [sys.executable, "-m", "rank1_integrations.cli", "demo", "--queries", "1"],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert "development stand-in, not a relevance model" in out
    assert "LangChain ContextualCompressionRetriever" in out
    assert "LlamaIndex VectorStoreIndex query engine" in out
    assert "query: how do bees make honey from nectar" in out
    assert out.count("reasoning: ") == 2 * TOP_N
    assert "1. 0." in out and " relevant " in out
    assert "the local server is stopped" in out


def test_ctrl_c_stops_the_demo_and_its_server():
    import os
    import signal
    from pathlib import Path

    proc = subprocess.Popen(
        [sys.executable, "-m", "rank1_integrations.cli", "demo"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        preexec_fn=default_sigint,  # even when the suite runs as a background job
    )
    try:
        for line in proc.stdout:  # the server is up once the first ranking header shows
            if line.startswith("=== LangChain"):
                break
        children_file = Path(f"/proc/{proc.pid}/task/{proc.pid}/children")
        servers = [int(pid) for pid in children_file.read_text().split()]
        assert servers, "rank1 demo should run rank1-server as a child process"
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130
    assert "interrupted" in rest
    for pid in servers:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            continue
        raise AssertionError(f"rank1-server (pid {pid}) outlived the interrupted demo")


def test_llamaindex_pipeline_leaves_the_global_settings_alone(demo_server):
    from llama_index.core import Settings

    corpus, queries = demo_data()
    before = Settings._llm  # what the caller set (None: not resolved yet)
    run_llamaindex(demo_server, None, corpus, [queries[0]["text"]])
    assert Settings._llm is before
