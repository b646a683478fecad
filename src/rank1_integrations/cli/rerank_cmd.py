"""``rank1 rerank``: rank documents for one query, as JSON lines.

Documents come from a file or stdin, as plain lines (one document a line; its id is its
line number) or JSONL (``{"id", "text", "title"}``; ``text`` required). The output is one
JSON object a line, best first: ``rank``, ``id``, ``score``, ``relevant``, ``source``,
``reasoning``, ``truncated``, ``judged``, ``state`` (and ``error`` for a document without a score:
a failed judgment kept with ``--on-error keep``, or one that ``--deadline`` or
``--stop-after-relevant`` left unjudged, listed after the ranked ones, within
``--top-n``)::

    printf 'The Moon pulls the tides.\\nCats sleep a lot.\\n' | rank1 rerank "what causes tides?"
    rank1 rerank "what causes tides?" docs.jsonl --top-n 3 --local
    rank1 rerank "what causes tides?" docs.jsonl --deadline 10 --stop-after-relevant 3
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Iterator
from typing import IO, Any

from ._common import add_endpoint_options, client_from_args, fail, positive_int, read_instruction


def positive_seconds(text: str) -> float:
    """argparse type: a number of seconds > 0."""
    import math

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"expected seconds > 0, got {text!r}")
    return value

__all__ = ["add_parser", "read_documents"]

#: Inputs longer than this get a progress bar on stderr.
PROGRESS_MIN_DOCS = 20


class InputError(ValueError):
    """A bad input file; the message names the file and line."""


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "rerank", help="rank documents (lines or JSONL) for a query; JSONL out",
        description=__doc__.split("\n\n")[1], formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("query", help="the query")
    p.add_argument("input", nargs="?", default="-", help="documents file (default: stdin)")
    p.add_argument("--format", choices=("auto", "lines", "jsonl"), default="auto",
                   help="input format (auto: JSONL when the file ends in .jsonl or its first "
                        "line starts with '{')")
    p.add_argument("-o", "--output", help="write JSONL here (default: stdout)")
    p.add_argument("--top-n", type=positive_int, help="keep at most N documents")
    p.add_argument("--threshold", type=float, help="keep documents with score >= THRESHOLD")
    p.add_argument("--instruction",
                   help="relevance definition: text, or a template with {query}; @FILE reads it")
    p.add_argument("--on-error", choices=("raise", "keep", "drop"), default="raise",
                   help="a failed judgment: stop with an error (default), keep it unscored, "
                        "or drop it")
    p.add_argument("--deadline", type=positive_seconds, metavar="SECONDS",
                   help="stop after SECONDS: documents not judged by then are listed after "
                        "the ranked ones, unjudged")
    p.add_argument("--stop-after-relevant", type=positive_int, metavar="N",
                   help="judge in input order and stop once N documents are relevant "
                        "(score >= --threshold, 0.5 without one); the rest are listed unjudged")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    p.add_argument("--local", nargs="?", const="", metavar="GGUF",
                   help="start the bundled rank1-server for this run (the demo model when "
                        "no GGUF is given) instead of using --base-url")
    add_endpoint_options(p)
    p.set_defaults(func=run)
    return p


def read_documents(stream: IO[str], name: str, fmt: str = "auto") -> list[dict[str, Any]]:
    """Documents as ``{"id", "text", "title"}`` dicts; :class:`InputError` names the culprit."""
    lines = stream.read().splitlines()
    if fmt == "auto":
        first = next((line for line in lines if line.strip()), "")
        fmt = "jsonl" if name.endswith(".jsonl") or first.lstrip().startswith("{") else "lines"
    docs: list[dict[str, Any]] = []
    seen: dict[str, int] = {}
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        if fmt == "lines":
            docs.append({"id": str(number), "text": line, "title": None})
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"{name}:{number}: not valid JSON ({exc.msg})") from None
        if not isinstance(record, dict):
            raise InputError(f"{name}:{number}: expected a JSON object")
        text, title = record.get("text"), record.get("title")
        if not isinstance(text, str):
            raise InputError(f"{name}:{number}: 'text' must be a string")
        if title is not None and not isinstance(title, str):
            raise InputError(f"{name}:{number}: 'title' must be a string")
        doc_id = str(record.get("id", record.get("_id", number)))
        if doc_id in seen:
            raise InputError(f"{name}:{number}: duplicate id {doc_id!r} (first on line "
                             f"{seen[doc_id]})")
        seen[doc_id] = number
        docs.append({"id": doc_id, "text": text, "title": title})
    return docs


@contextlib.contextmanager
def _input(path: str) -> Iterator[tuple[IO[str], str]]:
    if path == "-":
        yield sys.stdin, "<stdin>"
        return
    with open(path, encoding="utf-8") as handle:
        yield handle, path


def run(args: argparse.Namespace) -> int:
    if not args.query.strip():
        return fail("rerank", "the query is empty")
    if args.threshold is not None and not 0.0 <= args.threshold <= 1.0:
        return fail("rerank", f"--threshold must be in [0, 1], got {args.threshold}")
    try:
        instruction = read_instruction(args.instruction)
        with _input(args.input) as (stream, name):
            docs = read_documents(stream, name, args.format)
    except (InputError, ValueError) as exc:
        return fail("rerank", str(exc))
    except OSError as exc:
        return fail("rerank", f"cannot read {args.input}: {exc.strerror}")
    except UnicodeDecodeError as exc:
        return fail("rerank", f"{args.input}: not UTF-8 text ({exc.reason})")
    if not docs:
        return fail("rerank", f"no documents in {args.input if args.input != '-' else 'stdin'}")

    with contextlib.ExitStack() as stack:
        base_url = args.base_url
        if args.local is not None:
            from .._spawn import ServerStartError
            from ._local import local_server

            try:
                base_url = stack.enter_context(local_server(args.local or None))
            except (ImportError, ServerStartError) as exc:
                return fail("rerank", str(exc))
        rows = _rank(args, docs, instruction, base_url)
    if rows is None:
        return 1
    out = open(args.output, "w", encoding="utf-8") if args.output else sys.stdout
    try:
        for row in rows:
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
    finally:
        if out is not sys.stdout:
            out.close()
    return 0


def _rank(
    args: argparse.Namespace, docs: list[dict[str, Any]], instruction: str | None,
    base_url: str | None,
) -> list[dict[str, Any]] | None:
    from tqdm import tqdm

    from .._adapter import select
    from ..errors import JudgmentError

    client = client_from_args(args, base_url=base_url)
    bar = tqdm(total=len(docs), unit="doc", desc="rank1", file=sys.stderr,
               disable=args.no_progress or len(docs) < PROGRESS_MIN_DOCS)
    try:
        judgments = client.rerank(
            args.query, [{"text": d["text"], "title": d["title"]} for d in docs],
            on_error=args.on_error, instruction=instruction, on_judgment=lambda _: bar.update(),
            deadline=args.deadline, stop_after_relevant=args.stop_after_relevant,
            relevant_threshold=0.5 if args.threshold is None else args.threshold,
        )
    except JudgmentError as exc:
        fail("rerank", f"document {docs[exc.index]['id']!r}: {exc}")
        return None
    finally:
        bar.close()
        client.close()
    rows = []
    for rank, j in enumerate(select(judgments, top_n=args.top_n, score_threshold=args.threshold),
                             start=1):
        row: dict[str, Any] = {
            "rank": rank if j.state.judged else None, "id": docs[j.index]["id"],
            "score": j.score, "relevant": j.relevant,
            "source": j.source.value if j.source else None,
            "reasoning": j.reasoning, "truncated": j.truncated, "judged": j.state.judged,
            "state": j.state.value,
        }
        if j.error is not None:
            row["error"] = j.error
        rows.append(row)
    return rows
