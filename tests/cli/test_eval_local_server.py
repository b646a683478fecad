"""``rank1 eval`` end to end on the real engine: the bundled server and demo model, the
demo corpus as a BEIR-style collection, both API modes of the client."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("llama_cpp", reason="needs the bundled server")

from rank1_server.models import DEMO_MODEL_PATH  # noqa: E402
from rank1_server.testing import running_server  # noqa: E402

from rank1_integrations.cli import main  # noqa: E402
from rank1_integrations.data import demo_corpus, demo_queries  # noqa: E402


@pytest.fixture(scope="module")
def demo_server():
    with running_server(DEMO_MODEL_PATH, parallel=8) as base_url:
        yield base_url


@pytest.fixture
def collection(tmp_path):
    corpus, queries = demo_corpus(), demo_queries()
    (tmp_path / "corpus.jsonl").write_text(
        "".join(json.dumps({"_id": d["id"], "title": d["title"], "text": d["text"]}) + "\n"
                for d in corpus))
    (tmp_path / "queries.tsv").write_text("".join(f"{q['id']}\t{q['text']}\n" for q in queries))
    (tmp_path / "qrels.trec").write_text("".join(
        f"{q['id']} 0 {doc} {grade}\n" for q in queries for doc, grade in q["relevance"].items()))
    # an uninformed first stage: every document, in reverse id order
    ids = sorted((d["id"] for d in corpus), reverse=True)
    (tmp_path / "run.trec").write_text("".join(
        f"{q['id']} Q0 {doc} {rank} {len(ids) - rank} first\n"
        for q in queries for rank, doc in enumerate(ids, start=1)))
    return tmp_path


@pytest.mark.parametrize("mode", ["completions", "rerank"])
def test_eval_reranks_the_demo_collection_with_the_real_engine(
    demo_server, collection, capsys, mode
):
    args = [
        "eval", "--queries", str(collection / "queries.tsv"),
        "--corpus", str(collection / "corpus.jsonl"), "--run", str(collection / "run.trec"),
        "--qrels", str(collection / "qrels.trec"), "--store", str(collection / "store.sqlite"),
        "--out", str(collection / "rank1.trec"), "--json", "--no-progress",
        "--base-url", demo_server, "--mode", mode, "--max-reasoning-tokens", "64",
    ]
    assert main(args) == 0
    report = json.loads(capsys.readouterr().out)
    ndcg = report["metrics"]["nDCG@10"]
    assert ndcg["first_stage"] < 0.6
    assert ndcg["rank1"] >= 0.9
    assert report["failed"] == 0
    assert report["sources"]["answer_logprobs"] == report["pairs"] == 8 * 16
    lines = (collection / "rank1.trec").read_text().splitlines()
    assert len(lines) == 8 * 16

    # the rerun is served from the store: no judgment is made again
    assert main(args) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["from_store"] == again["pairs"] and again["judged_now"] == 0
    assert again["metrics"] == report["metrics"]
