"""``rank1 calibrate QRELS SCORES``: the score-threshold table in the terminal.

    rank1 calibrate qrels.trec judgments.jsonl --target-precision 0.9

``SCORES`` holds rank1's probabilities: the ``--judgments`` JSONL of ``rank1 eval`` (one
``{"qid", "docid", "score", ...}`` per line), or a run (TREC or JSON ``{qid: {docid:
score}}``) whose scores are rank1's. (The ``--out`` run of ``rank1 eval`` encodes the
order, not the probabilities: give its ``--judgments`` instead.) Prints precision and
recall of keeping ``score >= t`` for t = 0.05 .. 0.95 and the lowest threshold whose
precision reaches the target (:mod:`~rank1_integrations.evaluation.calibration`).

Exit status: 0; 1 for unreadable input or when no threshold reaches the target.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from ._common import fail

__all__ = ["add_parser", "run"]


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "calibrate",
        help="print the score_threshold table for a target precision from labelled data",
        description="Precision and recall of rank1's score threshold on labelled data, and "
        "the threshold that reaches --target-precision.",
    )
    p.add_argument("qrels", metavar="QRELS", help="relevance judgments: TREC or BEIR TSV")
    p.add_argument("scores", metavar="SCORES",
                   help="rank1 eval's --judgments JSONL, or a run with rank1's scores")
    p.add_argument("--target-precision", type=float, default=0.9, metavar="P",
                   help="precision the threshold must reach (default 0.9)")
    p.set_defaults(func=run)
    return p


def _read_scores(path: str) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, int]]]:
    """``({qid: {docid: score}}, {qid: {docid: reasoning tokens}})``."""
    from ..evaluation.io import read_run

    with open(path, encoding="utf-8") as fh:
        first = fh.readline().strip()
    try:
        row = json.loads(first) if first else None
    except json.JSONDecodeError:
        row = None
    if not (isinstance(row, dict) and "qid" in row and "docid" in row):
        return read_run(path), {}
    scores: dict[str, dict[str, float]] = {}
    tokens: dict[str, dict[str, int]] = {}
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                qid, docid, score = str(row["qid"]), str(row["docid"]), row.get("score")
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                raise ValueError(f"{path}, line {n}: not a judgment row ({exc})") from exc
            if score is None:  # a failed judgment has no score
                continue
            scores.setdefault(qid, {})[docid] = float(score)
            tokens.setdefault(qid, {})[docid] = int(row.get("reasoning_tokens") or 0)
    return scores, tokens


def run(args: argparse.Namespace) -> int:
    from ..evaluation.calibration import (
        labelled_pairs,
        pick_threshold,
        render_threshold_table,
        threshold_table,
    )
    from ..evaluation.io import InputFormatError, read_qrels

    if not 0.0 < args.target_precision <= 1.0:
        return fail("calibrate", "--target-precision must be in (0, 1]")
    try:
        qrels = read_qrels(args.qrels)
        scores, tokens = _read_scores(args.scores)
    except (OSError, InputFormatError, ValueError) as exc:
        return fail("calibrate", str(exc))
    pairs = labelled_pairs(scores, qrels, tokens)
    rows = threshold_table(pairs)
    best = pick_threshold(rows, args.target_precision)
    positives = sum(p.relevant for p in pairs)
    print(f"{len(pairs)} scored pairs labelled by the qrels ({positives} relevant)")
    print(render_threshold_table(rows, best, target_precision=args.target_precision))
    return 0 if best is not None else 1
