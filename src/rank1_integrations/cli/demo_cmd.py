"""``rank1 demo``: the whole pipeline offline, in one command.

It starts the bundled ``rank1-server`` on the bundled demo model in the background, runs a
small bundled corpus through a LangChain ``ContextualCompressionRetriever`` and a
LlamaIndex query engine, both reranking with rank1, prints the rankings with scores,
verdicts and reasoning, and stops the server on exit (Ctrl-C included).

The demo model is a development stand-in for offline pipelines, not a relevance model:
a tiny hand-wired network that writes rank1-format output and whose confidence follows the
share of query words found in the passage. For real judgments, serve a real rank1 model
and use ``--base-url``.
"""

from __future__ import annotations

import argparse
import math
import re
import textwrap
from collections.abc import Sequence
from typing import Any

from .._spawn import ServerStartError
from ..data import demo_corpus, demo_queries
from ._common import fail, positive_int

__all__ = ["add_parser", "demo_data", "run_langchain", "run_llamaindex"]

#: Candidates the first stage hands to rank1 per query.
FIRST_STAGE_K = 6
#: Documents kept after reranking.
TOP_N = 3
_WORD = re.compile(r"[a-z0-9]+")
_DIM = 512


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "demo", help="run LangChain and LlamaIndex pipelines with rank1, offline",
        description=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--queries", type=positive_int, default=3, metavar="N",
                   help="how many of the bundled queries to run (default 3)")
    p.add_argument("--base-url",
                   help="use this OpenAI-compatible endpoint instead of starting the local "
                        "server (e.g. a vLLM serving jhu-clsp/rank1-7b)")
    p.add_argument("--model", help="model name at --base-url (default: RANK1_MODEL)")
    p.add_argument("--framework", choices=("both", "langchain", "llamaindex"), default="both")
    p.set_defaults(func=run)
    return p


# --------------------------------------------------------------------------- data


def demo_data() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The bundled corpus (``id``, ``title``, ``text``) and queries (``id``, ``text``,
    ``relevance``: graded labels by document id), this package's data."""
    return demo_corpus(), demo_queries()


def _bag_of_words(text: str) -> list[float]:
    """A deterministic first-stage embedding: hashed word counts, L2-normalised. Crude on
    purpose: it is what rank1 reranks, and needs no model download."""
    vector = [0.0] * _DIM
    for word in _WORD.findall(text.lower()):
        vector[sum(map(ord, word)) * 2654435761 % _DIM] += 1.0
    norm = math.sqrt(sum(v * v for v in vector)) or 1.0
    return [v / norm for v in vector]


# --------------------------------------------------------------------------- pipelines


def run_langchain(
    base_url: str, model: str | None, corpus: Sequence[dict[str, Any]], queries: Sequence[str]
) -> dict[str, list[dict[str, Any]]]:
    """Rerank with ``ContextualCompressionRetriever`` over an in-memory vector store;
    returns, per query, the kept documents (``id``, ``score``, ``relevant``, ``reasoning``)."""
    from langchain_classic.retrievers import ContextualCompressionRetriever
    from langchain_core.documents import Document
    from langchain_core.embeddings import Embeddings
    from langchain_core.vectorstores import InMemoryVectorStore

    from ..langchain import Rank1Rerank

    class BagOfWords(Embeddings):
        def embed_documents(self, texts: list[str]) -> list[list[float]]:
            return [_bag_of_words(t) for t in texts]

        def embed_query(self, text: str) -> list[float]:
            return _bag_of_words(text)

    store = InMemoryVectorStore(BagOfWords())
    store.add_documents([
        Document(id=d["id"], page_content=d["text"], metadata={"title": d["title"]})
        for d in corpus
    ])
    reranker = Rank1Rerank(base_url=base_url, model=model, top_n=TOP_N, include_reasoning=True)
    retriever = ContextualCompressionRetriever(
        base_compressor=reranker,
        base_retriever=store.as_retriever(search_kwargs={"k": FIRST_STAGE_K}),
    )
    results = {}
    try:
        for query in queries:
            results[query] = [
                {"id": doc.id, "title": doc.metadata["title"],
                 "score": doc.metadata["relevance_score"],
                 "relevant": doc.metadata["rank1_relevant"],
                 "reasoning": doc.metadata["rank1_reasoning"]}
                for doc in retriever.invoke(query)
            ]
    finally:
        reranker.close()
    return results


def run_llamaindex(
    base_url: str, model: str | None, corpus: Sequence[dict[str, Any]], queries: Sequence[str]
) -> dict[str, list[dict[str, Any]]]:
    """Rerank inside a ``VectorStoreIndex`` query engine (with a mock LLM: the demo shows
    retrieval and reranking, not generation); same result shape as :func:`run_langchain`."""
    from llama_index.core import VectorStoreIndex
    from llama_index.core.embeddings import BaseEmbedding
    from llama_index.core.llms import MockLLM
    from llama_index.core.schema import TextNode

    from ..llama_index import Rank1Rerank

    class BagOfWords(BaseEmbedding):
        def _get_query_embedding(self, query: str) -> list[float]:
            return _bag_of_words(query)

        async def _aget_query_embedding(self, query: str) -> list[float]:
            return _bag_of_words(query)

        def _get_text_embedding(self, text: str) -> list[float]:
            return _bag_of_words(text)

    nodes = [
        TextNode(id_=d["id"], text=d["text"], metadata={"title": d["title"]},
                 excluded_embed_metadata_keys=["title"])
        for d in corpus
    ]
    index = VectorStoreIndex(nodes, embed_model=BagOfWords())
    reranker = Rank1Rerank(base_url=base_url, model=model, top_n=TOP_N, include_reasoning=True)
    engine = index.as_query_engine(
        similarity_top_k=FIRST_STAGE_K, node_postprocessors=[reranker], llm=MockLLM(max_tokens=8)
    )
    results = {}
    try:
        for query in queries:
            response = engine.query(query)
            results[query] = [
                {"id": n.node.node_id, "title": n.node.metadata["title"], "score": n.score,
                 "relevant": n.node.metadata["rank1_relevant"],
                 "reasoning": n.node.metadata["rank1_reasoning"]}
                for n in response.source_nodes
            ]
    finally:
        reranker.close()
    return results


# --------------------------------------------------------------------------- output


def _print_ranking(name: str, results: dict[str, list[dict[str, Any]]]) -> None:
    print(f"\n=== {name}: first stage top {FIRST_STAGE_K} -> rank1 top {TOP_N} ===")
    for query, docs in results.items():
        print(f"\nquery: {query}")
        for rank, doc in enumerate(docs, start=1):
            verdict = "relevant" if doc["relevant"] else "not relevant"
            print(f"  {rank}. {doc['score']:.3f}  {verdict:<12}  {doc['id']}: {doc['title']}")
            reasoning = textwrap.shorten(doc["reasoning"] or "", width=100, placeholder=" …")
            print(f"       reasoning: {reasoning}")


def run(args: argparse.Namespace) -> int:
    import contextlib

    corpus, queries = demo_data()
    texts = [q["text"] for q in queries[: args.queries]]
    with contextlib.ExitStack() as stack:
        if args.base_url:
            base_url = args.base_url
            print(f"rank1 demo: using {args.base_url}")
        else:
            from ._local import local_server

            print("rank1 demo: starting the local rank1-server with the bundled demo model "
                  "(a development stand-in, not a relevance model) …", flush=True)
            try:
                base_url = stack.enter_context(local_server())
            except (ImportError, ServerStartError) as exc:
                return fail("demo", str(exc))
        if args.framework in ("both", "langchain"):
            _print_ranking("LangChain ContextualCompressionRetriever",
                           run_langchain(base_url, args.model, corpus, texts))
        if args.framework in ("both", "llamaindex"):
            _print_ranking("LlamaIndex VectorStoreIndex query engine",
                           run_llamaindex(base_url, args.model, corpus, texts))
    if not args.base_url:
        print("\nrank1 demo: done; the local server is stopped.")
    return 0
