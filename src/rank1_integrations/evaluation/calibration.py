"""Setting ``score_threshold`` from labelled data: rank1's scores against the qrels.

Only pairs the qrels label are used (a document the qrels do not mention is not counted
as irrelevant); a grade above 0 is relevant. Keeping the documents whose score is at
least ``t`` gives a precision and a recall for every ``t``; :func:`pick_threshold` returns
the lowest threshold (the most recall) whose precision reaches the target.

Usage::

    pairs = labelled_pairs(scores, qrels)          # scores: {qid: {docid: rank1 score}}
    rows = threshold_table(pairs)
    best = pick_threshold(rows, target_precision=0.9)
    print(render_threshold_table(rows, best, target_precision=0.9))
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

__all__ = [
    "Labelled",
    "ThresholdRow",
    "labelled_pairs",
    "pick_threshold",
    "render_threshold_table",
    "threshold_table",
]


@dataclass(frozen=True)
class Labelled:
    """One judged (query, document) pair the qrels label."""

    qid: str
    docid: str
    score: float
    #: The qrels' label: grade > 0.
    relevant: bool
    grade: int
    reasoning_tokens: int = 0


@dataclass(frozen=True)
class ThresholdRow:
    """Keeping the documents with score >= ``threshold``."""

    threshold: float
    kept: int
    true_positives: int
    precision: float
    recall: float


def labelled_pairs(
    scores: Mapping[str, Mapping[str, float]],
    qrels: Mapping[str, Mapping[str, int]],
    reasoning_tokens: Mapping[str, Mapping[str, int]] | None = None,
) -> list[Labelled]:
    """The scored pairs the qrels label, in query then document order."""
    out = []
    for qid, docs in scores.items():
        labels = qrels.get(qid, {})
        for docid, score in docs.items():
            if docid not in labels:
                continue
            grade = int(labels[docid])
            tokens = (reasoning_tokens or {}).get(qid, {}).get(docid, 0)
            out.append(Labelled(qid, docid, float(score), grade > 0, grade, tokens))
    return out


def threshold_table(pairs: Sequence[Labelled]) -> list[ThresholdRow]:
    """One row per distinct score, highest threshold first (precision and recall of
    keeping ``score >= threshold``). Empty without a relevant labelled pair."""
    positives = sum(1 for p in pairs if p.relevant)
    if not pairs or positives == 0:
        return []
    ordered = sorted(pairs, key=lambda p: -p.score)
    rows: list[ThresholdRow] = []
    kept = tp = 0
    for i, p in enumerate(ordered):
        kept += 1
        tp += p.relevant
        if i + 1 < len(ordered) and ordered[i + 1].score == p.score:
            continue  # ties enter together
        rows.append(ThresholdRow(p.score, kept, tp, tp / kept, tp / positives))
    return rows


def pick_threshold(rows: Sequence[ThresholdRow], target_precision: float) -> ThresholdRow | None:
    """The lowest threshold (most recall) whose precision is at least the target, or None
    when no threshold reaches it."""
    ok = [r for r in rows if r.precision >= target_precision]
    return min(ok, key=lambda r: r.threshold) if ok else None


#: Thresholds shown in the terminal table besides the chosen one.
_SHOWN = tuple(round(0.05 * k, 2) for k in range(1, 20))


def render_threshold_table(
    rows: Sequence[ThresholdRow], best: ThresholdRow | None, *, target_precision: float
) -> str:
    """The table for the terminal: thresholds 0.05 .. 0.95 and the chosen one, marked."""
    if not rows:
        return "no relevant labelled pair: no threshold can be calibrated"
    lines = [f"{'threshold':>10}  {'kept':>6}  {'precision':>9}  {'recall':>7}"]
    shown: list[tuple[ThresholdRow, bool]] = []
    for t in _SHOWN:
        at = [r for r in rows if r.threshold >= t]
        if at:
            r = at[-1]
            shown.append((ThresholdRow(t, r.kept, r.true_positives, r.precision, r.recall),
                          False))
    if best is not None:
        shown.append((best, True))
    shown.sort(key=lambda x: (x[0].threshold, x[1]))
    for r, mark in shown:
        lines.append(
            f"{r.threshold:>10.4f}  {r.kept:>6}  {r.precision:>9.4f}  {r.recall:>7.4f}"
            + ("  <- chosen" if mark else "")
        )
    if best is None:
        lines.append(f"no threshold reaches precision {target_precision:.2f}")
    else:
        lines.append(
            f"score_threshold={best.threshold:.4f} reaches precision {best.precision:.4f} "
            f"(target {target_precision:.2f}) at recall {best.recall:.4f}"
        )
    return "\n".join(lines)
