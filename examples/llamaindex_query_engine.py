"""rank1 reranking a LlamaIndex query engine: VectorStoreIndex(...).as_query_engine with
``node_postprocessors=[Rank1Rerank(...)]``.

Run it against any OpenAI-compatible server that serves rank1 (``rank1-server``, vLLM, a
hosted endpoint)::

    RANK1_BASE_URL=http://127.0.0.1:8000/v1 python examples/llamaindex_query_engine.py
    python examples/llamaindex_query_engine.py "how do tides work?" --top-n 2 --async

Settings come from the environment: ``RANK1_BASE_URL`` (default
``http://127.0.0.1:8000/v1``), ``RANK1_MODEL`` (default ``jhu-clsp/rank1-7b``) and
``RANK1_API_KEY``. The index uses a toy embedding and the engine answers with
``response_mode="no_text"`` (retrieval and reranking, no LLM call) so that the example
needs nothing but rank1; put your own embed model and LLM there.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import textwrap

from llama_index.core import Settings, VectorStoreIndex
from llama_index.core.base.base_query_engine import BaseQueryEngine
from llama_index.core.base.response.schema import Response
from llama_index.core.embeddings import MockEmbedding
from llama_index.core.llms import MockLLM
from llama_index.core.schema import TextNode

from rank1_integrations import JudgmentError
from rank1_integrations.llama_index import Rank1Rerank

NODES = [
    TextNode(id_="moon", text="The Moon's gravity causes the ocean tides: the water bulges "
             "towards the Moon and on the opposite side of the Earth.",
             metadata={"source": "oceanography-101"}),
    TextNode(id_="sun", text="The Sun also raises tides; when Sun and Moon line up, spring "
             "tides are higher than usual.", metadata={"source": "oceanography-101"}),
    TextNode(id_="bread", text="Bread rises because yeast ferments sugar and releases carbon "
             "dioxide.", metadata={"source": "kitchen"}),
    TextNode(id_="waves", text="Wind blowing over the ocean surface causes waves.",
             metadata={"source": "oceanography-101"}),
    TextNode(id_="python", text="Python lists keep their insertion order.",
             metadata={"source": "docs"}),
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("query", nargs="?", default="What causes ocean tides?")
    parser.add_argument("--top-n", type=int, default=3)
    parser.add_argument("--async", dest="use_async", action="store_true",
                        help="use the async path (query_engine.aquery)")
    args = parser.parse_args(argv)

    Settings.llm = MockLLM()  # a stand-in: with response_mode="no_text" it is never called
    index = VectorStoreIndex(NODES, embed_model=MockEmbedding(embed_dim=64))
    reranker = Rank1Rerank(top_n=args.top_n, include_reasoning=True, keep_retrieval_score=True)
    engine = index.as_query_engine(
        response_mode="no_text", similarity_top_k=len(NODES), node_postprocessors=[reranker]
    )
    rank1 = reranker.rank1_client
    print(f"rank1: {rank1.model} at {rank1.base_url}")
    print(f"query: {args.query}\n")
    try:
        if args.use_async:
            response = asyncio.run(aquery(engine, reranker, args.query))
        else:
            response = engine.query(args.query)
    except JudgmentError as exc:
        print(f"rank1 failed: {exc}\nIs a rank1 server running at {rank1.base_url}? "
              "Set RANK1_BASE_URL to its /v1 URL.", file=sys.stderr)
        return 1
    finally:
        reranker.close()  # its HTTP client and background loop
    for rank, hit in enumerate(response.source_nodes, 1):
        meta = hit.node.metadata
        verdict = "relevant" if meta["rank1_relevant"] else "not relevant"
        print(f"{rank}. [{verdict}] score={hit.score:.3f} id={hit.node.node_id} "
              f"(retrieval score {meta['retrieval_score']:.3f})")
        print(textwrap.indent(textwrap.fill(hit.node.get_content(), 88), "   "))
        reasoning = textwrap.fill(meta["rank1_reasoning"].strip(), 84)
        print(textwrap.indent(f"reasoning: {reasoning}", "   ") + "\n")
    return 0


async def aquery(engine: BaseQueryEngine, reranker: Rank1Rerank, query: str) -> Response:
    try:
        return await engine.aquery(query)  # type: ignore[return-value]
    finally:
        await reranker.aclose()  # the HTTP client it opened on this event loop


if __name__ == "__main__":
    sys.exit(main())
