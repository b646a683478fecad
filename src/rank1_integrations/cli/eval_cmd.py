"""``rank1 eval``: rerank a first-stage run with rank1 and compare the metrics.

    rank1 eval --queries queries.tsv --corpus corpus.jsonl --run bm25.trec \\
        --qrels qrels.trec --depth 100 --store judgments.sqlite --out rank1.trec \\
        --base-url http://127.0.0.1:8000/v1 --model jhu-clsp/rank1-7b

Prints nDCG@10, MAP, Recall@100 and MRR for the first stage and after reranking side by
side, a per-query table, the verdict sources, reasoning-token counts and failures
(``--json`` for all of it as one JSON object on stdout). A progress bar runs on stderr.
``--stop-after-relevant N`` adds the early exit's trade-off: nDCG@10, judgments and
reasoning tokens with the early exit beside the full rerank's.

Every judgment is committed to the ``--store`` SQLite file as it completes (default
``rank1-judgments.sqlite`` in the current directory; ``--no-store`` to keep them in memory
only): rerun the same command after a crash or a kill and only the missing judgments are
asked for. The store is keyed by endpoint, mode, model, prompt and reasoning budget, so one
file can serve many experiments.

Exit status: 0 when every judgment succeeded; 3 when some failed (they rank below the
judged documents and are listed; rerun to retry them) or the run was aborted by
``--max-failures`` (no run file written then); 1 for bad input or an unusable store or
endpoint; 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from ._common import add_endpoint_options, client_from_args, fail, positive_int, read_instruction

__all__ = ["add_parser", "run"]

DEFAULT_STORE = "rank1-judgments.sqlite"


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``eval`` on the ``rank1`` command's subparsers."""
    p = subparsers.add_parser(
        "eval",
        help="rerank a first-stage run and compare IR metrics (resumable)",
        description=(
            "Rerank the top --depth documents of a first-stage run with rank1, write the "
            "reranked TREC run and print first-stage vs reranked metrics. Judgments are "
            "committed to --store as they complete, so a rerun resumes where a killed run "
            "stopped."
        ),
        epilog=(
            "Order of the reranked run: judged documents by rank1 score (ties keep their "
            "first-stage order), then documents whose judgment failed (first-stage order), "
            "then documents beyond --depth (first-stage order). The score column encodes "
            "that order (n, n-1, ..., 1); rank1's probabilities go to --judgments."
        ),
    )
    data = p.add_argument_group("collection (files, or --dataset)")
    data.add_argument("--queries", metavar="FILE", help="queries: TSV 'id<TAB>text' or JSONL")
    data.add_argument(
        "--corpus", metavar="FILE", help="corpus: JSONL with _id (or id), title, text"
    )
    data.add_argument(
        "--run", metavar="FILE", help="first-stage run: TREC, or JSON {qid: {docid: score}}"
    )
    data.add_argument("--qrels", metavar="FILE", help="relevance judgments: TREC or BEIR TSV")
    data.add_argument(
        "--dataset",
        metavar="NAME",
        help="an ir_datasets name supplying whatever files are not given (needs ir_datasets)",
    )

    rr = p.add_argument_group("reranking")
    rr.add_argument(
        "--depth",
        type=positive_int,
        default=100,
        metavar="N",
        help="documents reranked per query (default 100)",
    )
    rr.add_argument(
        "--instruction",
        metavar="TEXT|@FILE",
        help="instruction or template ({query} / FILL_QUERY_HERE) for every query; "
        "@FILE reads it from a file (one trailing newline dropped)",
    )
    rr.add_argument(
        "--ndcg-k", type=positive_int, default=10, metavar="K", help="cutoff of nDCG (10)"
    )
    rr.add_argument(
        "--recall-k",
        type=positive_int,
        default=100,
        metavar="K",
        help="cutoff of Recall (100; note that reranking the top K cannot change Recall@K)",
    )
    rr.add_argument(
        "--max-queries", type=positive_int, metavar="N", help="only the first N queries of the run"
    )
    rr.add_argument(
        "--stop-after-relevant",
        type=positive_int,
        metavar="N",
        help="also rerank with the early exit (stop a query once N of its documents are "
        "relevant) and report its nDCG, judgments and reasoning tokens beside the full "
        "rerank's",
    )
    rr.add_argument(
        "--max-failures",
        type=positive_int,
        default=100,
        metavar="N",
        help="stop starting judgments after N failures (default 100)",
    )

    out = p.add_argument_group("output")
    out.add_argument(
        "--store",
        metavar="FILE",
        default=DEFAULT_STORE,
        help=f"SQLite judgment store, shared safely by concurrent runs (default {DEFAULT_STORE})",
    )
    out.add_argument("--no-store", action="store_true", help="keep judgments in memory only")
    out.add_argument("--out", metavar="FILE", help="write the reranked run (TREC) here")
    out.add_argument(
        "--judgments", metavar="FILE", help="write every judgment (score, reasoning...) as JSONL"
    )
    out.add_argument(
        "--report", metavar="FILE",
        help="write a self-contained HTML report with plots (nDCG per query, reliability "
        "diagram, score histogram, reasoning length, threshold precision/recall, every "
        "judgment's chain); needs matplotlib (the eval extra)",
    )
    out.add_argument(
        "--target-precision", type=float, default=0.9, metavar="P",
        help="print (and mark in --report) the lowest score_threshold whose precision on "
        "the qrels reaches P (default 0.9)",
    )
    out.add_argument("--json", action="store_true", help="print the report as JSON")
    out.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")

    add_endpoint_options(p)
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Run ``rank1 eval`` with parsed arguments; returns the exit status."""
    from ..errors import Rank1Error
    from ..evaluation.io import InputFormatError
    from ..evaluation.runner import EvalInputError
    from ..store import StoreError

    try:
        return _run(args)
    except (InputFormatError, EvalInputError, StoreError, Rank1Error, ValueError) as exc:
        return fail("eval", str(exc))
    except ImportError as exc:
        return fail("eval", str(exc))


def _run(args: argparse.Namespace) -> int:
    from ..evaluation.io import write_trec_run
    from ..evaluation.metrics import default_metrics, evaluate
    from ..evaluation.report import build_report, early_exit_report, render_text
    from ..evaluation.runner import CountingCache, rerank_run

    instruction = read_instruction(args.instruction)
    queries, corpus, first_stage, qrels = _load_inputs(args)

    store_path: str | None = None
    if args.no_store:
        backing: Any = None
    else:
        from ..store import JudgmentStore

        store_path = args.store
        backing = JudgmentStore(store_path)
    try:
        cache = CountingCache(backing) if backing is not None else None
        client = client_from_args(
            args,
            instruction=instruction,
            on_error="raise",
            cache=cache if cache is not None else True,
        )
        def run(**options: Any):
            return rerank_run(
                client, queries, corpus, first_stage, depth=args.depth,
                concurrency=args.concurrency, max_failures=args.max_failures, **options,
            )

        try:
            result = run(progress=not args.no_progress)
            early = None
            if args.stop_after_relevant is not None and not result.aborted:
                counted = (cache.hits, cache.misses, cache.puts) if cache is not None else None
                # replays the full run's judgments (the cache holds them), first-stage order
                early = run(progress=False, stop_after_relevant=args.stop_after_relevant)
                if cache is not None and counted is not None:  # the replay is not the run
                    cache.hits, cache.misses, cache.puts = counted
        finally:
            client.close()
    finally:
        if backing is not None:
            backing.close()

    reranked_scores = result.run_scores()
    metrics = default_metrics(ndcg_k=args.ndcg_k, recall_k=args.recall_k)
    first_eval = evaluate(qrels, first_stage, metrics)
    reranked_eval = evaluate(qrels, reranked_scores, metrics)
    run_out = None
    if args.out and not result.aborted:
        write_trec_run(
            args.out,
            {qid: list(scores.items()) for qid, scores in reranked_scores.items()},
            tag="rank1",
        )
        run_out = args.out
    if args.judgments:
        _write_judgments(args.judgments, result)
    report = build_report(
        result,
        first_stage=first_eval,
        reranked=reranked_eval,
        depth=args.depth,
        cache=cache,
        store=store_path,
        run_out=run_out,
    )
    if early is not None:
        report["early_exit"] = early_exit_report(
            result, early, reranked=reranked_eval,
            early_eval=evaluate(qrels, early.run_scores(), metrics),
            stop_after_relevant=args.stop_after_relevant,
        )
    best = None
    if args.report:
        from ..evaluation.html_report import write_html_report

        best = write_html_report(args.report, report, result, qrels,
                                 target_precision=args.target_precision)
    if args.json:
        print(json.dumps(report, indent=2, ensure_ascii=False))
    else:
        print(render_text(report))
        if args.report:
            if best is None:
                print(f"no score_threshold reaches precision {args.target_precision:.2f}")
            else:
                print(f"score_threshold={best.threshold:.4f} reaches precision "
                      f"{best.precision:.4f} (target {args.target_precision:.2f}) at recall "
                      f"{best.recall:.4f}")
            print(f"report written to {args.report}")
    return 3 if (result.failures or result.aborted) else 0


def _load_inputs(args: argparse.Namespace) -> tuple[Any, Any, Any, Any]:
    """Queries, corpus (only the documents within depth), first-stage run and qrels."""
    from ..evaluation.io import ranked_docids, read_corpus, read_qrels, read_queries, read_run

    dataset: Any = None
    if args.dataset:
        from ..evaluation.irds import IRDataset

        dataset = IRDataset(args.dataset)
    for name in ("queries", "corpus", "run", "qrels"):
        if getattr(args, name) is None and dataset is None:
            raise ValueError(f"--{name} is required (or --dataset)")
    queries = read_queries(args.queries) if args.queries else dataset.queries()
    first_stage = read_run(args.run) if args.run else dataset.run()
    qrels = read_qrels(args.qrels) if args.qrels else dataset.qrels()
    if args.max_queries is not None:
        first_stage = dict(list(first_stage.items())[: args.max_queries])
    wanted = {d for scores in first_stage.values() for d in ranked_docids(scores)[: args.depth]}
    if args.corpus:
        corpus = read_corpus(args.corpus, wanted=wanted)
    else:
        corpus = dataset.documents(wanted)
    return queries, corpus, first_stage, qrels


def _write_judgments(path: str, result: Any) -> None:
    """One JSON line per judged (query, document): rank, score, verdict, reasoning, error.

    Written to a temporary name and renamed, like the run file."""
    from ..evaluation.io import atomic_text_file

    with atomic_text_file(path) as fh:
        for qid, order in result.rankings.items():
            judged = result.judgments[qid]
            for rank, docid in enumerate(order, start=1):
                j = judged.get(docid)
                if j is None:
                    continue
                row = {"qid": qid, "docid": docid, "rank": rank}
                row.update(j.model_dump(mode="json", exclude={"index"}))
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
