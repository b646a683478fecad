"""rank1 reranking a LangChain retriever: ContextualCompressionRetriever over an in-memory
vector store.

Run it against any OpenAI-compatible server that serves rank1 (``rank1-server``, vLLM, a
hosted endpoint)::

    RANK1_BASE_URL=http://127.0.0.1:8000/v1 python examples/langchain_retriever.py
    python examples/langchain_retriever.py "how do tides work?" --top-n 2 --async

Settings come from the environment: ``RANK1_BASE_URL`` (default
``http://127.0.0.1:8000/v1``), ``RANK1_MODEL`` (default ``jhu-clsp/rank1-7b``) and
``RANK1_API_KEY``. The vector store uses a toy embedding so that the example needs nothing
but rank1; put your own embeddings there.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import textwrap

from langchain_classic.retrievers import ContextualCompressionRetriever
from langchain_core.documents import Document
from langchain_core.embeddings import DeterministicFakeEmbedding
from langchain_core.vectorstores import InMemoryVectorStore

from rank1_integrations import JudgmentError
from rank1_integrations.langchain import Rank1Rerank

DOCUMENTS = [
    Document(id="moon", page_content="The Moon's gravity causes the ocean tides: the water "
             "bulges towards the Moon and on the opposite side of the Earth.",
             metadata={"source": "oceanography-101"}),
    Document(id="sun", page_content="The Sun also raises tides; when Sun and Moon line up, "
             "spring tides are higher than usual.", metadata={"source": "oceanography-101"}),
    Document(id="bread", page_content="Bread rises because yeast ferments sugar and releases "
             "carbon dioxide.", metadata={"source": "kitchen"}),
    Document(id="waves", page_content="Wind blowing over the ocean surface causes waves.",
             metadata={"source": "oceanography-101"}),
    Document(id="python", page_content="Python lists keep their insertion order.",
             metadata={"source": "docs"}),
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("query", nargs="?", default="What causes ocean tides?")
    parser.add_argument("--top-n", type=int, default=3)
    parser.add_argument("--async", dest="use_async", action="store_true",
                        help="use the async path (retriever.ainvoke)")
    args = parser.parse_args(argv)

    store = InMemoryVectorStore(DeterministicFakeEmbedding(size=64))
    store.add_documents(DOCUMENTS)
    reranker = Rank1Rerank(top_n=args.top_n, include_reasoning=True)
    retriever = ContextualCompressionRetriever(
        base_compressor=reranker,
        base_retriever=store.as_retriever(search_kwargs={"k": len(DOCUMENTS)}),
    )
    rank1 = reranker.rank1_client
    print(f"rank1: {rank1.model} at {rank1.base_url}")
    print(f"query: {args.query}\n")
    try:
        if args.use_async:
            docs = asyncio.run(ainvoke(retriever, reranker, args.query))
        else:
            docs = retriever.invoke(args.query)
    except JudgmentError as exc:
        print(f"rank1 failed: {exc}\nIs a rank1 server running at {rank1.base_url}? "
              "Set RANK1_BASE_URL to its /v1 URL.", file=sys.stderr)
        return 1
    finally:
        reranker.close()  # its HTTP client and background loop
    for rank, doc in enumerate(docs, 1):
        verdict = "relevant" if doc.metadata["rank1_relevant"] else "not relevant"
        print(f"{rank}. [{verdict}] score={doc.metadata['relevance_score']:.3f} id={doc.id}")
        print(textwrap.indent(textwrap.fill(doc.page_content, 88), "   "))
        reasoning = textwrap.fill(doc.metadata["rank1_reasoning"].strip(), 84)
        print(textwrap.indent(f"reasoning: {reasoning}", "   ") + "\n")
    return 0


async def ainvoke(
    retriever: ContextualCompressionRetriever, reranker: Rank1Rerank, query: str
) -> list[Document]:
    try:
        return await retriever.ainvoke(query)
    finally:
        await reranker.aclose()  # the HTTP client it opened on this event loop


if __name__ == "__main__":
    sys.exit(main())
