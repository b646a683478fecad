"""The application side of ``examples/scale_out/run.sh``: a LangChain
``ContextualCompressionRetriever`` whose ``CohereRerank`` (langchain-cohere, unchanged
but for ``base_url``) calls rank1-server's gateway, which judges through vLLM's router on
two vLLM replicas. Prints each query's ranking, then what each replica served (from its
``/metrics``) and the wall time.

    python examples/scale_out/pipeline.py --gateway http://127.0.0.1:8000 \\
        --replica a=http://127.0.0.1:8001 --replica b=http://127.0.0.1:8002
"""

from __future__ import annotations

import argparse
import re
import statistics
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
from langchain_classic.retrievers import ContextualCompressionRetriever
from langchain_cohere import CohereRerank
from langchain_core.documents import Document
from langchain_core.embeddings import DeterministicFakeEmbedding
from langchain_core.vectorstores import InMemoryVectorStore
from pydantic import SecretStr

#: The passages (id: text); the demo model's verdict follows the words they share with
#: the query.
PASSAGES = {
    "honey": "Bees make honey from nectar they collect from flowers.",
    "hives": "Honey bees live in hives.",
    "volcano": "Volcanoes erupt when magma rises through the crust.",
    "magma": "Magma that reaches the surface is called lava.",
    "tides": "The Moon's gravity causes the ocean tides.",
    "stocks": "The stock market fell on Tuesday.",
    "bread": "Bread rises because yeast ferments sugar.",
    "cats": "Cats sleep for most of the day.",
}
DOCUMENTS = [Document(page_content=text, metadata={"id": key}) for key, text in PASSAGES.items()]
QUERIES = [
    "how do bees make honey from nectar",
    "why do volcanoes erupt",
    "what causes the ocean tides",
    "why does bread rise",
    "where do honey bees live",
    "what is lava made of magma",
]

#: vLLM's counter of finished requests (one series per finish reason).
SUCCESS = re.compile(r"^vllm:request_success_total\{[^}]*\} ([0-9.e+]+)$", re.M)


def ids(docs: list[Document]) -> list[str]:
    return [d.metadata["id"] for d in docs]


def served(replica: str) -> int:
    """Requests the vLLM replica at ``replica`` (its root URL) has finished so far."""
    text = httpx.get(f"{replica}/metrics", timeout=10).text
    return int(sum(float(v) for v in SUCCESS.findall(text)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gateway", required=True, help="rank1-server's root URL")
    parser.add_argument("--model", default="rank1-demo")
    parser.add_argument("--replica", action="append", default=[], metavar="NAME=URL",
                        help="a vLLM replica's root URL, to read its /metrics")
    parser.add_argument("--single", metavar="URL",
                        help="a second gateway's root URL, in front of one replica alone: "
                        "the same queries through it, for comparison")
    parser.add_argument("--queries", type=int, default=len(QUERIES))
    parser.add_argument("--top-n", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=5,
                        help="timed rounds of the batch through each side (with --single)")
    args = parser.parse_args()
    replicas = dict(r.split("=", 1) for r in args.replica)

    store = InMemoryVectorStore(DeterministicFakeEmbedding(size=64))
    store.add_documents(DOCUMENTS)

    def pipeline(gateway: str) -> ContextualCompressionRetriever:
        # the gateway was started without --api-key: any key passes
        reranker = CohereRerank(model=args.model, base_url=gateway, top_n=args.top_n,
                                cohere_api_key=SecretStr("unused"))
        return ContextualCompressionRetriever(
            base_compressor=reranker,
            base_retriever=store.as_retriever(search_kwargs={"k": len(DOCUMENTS)}),
        )

    retriever = pipeline(args.gateway)
    queries = [QUERIES[i % len(QUERIES)] for i in range(args.queries)]
    before = {name: served(url) for name, url in replicas.items()}

    start = time.perf_counter()
    first = retriever.invoke(queries[0])  # one query alone (the gateway's first call)
    one = time.perf_counter() - start
    answers = batch(retriever, queries)[0]
    for query, docs in zip(queries, answers, strict=True):
        ranking = ", ".join(f"{d.metadata['id']} {d.metadata['relevance_score']:.3f}"
                            for d in docs)
        print(f"{query!r}: {ranking}")
    assert ids(first) == ids(answers[0]), "the same query ranked otherwise"
    after = {name: served(url) for name, url in replicas.items()}
    calls = 1 + len(queries)
    print(f"\n{calls * len(DOCUMENTS)} documents judged ({calls} rerank calls of "
          f"{len(DOCUMENTS)})")
    for name in replicas:
        print(f"replica {name}: {after[name] - before[name]} vLLM requests")
    print(f"wall time: one query {one:.2f} s (first call)")
    if not args.single:
        return
    # the same batch through both replicas and through one, alternately, ``rounds`` times
    alone = pipeline(args.single)
    alone.invoke(queries[0])  # its gateway's first call, as above
    two_s: list[float] = []
    one_s: list[float] = []
    for _ in range(args.rounds):
        for target, times in ((retriever, two_s), (alone, one_s)):
            answered, seconds = batch(target, queries)
            assert [ids(a) for a in answered] == [ids(a) for a in answers], "other rankings"
            times.append(seconds)
    two, single = statistics.median(two_s), statistics.median(one_s)
    print(f"{len(queries)} queries at once, median of {args.rounds} rounds: two replicas "
          f"{two:.2f} s, one replica {single:.2f} s ({single / two:.2f}x; same rankings)")


def batch(retriever: ContextualCompressionRetriever, queries: list[str]
          ) -> tuple[list[list[Document]], float]:
    """All ``queries`` at once (one thread each): their answers and the wall time."""
    with ThreadPoolExecutor(len(queries)) as pool:
        start = time.perf_counter()
        answers = list(pool.map(retriever.invoke, queries))
        return answers, time.perf_counter() - start

if __name__ == "__main__":
    main()
