"""``rank1 eval`` end to end against the loopback fake server: in process and as a
subprocess, resume after SIGKILL, two runs on one store, bad files."""

from __future__ import annotations

import json
import math
import signal
import socket
import sqlite3
import time
from pathlib import Path

import pytest

from rank1_integrations.cli import main
from rank1_integrations.evaluation.io import read_run
from rank1_integrations.testing import FakeRank1Server


def _hand_ndcg10(ranking: list[str], grades: dict[str, int]) -> float:
    """trec_eval's nDCG@10 worked out by hand: gain = grade, discount log2(rank + 1)."""
    dcg = sum(grades.get(d, 0) / math.log2(i + 2) for i, d in enumerate(ranking[:10]))
    ideal = sorted(grades.values(), reverse=True)[:10]
    idcg = sum(g / math.log2(i + 2) for i, g in enumerate(ideal))
    return dcg / idcg


def _ranking(path: Path) -> dict[str, list[str]]:
    run = read_run(path)
    return {qid: sorted(docs, key=docs.__getitem__, reverse=True) for qid, docs in run.items()}


def _rows(store: Path) -> int:
    try:
        conn = sqlite3.connect(f"file:{store}?mode=ro", uri=True, timeout=5)
    except sqlite3.OperationalError:
        return 0
    try:
        return int(conn.execute("SELECT COUNT(*) FROM judgments").fetchone()[0])
    except sqlite3.OperationalError:  # not created yet
        return 0
    finally:
        conn.close()


def test_end_to_end_in_process(collection, fake_server, tmp_path, capsys) -> None:
    out, store, judg = tmp_path / "rank1.trec", tmp_path / "s.sqlite", tmp_path / "j.jsonl"
    args = collection.args(
        "--base-url", fake_server.base_url, "--store", str(store), "--out", str(out),
        "--judgments", str(judg), "--json",
    )  # fmt: skip
    assert main(args) == 0
    report = json.loads(capsys.readouterr().out)

    expected = collection.expected_ranking()
    assert _ranking(out) == expected
    for qid in ("q1", "q2", "q3"):
        grades = collection.grades(qid)
        first = [d[0] for d in collection.first_stage[qid]]
        row = report["per_query"][qid]
        assert row["first_stage"]["nDCG@10"] == pytest.approx(_hand_ndcg10(first, grades))
        assert row["rank1"]["nDCG@10"] == pytest.approx(_hand_ndcg10(expected[qid], grades))
        assert row["judged"] == collection.depth and row["failed"] == 0
    # q3's second relevant document lies beyond the depth and stays at rank 9
    assert expected["q3"].index("d309") == 8
    assert report["per_query"]["q3"]["rank1"]["nDCG@10"] == pytest.approx(
        1 / (1 + 1 / math.log2(3)) * (1 + 1 / math.log2(10))
    )
    ndcg = report["metrics"]["nDCG@10"]
    assert ndcg["rank1"] == pytest.approx(
        sum(_hand_ndcg10(expected[q], collection.grades(q)) for q in ("q1", "q2", "q3")) / 3
    )
    assert ndcg["delta"] == pytest.approx(ndcg["rank1"] - ndcg["first_stage"])
    assert report["unjudged_queries"] == ["q4"]
    assert report["pairs"] == report["judged_now"] == collection.pairs == fake_server.requests
    assert report["from_store"] == 0 and report["failed"] == 0
    assert report["sources"] == {
        "answer_logprobs": collection.pairs, "forced_answer": 0, "text_only": 0, "failed": 0,
    }  # fmt: skip
    assert report["reasoning_tokens"]["total"] > 0

    lines = [json.loads(x) for x in judg.read_text().splitlines()]
    assert len(lines) == collection.pairs
    assert {"qid", "docid", "rank", "score", "reasoning", "source"} <= set(lines[0])

    # a second run reads everything from the store and prints the same numbers
    assert main(args) == 0
    again = json.loads(capsys.readouterr().out)
    assert fake_server.requests == collection.pairs
    assert again["from_store"] == collection.pairs and again["judged_now"] == 0
    assert again["metrics"] == report["metrics"]


def test_text_report(collection, fake_server, tmp_path, capsys) -> None:
    args = collection.args("--base-url", fake_server.base_url, "--store", str(tmp_path / "s"))
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "metric" in text and "first stage" in text and "nDCG@10" in text and "MRR" in text
    assert "per query (nDCG@10)" in text
    assert "answer_logprobs 32" in text
    assert "reasoning tokens:" in text


def test_instruction_is_part_of_the_prompt(collection, fake_server, tmp_path, capsys) -> None:
    store = str(tmp_path / "s.sqlite")
    assert main(collection.args("--base-url", fake_server.base_url, "--store", store)) == 0
    instruction = tmp_path / "instr.txt"
    instruction.write_text("Relevant passages explain {query} in detail.\n")
    args = collection.args(
        "--base-url", fake_server.base_url, "--store", store, "--instruction", f"@{instruction}",
        "--json",
    )  # fmt: skip
    capsys.readouterr()
    assert main(args) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["from_store"] == 0  # other prompts, other keys
    missing = "@" + str(tmp_path / "absent.txt")
    assert main(collection.args("--store", store, "--instruction", missing)) == 1
    assert "absent.txt" in capsys.readouterr().err


@pytest.mark.slow
def test_subprocess_run_with_progress_bar(collection, fake_server, tmp_path, run_cli) -> None:
    out = tmp_path / "rank1.trec"
    args = [a for a in collection.args() if a != "--no-progress"]
    proc = run_cli(
        *args, "--base-url", fake_server.base_url, "--store", str(tmp_path / "s"), "--out", str(out)
    )
    assert proc.returncode == 0, proc.stderr
    assert "nDCG@10" in proc.stdout
    assert _ranking(out) == collection.expected_ranking()
    # the progress bar goes to stderr only, and counts every document
    assert "rank1 judgments" in proc.stderr and f"{collection.pairs}/{collection.pairs}" in (
        proc.stderr
    )
    assert "rank1 judgments" not in proc.stdout


@pytest.mark.slow
def test_resume_after_sigkill(collection, tmp_path, spawn_cli, capsys) -> None:
    store, out = tmp_path / "s.sqlite", tmp_path / "resumed.trec"
    with FakeRank1Server(delay=0.15) as server:
        args = collection.args(
            "--base-url", server.base_url, "--store", str(store), "--out", str(out),
            "--concurrency", "2", "--json",
        )  # fmt: skip
        proc = spawn_cli(*args)
        deadline = time.monotonic() + 30
        while _rows(store) < 8 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=10)
        assert proc.returncode == -signal.SIGKILL
        kept = _rows(store)
        assert 8 <= kept < collection.pairs, "the run was not killed mid-way"
        assert not out.exists()

        before = server.requests
        capsys.readouterr()
        assert main(args) == 0  # the rerun
        report = json.loads(capsys.readouterr().out)
        # only what the store lacked was asked for: nothing judged twice
        assert server.requests - before == collection.pairs - kept
        assert report["from_store"] == kept
        assert report["judged_now"] == collection.pairs - kept

        # the same output as an uninterrupted run on a fresh store
        fresh = tmp_path / "fresh.trec"
        assert main(collection.args(
            "--base-url", server.base_url, "--store", str(tmp_path / "fresh.sqlite"),
            "--out", str(fresh),
        )) == 0  # fmt: skip
    assert out.read_text() == fresh.read_text()
    assert _ranking(out) == collection.expected_ranking()


@pytest.mark.slow
def test_two_runs_share_one_store(collection, tmp_path, spawn_cli, capsys) -> None:
    store = tmp_path / "s.sqlite"
    with FakeRank1Server(delay=0.1) as server:  # each run judges for ~1.6 s: they overlap
        procs = [
            spawn_cli(*collection.args(
                "--base-url", server.base_url, "--store", str(store), "--out",
                str(tmp_path / f"run{i}.trec"), "--concurrency", "2",
            ))  # fmt: skip
            for i in range(2)
        ]
        for p in procs:
            _, stderr = p.communicate(timeout=60)
            assert p.returncode == 0, stderr
        # both runs judged at the same time (some pairs twice), yet each pair is stored once
        assert collection.pairs < server.requests <= 2 * collection.pairs
        conn = sqlite3.connect(store)
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        conn.close()
        assert _rows(store) == collection.pairs
        served = server.requests
        assert main(collection.args("--base-url", server.base_url, "--store", str(store))) == 0
        assert server.requests == served  # a third run finds everything stored
    capsys.readouterr()
    first, second = (tmp_path / "run0.trec").read_text(), (tmp_path / "run1.trec").read_text()
    assert first == second
    assert _ranking(tmp_path / "run0.trec") == collection.expected_ranking()


@pytest.mark.parametrize(
    ("target", "content", "culprit"),
    [
        ("queries", "q1\ttidal forces\nq2 missing the tab\n", "queries.tsv:2"),
        ("corpus", '{"_id": "d101", "text": "x"}\n{"_id": "d102", "text": }\n', "corpus.jsonl:2"),
        ("run", "q1 Q0 d101 1 9.0 bm25\nq1 Q0 d102 2 bm25\n", "bm25.trec:2"),
        ("qrels", "q1 0 d104 1\nq1 0 d107 relevant\n", "qrels.trec:2"),
    ],
)
def test_bad_file_names_file_and_line(collection, target, content, culprit, capsys) -> None:
    getattr(collection, target).write_text(content)
    assert main(collection.args("--base-url", "http://127.0.0.1:9/v1", "--no-store")) == 1
    err = capsys.readouterr().err
    assert err.startswith("rank1 eval: error: ") and culprit in err


def test_document_missing_from_corpus(collection, capsys) -> None:
    lines = collection.corpus.read_text().splitlines()
    collection.corpus.write_text("\n".join(x for x in lines if '"d203"' not in x) + "\n")
    assert main(collection.args("--base-url", "http://127.0.0.1:9/v1", "--no-store")) == 1
    assert "'d203 (query q2)'" in capsys.readouterr().err


def test_unreachable_endpoint_aborts_without_a_run(collection, tmp_path, capsys) -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    out = tmp_path / "rank1.trec"
    args = collection.args(
        "--base-url", f"http://127.0.0.1:{port}/v1", "--no-store", "--out", str(out),
        "--max-retries", "0", "--max-failures", "3", "--concurrency", "1", "--json",
    )  # fmt: skip
    assert main(args) == 3
    report = json.loads(capsys.readouterr().out)
    assert report["aborted"] and report["failed"] == 3
    assert report["failures"][0]["message"].startswith("JudgmentError: ")
    assert not out.exists()


def test_forced_answers_are_counted(collection, fake_server, tmp_path, capsys) -> None:
    # a budget too small for the fake's reasoning: every verdict needs the forced answer
    args = collection.args(
        "--base-url", fake_server.base_url, "--no-store", "--max-reasoning-tokens", "4", "--json",
    )  # fmt: skip
    assert main(args) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["sources"]["forced_answer"] == collection.pairs
    assert report["sources"]["answer_logprobs"] == 0
    assert fake_server.requests == 2 * collection.pairs  # reasoning + one-token answer each


def test_chat_mode_and_max_queries(collection, fake_server, tmp_path, capsys) -> None:
    out = tmp_path / "chat.trec"
    args = collection.args(
        "--base-url", fake_server.base_url, "--no-store", "--mode", "chat", "--max-queries", "2",
        "--out", str(out), "--json",
    )  # fmt: skip
    assert main(args) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["queries"] == 2 and list(report["per_query"]) == ["q1", "q2"]
    assert report["pairs"] == 2 * collection.depth == fake_server.requests
    expected = collection.expected_ranking()
    assert _ranking(out) == {"q1": expected["q1"], "q2": expected["q2"]}


def test_dataset_without_ir_datasets_says_what_to_install(capsys) -> None:
    try:
        import ir_datasets  # noqa: F401
    except ImportError:
        pass
    else:  # pragma: no cover
        pytest.skip("ir_datasets is installed")
    assert main(["eval", "--dataset", "beir/scifact/test", "--no-store"]) == 1
    assert "pip install ir_datasets" in capsys.readouterr().err


def test_missing_inputs_are_named(collection, capsys) -> None:
    args = [a for a in collection.args() if a not in ("--qrels", str(collection.qrels))]
    assert main([*args, "--no-store"]) == 1
    assert "--qrels is required" in capsys.readouterr().err


def test_stop_after_relevant_reports_the_trade_off(
    collection, fake_server, tmp_path, capsys
) -> None:
    from rank1_integrations.testing import overlap_score

    store = str(tmp_path / "s.sqlite")
    args = collection.args("--base-url", fake_server.base_url, "--store", store)
    assert main([*args, "--stop-after-relevant", "1", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    ex = report["early_exit"]
    assert ex["stop_after_relevant"] == 1 and ex["metric"] == "nDCG@10"
    assert ex["full"]["judgments"] == collection.pairs == report["pairs"]
    # the early exit judges each query's first-stage prefix up to its first relevant one
    expected = 0
    for qid, docs in collection.first_stage.items():
        for _, title, text, _ in docs[: collection.depth]:
            expected += 1
            if overlap_score(collection.texts[qid], f"{title} {text}") >= 0.5:
                break
    assert ex["early_exit"]["judgments"] == expected < ex["full"]["judgments"]
    assert ex["early_exit"]["unjudged"] == collection.pairs - expected
    assert 0 < ex["early_exit"]["reasoning_tokens"] < ex["full"]["reasoning_tokens"]
    assert ex["full"]["nDCG@10"] == report["metrics"]["nDCG@10"]["rank1"]
    assert ex["early_exit"]["nDCG@10"] is not None
    # the replay reads the store, but the report counts only the full run's
    assert report["judged_now"] == collection.pairs and report["from_store"] == 0
    assert fake_server.requests == collection.pairs  # the early exit sent nothing
    assert main([*args, "--stop-after-relevant", "1"]) == 0
    text = capsys.readouterr().out
    assert "early exit (--stop-after-relevant 1):" in text and "full rerank" in text
