"""Rerank a first-stage run with rank1: the engine of ``rank1 eval``.

For every query, the top ``depth`` documents of the first-stage run (in trec_eval's order,
see :func:`~rank1_integrations.evaluation.io.ranked_docids`) are judged by the client's
own scheduler, the one behind :meth:`Rank1Client.arerank_many`: a fixed number of
judgments in flight at a time, in query order, the next query's starting while the last
documents of the previous one are still reasoning. With ``stop_after_relevant`` a query
stops once that many of its documents are relevant; the rest stay unjudged (counted in
``skipped``) and rank like failed ones. The final ranking of a query is, top to bottom:

1. the judged documents, by rank1 score descending; equal scores keep their first-stage
   order (a stable sort, so ties are never broken at random);
2. the documents whose judgment failed or that the early exit left unjudged, in
   first-stage order: they get no score, none is invented, and they rank below every
   judged document;
3. the documents beyond ``depth``, in first-stage order, never judged.

Resuming: pass the client a :class:`~rank1_integrations.store.JudgmentStore` as its cache.
The client writes each judgment to it the moment it completes and reads it back on the
next run, so a killed run loses only the judgments in flight. :class:`CountingCache`
counts what came from the store.

Usage::

    from rank1_integrations import Rank1Client
    from rank1_integrations.store import JudgmentStore

    cache = CountingCache(JudgmentStore("judgments.sqlite"))
    with Rank1Client("http://127.0.0.1:8000/v1", cache=cache) as client:
        result = rerank_run(client, queries, corpus, run, depth=100)
    result.rankings["q1"]          # ["d7", "d2", ...]
    result.run_scores()            # {"q1": {"d7": 100.0, ...}}: the order as TREC scores
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .. import telemetry
from .._inputs import RELEVANT_THRESHOLD, CallInput
from .._scheduler import NotJudged
from ..errors import JudgmentError
from ..judgment import Judgment
from ..ranking import rank_order
from .io import Document, ranked_docids

__all__ = [
    "CountingCache",
    "EvalInputError",
    "PairFailure",
    "RerankResult",
    "final_order",
    "plan_pairs",
    "rerank_run",
    "arerank_run",
]


class EvalInputError(ValueError):
    """The inputs do not fit together (a query of the run has no text, a document no entry)."""


if TYPE_CHECKING:
    from ..client import Rank1Client


class CountingCache:
    """Wraps a judgment cache and counts hits, misses and puts (thread-safe enough for
    counters incremented under the GIL). Pass it to the client instead of the cache."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.hits = 0
        self.misses = 0
        self.puts = 0

    def get(self, key: str) -> Judgment | None:
        judgment = self.inner.get(key)
        if judgment is None:
            self.misses += 1
        else:
            self.hits += 1
        return judgment

    def put(self, key: str, judgment: Judgment) -> None:
        self.inner.put(key, judgment)
        self.puts += 1


@dataclass(frozen=True)
class PairFailure:
    """A judgment that failed after the client's retries."""

    qid: str
    docid: str
    message: str


@dataclass
class RerankResult:
    """What :func:`rerank_run` produced."""

    #: ``{qid: [docid, ...]}``, the final order of every document of the first stage.
    rankings: dict[str, list[str]]
    #: ``{qid: {docid: Judgment}}`` for every document sent to rank1 (failures included,
    #: with ``error`` set and no score).
    judgments: dict[str, dict[str, Judgment]]
    failures: list[PairFailure] = field(default_factory=list)
    #: Pairs judged (or read back) in this run, failures included.
    pairs: int = 0
    elapsed_s: float = 0.0
    #: True when the run stopped early after ``max_failures``; rankings are then partial.
    aborted: bool = False
    #: Documents left unjudged by ``stop_after_relevant`` (not in :attr:`judgments`).
    skipped: int = 0

    def run_scores(self) -> dict[str, dict[str, float]]:
        """The rankings as TREC scores: position i of n gets ``float(n - i)``.

        The score column of the written run encodes the final order exactly (so trec_eval
        evaluates the order shown, ties and failed documents included); rank1's own
        probabilities are in :attr:`judgments`.
        """
        return {
            qid: {docid: float(len(order) - i) for i, docid in enumerate(order)}
            for qid, order in self.rankings.items()
        }

    def sources(self) -> dict[str, int]:
        """How many verdicts came from each :class:`VerdictSource` (plus ``"failed"``)."""
        counts: Counter[str] = Counter()
        for docs in self.judgments.values():
            for j in docs.values():
                counts["failed" if not j.ok or j.source is None else j.source.value] += 1
        return dict(counts)


def final_order(
    first_stage: Sequence[str], judgments: Mapping[str, Judgment], depth: int
) -> list[str]:
    """Order one query's documents after reranking (rules in the module docstring).

    ``first_stage`` is the first-stage order; ``judgments`` holds one judgment for each of
    its first ``depth`` documents (a missing one counts as failed).
    """
    head, tail = list(first_stage[:depth]), list(first_stage[depth:])

    def score(docid: str) -> float | None:  # a missing or failed judgment has none
        judgment = judgments.get(docid)
        return judgment.score if judgment is not None and judgment.ok else None

    return rank_order(head, score) + tail


def plan_pairs(
    queries: Mapping[str, str],
    corpus: Mapping[str, Document],
    run: Mapping[str, Mapping[str, float]],
    depth: int,
) -> tuple[dict[str, list[str]], list[tuple[str, str]]]:
    """First-stage orders ``{qid: [docid, ...]}`` and the ``(qid, docid)`` pairs to judge.

    Raises :class:`EvalInputError` naming the query or documents that lack a text.
    """
    if depth <= 0:
        raise EvalInputError(f"depth must be positive, got {depth}")
    missing_queries = [qid for qid in run if qid not in queries]
    if missing_queries:
        raise EvalInputError(
            f"{len(missing_queries)} quer{'y' if len(missing_queries) == 1 else 'ies'} of the "
            f"run not in the queries file: {_sample(missing_queries)}"
        )
    orders: dict[str, list[str]] = {}
    pairs: list[tuple[str, str]] = []
    missing_docs: list[str] = []
    for qid, scores in run.items():
        order = ranked_docids(scores)
        orders[qid] = order
        for docid in order[:depth]:
            if docid not in corpus:
                missing_docs.append(f"{docid} (query {qid})")
            pairs.append((qid, docid))
    if missing_docs:
        raise EvalInputError(
            f"{len(missing_docs)} document(s) within depth {depth} of the run not in the "
            f"corpus: {_sample(missing_docs)}"
        )
    return orders, pairs


def _sample(items: Sequence[str], n: int = 5) -> str:
    shown = ", ".join(repr(x) for x in items[:n])
    return shown + (f" and {len(items) - n} more" if len(items) > n else "")


async def arerank_run(
    client: Rank1Client,
    queries: Mapping[str, str],
    corpus: Mapping[str, Document],
    run: Mapping[str, Mapping[str, float]],
    *,
    depth: int = 100,
    concurrency: int = 8,
    max_failures: int | None = None,
    progress: bool = True,
    on_judgment: Callable[[str, str, Judgment], None] | None = None,
    stop_after_relevant: int | None = None,
    relevant_threshold: float = RELEVANT_THRESHOLD,
) -> RerankResult:
    """Rerank ``run`` with ``client`` (async). See :func:`rerank_run`."""
    if concurrency <= 0:
        raise ValueError(f"concurrency must be positive, got {concurrency}")
    orders, pairs = plan_pairs(queries, corpus, run, depth)
    qids = list(orders)
    empty = [qid for qid in qids if not queries[qid].strip()]
    if empty:
        raise EvalInputError(
            f"{len(empty)} quer{'y' if len(empty) == 1 else 'ies'} of the run with an empty "
            f"text: {_sample(empty)}"
        )
    heads = {qid: orders[qid][:depth] for qid in qids}
    call = CallInput.of(
        [(queries[qid], [{"text": corpus[d].text, "title": corpus[d].title} for d in heads[qid]])
         for qid in qids],
        stop_after_relevant=stop_after_relevant, relevant_threshold=relevant_threshold,
    )
    judgments: dict[str, dict[str, Judgment]] = {qid: {} for qid in orders}
    failures: list[PairFailure] = []
    skipped = 0
    stop = False
    bar = _progress_bar(len(pairs), progress)
    started = time.monotonic()
    scheduler, endpoint = client.scheduler, client.span_endpoint
    sizes = [len(heads[qid]) for qid in qids]
    try:
        if pairs:
            with telemetry.rerank_span(
                endpoint, len(pairs), name=telemetry.EVAL_SPAN_NAME
            ) as parent:
                jobs = scheduler.plan(call, telemetry.child_records(parent, endpoint, sizes))
                outcomes = scheduler.outcomes(jobs, workers=concurrency)
                async with contextlib.aclosing(outcomes):
                    async for number, outcome in outcomes:
                        qid = qids[number]
                        docid = heads[qid][outcome.index]
                        if bar is not None:
                            bar.update(1)
                        if isinstance(outcome, NotJudged):
                            skipped += 1
                            continue
                        if isinstance(outcome, JudgmentError):
                            # every failure is recorded, none hidden
                            message = f"{type(outcome).__name__}: {outcome}"
                            judgment = Judgment(
                                index=outcome.index, relevant=None, score=None, error=message
                            )
                            failures.append(PairFailure(qid, docid, message))
                        else:
                            judgment = outcome
                        judgments[qid][docid] = judgment
                        if on_judgment is not None:
                            on_judgment(qid, docid, judgment)
                        if bar is not None and failures:
                            bar.set_postfix(failed=len(failures), refresh=False)
                        if max_failures is not None and len(failures) >= max_failures:
                            stop = True  # nothing more starts; in flight is cancelled
                            break
                parent.record([j for docs in judgments.values() for j in docs.values()])
    finally:
        if bar is not None:
            bar.close()
    rankings = {qid: final_order(order, judgments[qid], depth) for qid, order in orders.items()}
    return RerankResult(
        rankings=rankings,
        judgments=judgments,
        failures=failures,
        pairs=sum(len(v) for v in judgments.values()),
        elapsed_s=time.monotonic() - started,
        aborted=stop,
        skipped=skipped,
    )


def rerank_run(
    client: Rank1Client,
    queries: Mapping[str, str],
    corpus: Mapping[str, Document],
    run: Mapping[str, Mapping[str, float]],
    *,
    depth: int = 100,
    concurrency: int = 8,
    max_failures: int | None = None,
    progress: bool = True,
    on_judgment: Callable[[str, str, Judgment], None] | None = None,
    stop_after_relevant: int | None = None,
    relevant_threshold: float = RELEVANT_THRESHOLD,
) -> RerankResult:
    """Rerank the top ``depth`` documents of every query of ``run`` with rank1.

    ``queries`` maps query ids to texts, ``corpus`` document ids to
    :class:`~rank1_integrations.evaluation.io.Document`, ``run`` is the first stage
    (``{qid: {docid: score}}``). At most ``concurrency`` judgments are in flight (the
    client may limit further). A failed judgment is recorded, not raised; with
    ``max_failures`` the run stops starting new judgments once that many failed and the
    result is marked ``aborted`` (judgments in flight then are cancelled). With
    ``stop_after_relevant`` each query stops once that many of its judgments score
    ``>= relevant_threshold``. ``progress`` draws a tqdm bar on stderr.
    """

    async def main() -> RerankResult:
        try:
            return await arerank_run(
                client,
                queries,
                corpus,
                run,
                depth=depth,
                concurrency=concurrency,
                max_failures=max_failures,
                progress=progress,
                on_judgment=on_judgment,
                stop_after_relevant=stop_after_relevant,
                relevant_threshold=relevant_threshold,
            )
        finally:
            # The client opened HTTP connections bound to this event loop, which ends here:
            # close them (the client stays usable on other loops).
            aclose = getattr(client, "aclose", None)
            if aclose is not None:
                await aclose()

    return asyncio.run(main())


def _progress_bar(total: int, enabled: bool) -> Any:
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(
        total=total,
        desc="rank1 judgments",
        unit="doc",
        file=sys.stderr,
        dynamic_ncols=True,
        smoothing=0.1,
    )
