"""Readers and writers for the standard IR file formats ``rank1 eval`` uses.

* queries: TSV (``id<TAB>text``, no header) or JSONL (``{"_id"|"id": ..., "text": ...}``);
* corpus: BEIR-style JSONL (``{"_id"|"id": ..., "title": ..., "text": ...}``);
* runs: TREC (``qid Q0 docid rank score tag``), or JSON ``{qid: {docid: score}}``;
* qrels: TREC (``qid iter docid relevance``), or BEIR TSV (``query-id corpus-id score``,
  with its header line).

Files ending in ``.gz`` are read through gzip. Every malformed line raises
:class:`InputFormatError` naming the file and the line number; nothing is skipped
silently except blank lines.

Usage::

    queries = read_queries("queries.tsv")           # {"q1": "what is ...", ...}
    run = read_run("bm25.trec")                     # {"q1": {"d3": 12.1, ...}, ...}
    ranked = ranked_docids(run["q1"])               # ["d3", ...], trec_eval's order
    corpus = read_corpus("corpus.jsonl", wanted={"d3"})
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import math
import os
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from ..passage import Passage

__all__ = [
    "Document",
    "atomic_text_file",
    "InputFormatError",
    "ranked_docids",
    "read_corpus",
    "read_qrels",
    "read_queries",
    "read_run",
    "write_trec_run",
]

PathLike = str | os.PathLike[str]


class InputFormatError(ValueError):
    """A malformed input file. ``path`` and ``line`` (1-based, or ``None``) name the culprit."""

    def __init__(self, path: PathLike, line: int | None, message: str) -> None:
        where = f"{path}:{line}" if line is not None else f"{path}"
        super().__init__(f"{where}: {message}")
        self.path = str(path)
        self.line = line


@dataclass(frozen=True)
class Document(Passage):
    """A corpus entry: a :class:`~rank1_integrations.Passage` (``text``, ``title``). ``title``
    is ``None`` when the line has no ``"title"`` field and is kept as written otherwise,
    empty string included: the official rank1 code joins a record's title and text as
    ``f"{title} {text}"`` even when the title is empty, and so does
    :func:`~rank1_integrations.protocol.build_prompt` when given a title."""


# --------------------------------------------------------------------------- helpers


def _open_text(path: PathLike) -> IO[str]:
    p = Path(path)
    if not p.is_file():
        raise InputFormatError(path, None, "no such file")
    if p.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(p, "rb"), encoding="utf-8")
    return open(p, encoding="utf-8")  # noqa: SIM115 - closed by the caller's with


def _lines(path: PathLike) -> Iterator[tuple[int, str]]:
    """``(line_number, line)`` for every non-blank line, newline stripped."""
    with _open_text(path) as fh:
        try:
            for number, line in enumerate(fh, start=1):
                line = line.rstrip("\r\n")
                if line.strip():
                    yield number, line
        except UnicodeDecodeError as exc:
            raise InputFormatError(path, None, f"not UTF-8 text ({exc})") from exc


def _base_suffix(path: PathLike) -> str:
    p = Path(path)
    suffixes = [s.lower() for s in p.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    return suffixes[-1] if suffixes else ""


def _looks_like_jsonl(path: PathLike) -> bool:
    suffix = _base_suffix(path)
    if suffix in (".jsonl", ".json", ".ndjson"):
        return True
    if suffix in (".tsv", ".txt", ".trec", ".run", ".qrels"):
        return False
    for _, line in _lines(path):
        return line.lstrip().startswith("{")
    return False


def _json_object(path: PathLike, number: int, line: str) -> dict[str, object]:
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        raise InputFormatError(path, number, f"invalid JSON ({exc.msg})") from exc
    if not isinstance(obj, dict):
        raise InputFormatError(path, number, "expected a JSON object")
    return obj


def _id_field(path: PathLike, number: int, obj: Mapping[str, object]) -> str:
    for name in ("_id", "id"):
        if name in obj:
            value = obj[name]
            if isinstance(value, bool) or not isinstance(value, str | int):
                raise InputFormatError(path, number, f'"{name}" must be a string or an integer')
            if str(value) == "":
                raise InputFormatError(path, number, f'empty "{name}"')
            return str(value)
    raise InputFormatError(path, number, 'missing "_id" (or "id") field')


def _text_field(path: PathLike, number: int, obj: Mapping[str, object], name: str) -> str:
    if name not in obj:
        raise InputFormatError(path, number, f'missing "{name}" field')
    value = obj[name]
    if not isinstance(value, str):
        raise InputFormatError(path, number, f'"{name}" must be a string')
    return value


def _finite(path: PathLike, number: int, text: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise InputFormatError(path, number, f"{what} {text!r} is not a number") from None
    if not math.isfinite(value):
        raise InputFormatError(path, number, f"{what} {text!r} is not finite")
    return value


# --------------------------------------------------------------------------- queries


def read_queries(path: PathLike) -> dict[str, str]:
    """Queries by id, in file order. JSONL by extension (``.jsonl``/``.json``) or when the
    first line starts with ``{``; otherwise TSV ``id<TAB>text`` (the text may hold tabs)."""
    queries: dict[str, str] = {}
    first_line: dict[str, int] = {}
    jsonl = _looks_like_jsonl(path)
    for number, line in _lines(path):
        if jsonl:
            obj = _json_object(path, number, line)
            qid = _id_field(path, number, obj)
            text = _text_field(path, number, obj, "text")
        else:
            if "\t" not in line:
                raise InputFormatError(path, number, "expected 'id<TAB>text'")
            qid, text = line.split("\t", 1)
            qid = qid.strip()
            if not qid:
                raise InputFormatError(path, number, "empty query id")
        if qid in first_line:
            raise InputFormatError(
                path, number, f"duplicate query id {qid!r} (first on line {first_line[qid]})"
            )
        if not text.strip():
            raise InputFormatError(path, number, f"query {qid!r} has empty text")
        first_line[qid] = number
        queries[qid] = text
    if not queries:
        raise InputFormatError(path, None, "no queries")
    return queries


# --------------------------------------------------------------------------- corpus


def read_corpus(path: PathLike, *, wanted: Collection[str] | None = None) -> dict[str, Document]:
    """BEIR-style corpus JSONL: documents by id. With ``wanted`` only those ids are kept
    (every line is still checked), which keeps memory small for a large corpus."""
    docs: dict[str, Document] = {}
    first_line: dict[str, int] = {}
    for number, line in _lines(path):
        obj = _json_object(path, number, line)
        docid = _id_field(path, number, obj)
        text = _text_field(path, number, obj, "text")
        title = obj.get("title")
        if title is not None and not isinstance(title, str):
            raise InputFormatError(path, number, '"title" must be a string')
        if docid in first_line:
            raise InputFormatError(
                path, number, f"duplicate document id {docid!r} (first on line {first_line[docid]})"
            )
        first_line[docid] = number
        if wanted is None or docid in wanted:
            docs[docid] = Document(text=text, title=title)
    if not first_line:
        raise InputFormatError(path, None, "no documents")
    return docs


# --------------------------------------------------------------------------- runs


def read_run(path: PathLike) -> dict[str, dict[str, float]]:
    """A first-stage run: ``{qid: {docid: score}}``.

    TREC format (six whitespace-separated columns ``qid Q0 docid rank score tag``; the
    rank column is checked to be an integer but, as in trec_eval, the order comes from the
    scores: see :func:`ranked_docids`), or a JSON object ``{qid: {docid: score}}`` when the
    file ends in ``.json``.
    """
    if _base_suffix(path) == ".json":
        return _read_json_run(path)
    run: dict[str, dict[str, float]] = {}
    seen: dict[tuple[str, str], int] = {}
    for number, line in _lines(path):
        cols = line.split()
        if len(cols) != 6:
            raise InputFormatError(
                path, number, f"expected 6 columns 'qid Q0 docid rank score tag', got {len(cols)}"
            )
        qid, _, docid, rank, score, _ = cols
        try:
            int(rank)
        except ValueError:
            raise InputFormatError(path, number, f"rank {rank!r} is not an integer") from None
        value = _finite(path, number, score, "score")
        if (qid, docid) in seen:
            raise InputFormatError(
                path,
                number,
                f"document {docid!r} listed twice for query {qid!r} "
                f"(first on line {seen[(qid, docid)]})",
            )
        seen[(qid, docid)] = number
        run.setdefault(qid, {})[docid] = value
    if not run:
        raise InputFormatError(path, None, "empty run")
    return run


def _read_json_run(path: PathLike) -> dict[str, dict[str, float]]:
    with _open_text(path) as fh:
        try:
            data = json.load(fh)
        except json.JSONDecodeError as exc:
            raise InputFormatError(path, exc.lineno, f"invalid JSON ({exc.msg})") from exc
    if not isinstance(data, dict):
        raise InputFormatError(path, None, "expected a JSON object {qid: {docid: score}}")
    run: dict[str, dict[str, float]] = {}
    for qid, docs in data.items():
        if not isinstance(docs, dict):
            raise InputFormatError(path, None, f"query {qid!r}: expected {{docid: score}}")
        scores: dict[str, float] = {}
        for docid, score in docs.items():
            if isinstance(score, bool) or not isinstance(score, int | float):
                raise InputFormatError(
                    path, None, f"query {qid!r}, document {docid!r}: score is not a number"
                )
            if not math.isfinite(score):
                raise InputFormatError(
                    path, None, f"query {qid!r}, document {docid!r}: score is not finite"
                )
            scores[str(docid)] = float(score)
        if scores:
            run[str(qid)] = scores
    if not run:
        raise InputFormatError(path, None, "empty run")
    return run


def ranked_docids(scores: Mapping[str, float]) -> list[str]:
    """Document ids in trec_eval's order: score descending, ties by document id descending.

    This is the order pytrec_eval evaluates a run in, so "the first stage's top k" means the
    same documents to the reranker and to the metrics.
    """
    return sorted(scores, key=lambda d: (scores[d], d), reverse=True)


# --------------------------------------------------------------------------- qrels


def read_qrels(path: PathLike) -> dict[str, dict[str, int]]:
    """Relevance judgments ``{qid: {docid: grade}}``.

    TREC qrels (``qid iter docid grade``) or BEIR TSV (``query-id corpus-id score``; a
    first line whose last column is not an integer is taken as the header). Grades must be
    integers; a (query, document) pair listed twice is an error.
    """
    qrels: dict[str, dict[str, int]] = {}
    seen: dict[tuple[str, str], int] = {}
    width: int | None = None  # 4 (TREC) or 3 (BEIR), fixed by the first data line
    for number, line in _lines(path):
        cols = line.split()
        if width is None and not seen and len(cols) == 3 and not _is_int(cols[2]):
            continue  # BEIR header: query-id corpus-id score
        if width is None:
            if len(cols) not in (3, 4):
                raise InputFormatError(
                    path,
                    number,
                    f"expected 'qid iter docid relevance' (TREC) or 'query-id corpus-id score' "
                    f"(BEIR), got {len(cols)} columns",
                )
            width = len(cols)
        if len(cols) != width:
            layout = "'qid iter docid relevance'" if width == 4 else "'query-id corpus-id score'"
            raise InputFormatError(
                path, number, f"expected {width} columns {layout} as above, got {len(cols)}"
            )
        if width == 4:
            qid, _, docid, grade = cols
        else:
            qid, docid, grade = cols
        if not _is_int(grade):
            raise InputFormatError(path, number, f"relevance {grade!r} is not an integer")
        if (qid, docid) in seen:
            raise InputFormatError(
                path,
                number,
                f"document {docid!r} judged twice for query {qid!r} "
                f"(first on line {seen[(qid, docid)]})",
            )
        seen[(qid, docid)] = number
        qrels.setdefault(qid, {})[docid] = int(grade)
    if not qrels:
        raise InputFormatError(path, None, "no relevance judgments")
    return qrels


def _is_int(text: str) -> bool:
    try:
        int(text)
    except ValueError:
        return False
    return True


# --------------------------------------------------------------------------- writing


def write_trec_run(
    path: PathLike,
    rankings: Mapping[str, Sequence[tuple[str, float]]],
    *,
    tag: str = "rank1",
) -> None:
    """Write ``{qid: [(docid, score), ...]}`` (each list in rank order) as a TREC run.

    The file is written to a temporary name and renamed, so a killed run never leaves a
    half-written file behind.
    """
    if any(c.isspace() for c in tag) or not tag:
        raise ValueError(f"run tag must be one word, got {tag!r}")
    for qid, ranking in rankings.items():
        for docid, _ in ranking:
            if not qid or not docid or any(c.isspace() for c in qid + docid):
                raise ValueError(
                    f"TREC runs cannot hold ids with whitespace: query {qid!r}, document {docid!r}"
                )
    with atomic_text_file(path) as fh:
        for qid, ranking in rankings.items():
            for rank, (docid, score) in enumerate(ranking, start=1):
                fh.write(f"{qid} Q0 {docid} {rank} {score!r} {tag}\n")


@contextlib.contextmanager
def atomic_text_file(path: PathLike) -> Iterator[IO[str]]:
    """Open ``path`` for writing (UTF-8, parent directories created) under a temporary
    name in the same directory, renamed to ``path`` once the block completes: a killed
    run never leaves a half-written file behind.

    >>> import tempfile, os
    >>> target = os.path.join(tempfile.mkdtemp(), "out", "run.txt")
    >>> with atomic_text_file(target) as fh:
    ...     _ = fh.write("q1 Q0 d1 1 1.0 rank1\\n")
    >>> open(target).read()
    'q1 Q0 d1 1 1.0 rank1\\n'
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        yield fh
    os.replace(tmp, target)
