"""Readers of queries, corpora, runs and qrels: good files, and bad lines named by number."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from rank1_integrations.evaluation.io import (
    Document,
    InputFormatError,
    ranked_docids,
    read_corpus,
    read_qrels,
    read_queries,
    read_run,
    write_trec_run,
)


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# --------------------------------------------------------------------------- good files


def test_queries_tsv_and_jsonl(tmp_path: Path) -> None:
    tsv = _write(tmp_path, "q.tsv", "q1\twhat is\ta tab?\n\nq2\tsecond query\r\n")
    assert read_queries(tsv) == {"q1": "what is\ta tab?", "q2": "second query"}
    jsonl = _write(
        tmp_path,
        "q.jsonl",
        json.dumps({"_id": "q1", "text": "first"}) + "\n" + json.dumps({"id": 7, "text": "x"}),
    )
    assert read_queries(jsonl) == {"q1": "first", "7": "x"}


def test_queries_jsonl_sniffed_without_extension(tmp_path: Path) -> None:
    path = _write(tmp_path, "queries", json.dumps({"_id": "a", "text": "b"}) + "\n")
    assert read_queries(path) == {"a": "b"}


def test_corpus_keeps_titles_and_filters(tmp_path: Path) -> None:
    lines = [
        {"_id": "d1", "title": "T", "text": "one"},
        {"id": "d2", "text": "two"},
        {"_id": "d3", "title": "", "text": "three"},
    ]
    path = _write(tmp_path, "c.jsonl", "".join(json.dumps(x) + "\n" for x in lines))
    assert read_corpus(path) == {
        "d1": Document("one", "T"),
        "d2": Document("two", None),
        "d3": Document("three", ""),  # an empty title is kept: the official prompt has a space
    }
    assert read_corpus(path, wanted={"d2"}) == {"d2": Document("two", None)}


def test_gzip_is_read(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl.gz"
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        fh.write(json.dumps({"_id": "d1", "text": "zipped"}) + "\n")
    assert read_corpus(path) == {"d1": Document("zipped", None)}


def test_trec_run_and_json_run(tmp_path: Path) -> None:
    trec = _write(tmp_path, "r.trec", "q1 Q0 d1 1 2.5 bm25\nq1 Q0 d2 2 1.5 bm25\nq2 Q0 d1 1 -3 x\n")
    assert read_run(trec) == {"q1": {"d1": 2.5, "d2": 1.5}, "q2": {"d1": -3.0}}
    js = _write(tmp_path, "score.json", json.dumps({"q1": {"d1": 2.5, "d2": 1}}))
    assert read_run(js) == {"q1": {"d1": 2.5, "d2": 1.0}}


def test_qrels_trec_and_beir_tsv(tmp_path: Path) -> None:
    trec = _write(tmp_path, "qrels.trec", "q1 0 d1 2\nq1 0 d2 0\nq2 Q0 d3 1\n")
    assert read_qrels(trec) == {"q1": {"d1": 2, "d2": 0}, "q2": {"d3": 1}}
    beir = _write(tmp_path, "test.tsv", "query-id\tcorpus-id\tscore\nq1\td1\t1\n")
    assert read_qrels(beir) == {"q1": {"d1": 1}}


def test_ranked_docids_follows_trec_eval_ties() -> None:
    # score descending; equal scores: document id descending (trec_eval's rule)
    assert ranked_docids({"a": 1.0, "c": 1.0, "b": 2.0, "d": 0.5}) == ["b", "c", "a", "d"]


def test_write_trec_run_roundtrip(tmp_path: Path) -> None:
    path = tmp_path / "out" / "run.trec"
    write_trec_run(path, {"q1": [("d2", 2.0), ("d1", 1.0)]}, tag="rank1")
    assert path.read_text() == "q1 Q0 d2 1 2.0 rank1\nq1 Q0 d1 2 1.0 rank1\n"
    assert read_run(path) == {"q1": {"d2": 2.0, "d1": 1.0}}
    assert [p.name for p in path.parent.iterdir()] == ["run.trec"]  # no temporary left
    with pytest.raises(ValueError, match="whitespace"):
        write_trec_run(path, {"q 1": [("d1", 1.0)]})


# --------------------------------------------------------------------------- bad files

BAD = [
    # (reader, file name, content, line, message fragment)
    (read_queries, "q.tsv", "q1\tok\nq2 no tab\n", 2, "expected 'id<TAB>text'"),
    (read_queries, "q.tsv", "q1\tok\n\nq1\tagain\n", 3, "duplicate query id 'q1'"),
    (read_queries, "q.tsv", "q1\t   \n", 1, "empty text"),
    (read_queries, "q.jsonl", '{"_id": "q1", "text": "a"}\n{"_id": "q2"\n', 2, "invalid JSON"),
    (read_queries, "q.jsonl", '{"text": "a"}\n', 1, 'missing "_id"'),
    (read_queries, "q.jsonl", '{"_id": "q1", "query": "a"}\n', 1, 'missing "text"'),
    (read_queries, "q.jsonl", '["q1", "a"]\n', 1, "expected a JSON object"),
    (read_corpus, "c.jsonl", '{"_id": "d1", "text": "a"}\n{"_id": "d1", "text": "b"}\n', 2,
     "duplicate document id 'd1'"),
    (read_corpus, "c.jsonl", '{"_id": "d1", "text": 5}\n', 1, '"text" must be a string'),
    (read_corpus, "c.jsonl", '{"_id": "d1", "title": 3, "text": "a"}\n', 1, '"title" must be'),
    (read_run, "r.trec", "q1 Q0 d1 1 2.0 bm25\nq1 Q0 d2 2 2.0\n", 2, "expected 6 columns"),
    (read_run, "r.trec", "q1 Q0 d1 1 high bm25\n", 1, "score 'high' is not a number"),
    (read_run, "r.trec", "q1 Q0 d1 1 nan bm25\n", 1, "not finite"),
    (read_run, "r.trec", "q1 Q0 d1 one 2.0 bm25\n", 1, "rank 'one' is not an integer"),
    (read_run, "r.trec", "q1 Q0 d1 1 2 t\nq2 Q0 d1 1 2 t\nq1 Q0 d1 3 1 t\n", 3,
     "listed twice for query 'q1' (first on line 1)"),
    (read_qrels, "qrels.trec", "q1 0 d1 1\nq1 0 d2\n", 2, "expected 4 columns"),
    (read_qrels, "qrels.trec", "q1 0 d1 1 extra\n", 1, "got 5 columns"),
    (read_qrels, "qrels.trec", "q1 0 d1 1\nq1 0 d2 yes\n", 2, "relevance 'yes' is not an integer"),
    (read_qrels, "qrels.trec", "q1 0 d1 1\nq1 0 d1 2\n", 2, "judged twice"),
]  # fmt: skip


@pytest.mark.parametrize(("reader", "name", "content", "line", "fragment"), BAD)
def test_bad_line_names_file_and_line(tmp_path, reader, name, content, line, fragment) -> None:
    path = _write(tmp_path, name, content)
    with pytest.raises(InputFormatError) as info:
        reader(path)
    assert info.value.path == str(path)
    assert info.value.line == line
    assert str(info.value).startswith(f"{path}:{line}: ")
    assert fragment in str(info.value)


@pytest.mark.parametrize("reader", [read_queries, read_corpus, read_run, read_qrels])
def test_missing_and_empty_files(tmp_path: Path, reader) -> None:
    with pytest.raises(InputFormatError, match="no such file"):
        reader(tmp_path / "absent.txt")
    empty = _write(tmp_path, "empty.jsonl", "\n\n")
    with pytest.raises(InputFormatError, match="empty.jsonl"):
        reader(empty)


def test_json_run_errors_name_the_file(tmp_path: Path) -> None:
    bad = _write(tmp_path, "score.json", '{"q1": {"d1": 1.0},\n "q2": [1, 2]}')
    with pytest.raises(InputFormatError, match=r"score\.json: query 'q2'"):
        read_run(bad)
    broken = _write(tmp_path, "broken.json", '{"q1": {"d1": 1.0},\n oops}')
    with pytest.raises(InputFormatError, match=r"broken\.json:2: invalid JSON"):
        read_run(broken)


def test_not_utf8_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "q.tsv"
    path.write_bytes(b"q1\t\xff\xfe bad\n")
    with pytest.raises(InputFormatError, match="not UTF-8"):
        read_queries(path)
