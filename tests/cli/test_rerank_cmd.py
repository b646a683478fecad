"""``rank1 rerank`` end to end against the loopback fake server."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from rank1_integrations.cli import main
from rank1_integrations.testing import FakeRank1Server, overlap_score


@pytest.fixture(scope="module")
def server():
    with FakeRank1Server() as s:
        yield s


def run_cli(args, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        [sys.executable, "-m", "rank1_integrations.cli", *args],
        input=stdin, capture_output=True, text=True, timeout=60, env=env,
    )


def rows(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines()]


def test_plain_lines_from_stdin_ranked_best_first(server):
    docs = ["Cats sleep a lot.", "", "The moon pulls the ocean tides.", "tides only"]
    result = run_cli(["rerank", "moon ocean tides", "--base-url", server.base_url],
                     stdin="\n".join(docs) + "\n")
    assert result.returncode == 0, result.stderr
    out = rows(result.stdout)
    # blank lines are not documents; ids are line numbers
    assert [r["id"] for r in out] == ["3", "4", "1"]
    assert [r["rank"] for r in out] == [1, 2, 3]
    assert out[0]["score"] == pytest.approx(overlap_score("moon ocean tides", docs[2]))
    assert out[0]["relevant"] is True and out[-1]["relevant"] is False
    assert all(r["source"] == "answer_logprobs" and r["reasoning"] for r in out)


def test_jsonl_file_with_titles_top_n_and_threshold(server, tmp_path, capsys):
    path = tmp_path / "docs.jsonl"
    path.write_text(
        '{"id": "a", "text": "cats", "title": "Pets"}\n'
        '{"id": "b", "text": "the moon", "title": "ocean tides"}\n'
        '{"id": "c", "text": "moon tides"}\n'
    )
    assert main(["rerank", "moon ocean tides", str(path), "--base-url", server.base_url,
                 "--top-n", "1", "--threshold", "0.5"]) == 0
    out = rows(capsys.readouterr().out)
    assert [r["id"] for r in out] == ["b"]  # the title counts: "ocean tides the moon"

    assert main(["rerank", "moon ocean tides", str(path), "--base-url", server.base_url,
                 "--threshold", "0.99"]) == 0
    assert capsys.readouterr().out == ""


def test_instruction_template_from_file_reaches_the_prompt(server, tmp_path, capsys):
    template = tmp_path / "instr.txt"
    template.write_text("Find passages about {query} and the moon\n")
    assert main(["rerank", "tides", str(_lines(tmp_path, ["the moon"])),
                 "--base-url", server.base_url, "--instruction", f"@{template}"]) == 0
    # without the template the query "tides" shares nothing with "the moon"
    (row,) = rows(capsys.readouterr().out)
    assert row["score"] == pytest.approx(
        overlap_score("Find passages about tides and the moon", "the moon"))


def _lines(tmp_path, docs):
    path = tmp_path / "docs.txt"
    path.write_text("\n".join(docs) + "\n")
    return path


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"id": 1, "text": "ok"}\n{"id": 2, "text": \n', "docs.jsonl:2: not valid JSON"),
        ('{"id": 1}\n', "docs.jsonl:1: 'text' must be a string"),
        ('{"id": 1, "text": "a"}\n{"id": 1, "text": "b"}\n', "duplicate id '1'"),
        ('["a"]\n', "docs.jsonl:1: expected a JSON object"),
        ("\n\n", "no documents"),
    ],
)
def test_bad_input_files_exit_non_zero_naming_file_and_line(
    tmp_path, content, message, server, capsys
):
    path = tmp_path / "docs.jsonl"
    path.write_text(content)
    assert main(["rerank", "q", str(path), "--base-url", server.base_url]) == 1
    captured = capsys.readouterr()
    assert message in captured.err
    assert captured.out == ""


def test_missing_file_and_empty_query(server, capsys):
    assert main(["rerank", "q", "/nonexistent/docs.txt", "--base-url", server.base_url]) == 1
    assert "cannot read /nonexistent/docs.txt" in capsys.readouterr().err
    result = run_cli(["rerank", "  ", "--base-url", server.base_url], stdin="doc\n")
    assert result.returncode == 1 and "query is empty" in result.stderr


def test_unreachable_endpoint_names_the_document(tmp_path):
    result = run_cli(["rerank", "q", "--base-url", "http://127.0.0.1:9/v1", "--max-retries", "0"],
                     stdin="first\n")
    assert result.returncode == 1
    assert "document '1'" in result.stderr


def test_progress_bar_on_stderr_for_long_inputs(server):
    docs = [f"doc {i} about tides" for i in range(30)]
    result = run_cli(["rerank", "tides", "--base-url", server.base_url], stdin="\n".join(docs))
    assert result.returncode == 0
    assert len(rows(result.stdout)) == 30
    assert "30/30" in result.stderr


@pytest.mark.parametrize("command", [["rerank", "q"], ["eval"]])
def test_negative_max_retries_is_a_usage_error(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([*command, "--max-retries", "-1"])
    assert exit_info.value.code == 2
    assert "argument --max-retries: expected a non-negative integer, got '-1'" in (
        capsys.readouterr().err
    )


def test_rate_limit_options_reach_the_client() -> None:
    import argparse

    from rank1_integrations.cli._common import add_endpoint_options, client_from_args

    parser = argparse.ArgumentParser()
    add_endpoint_options(parser)
    args = parser.parse_args(["--max-requests-per-minute", "60",
                              "--max-tokens-per-minute", "90000"])
    client = client_from_args(args)
    assert client.settings.max_requests_per_minute == 60
    assert client.settings.max_tokens_per_minute == 90_000
    unset = client_from_args(parser.parse_args([]))
    assert unset.max_requests_per_minute is None and unset.max_tokens_per_minute is None


@pytest.mark.parametrize("option", ["--max-requests-per-minute", "--max-tokens-per-minute"])
def test_rate_limits_must_be_positive(option, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["rerank", "q", option, "0"])
    assert exit_info.value.code == 2
    assert f"argument {option}: expected a positive integer" in capsys.readouterr().err


def test_rerank_with_a_request_budget(server):
    result = run_cli(["rerank", "moon ocean tides", "--base-url", server.base_url,
                      "--max-requests-per-minute", "6000"], stdin="tides\nmoon tides\n")
    assert result.returncode == 0, result.stderr
    assert len(rows(result.stdout)) == 2


def test_deadline_lists_the_unjudged_after_the_ranked(tmp_path, capsys):
    import time

    docs = ["The moon pulls the ocean tides.", "Slow cats nap.", "tides only"]
    path = tmp_path / "docs.txt"
    path.write_text("\n".join(docs) + "\n")
    with FakeRank1Server(delay_for=lambda p: 10.0 if p.startswith("Slow") else 0.05) as slow:
        started = time.monotonic()
        assert main(["rerank", "moon ocean tides", str(path), "--base-url", slow.base_url,
                     "--deadline", "1", "--no-progress"]) == 0
        assert time.monotonic() - started < 3.0
    out = rows(capsys.readouterr().out)
    assert [(r["id"], r["judged"]) for r in out] == [("1", True), ("3", True), ("2", False)]
    assert out[-1]["rank"] is None and "deadline of 1 s passed" in out[-1]["error"]
    # within --top-n: the unjudged one has no room
    with FakeRank1Server(delay_for=lambda p: 10.0 if p.startswith("Slow") else 0.05) as slow:
        assert main(["rerank", "moon ocean tides", str(path), "--base-url", slow.base_url,
                     "--deadline", "1", "--top-n", "2", "--no-progress"]) == 0
    assert [r["id"] for r in rows(capsys.readouterr().out)] == ["1", "3"]


def test_stop_after_relevant(server, tmp_path, capsys):
    docs = ["Cats sleep a lot.", "The moon pulls the ocean tides.", "moon ocean tides again"]
    path = tmp_path / "docs.txt"
    path.write_text("\n".join(docs) + "\n")
    before = server.requests
    assert main(["rerank", "moon ocean tides", str(path), "--base-url", server.base_url,
                 "--stop-after-relevant", "1", "--concurrency", "1"]) == 0
    out = rows(capsys.readouterr().out)
    assert server.requests - before == 2  # nothing judged after the first relevant one
    assert [(r["id"], r["judged"]) for r in out] == [("2", True), ("1", True), ("3", False)]
    assert "stopped early after 1 relevant" in out[-1]["error"]


@pytest.mark.parametrize("value", ["0", "-1", "nan", "soon"])
def test_bad_deadline_is_a_usage_error(value, capsys):
    with pytest.raises(SystemExit) as caught:
        main(["rerank", "q", "--deadline", value])
    assert caught.value.code == 2 and "--deadline" in capsys.readouterr().err
