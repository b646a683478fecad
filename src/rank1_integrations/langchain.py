"""rank1 as a LangChain document compressor.

Usage::

    from langchain_classic.retrievers import ContextualCompressionRetriever
    from rank1_integrations.langchain import Rank1Rerank

    reranker = Rank1Rerank(base_url="http://127.0.0.1:8000/v1", top_n=3)
    retriever = ContextualCompressionRetriever(
        base_compressor=reranker, base_retriever=store.as_retriever(search_kwargs={"k": 20})
    )
    docs = retriever.invoke("what causes tides?")     # or: await retriever.ainvoke(...)
    docs[0].metadata["relevance_score"], docs[0].metadata["rank1_relevant"]

Each returned document is a copy (``Document.model_copy``) of the one retrieved: same
``id``, every metadata key kept, plus ``relevance_score`` (plain ``float``),
``rank1_relevant`` (``bool``) and, with ``include_reasoning=True``, ``rank1_reasoning``.
Documents come sorted by score, descending (ties keep their order). Unjudged ones (failed
judgments under ``on_error="keep"``, passages a ``deadline`` or ``stop_after_relevant``
left unjudged) come last, in first-stage order, with ``relevance_score=None``,
``rank1_judged=False`` and ``rank1_error``; the output never exceeds ``top_n``. See
:mod:`rank1_integrations._adapter` for the rules on ``top_n`` and ``score_threshold``.

Budgets: ``deadline=SECONDS`` (with ``on_deadline="fallback"`` or ``"raise"``) and
``stop_after_relevant=N`` (relevant: ``score >= score_threshold``, 0.5 without one).

Titles: with ``title_key="title"``, ``doc.metadata["title"]`` is the passage's title
(rank1 reads ``f"{title} {text}"``); a document without that key is judged on its text.

Per-call options: ``compress_documents(docs, query, instruction=..., max_reasoning_tokens=...)``
when you call it yourself; through a retriever (which passes only the documents, the
query and callbacks), ``with reranker.call_options(instruction=...): retriever.invoke(q)``.

Serialisation: the reranker pickles, after use too, without the API key (it comes back
from ``RANK1_API_KEY`` where it is unpickled).

Callbacks: each call is reported as a chain run named ``Rank1Rerank`` (inputs: the query
and the number of documents; outputs: each judgment's index, score and verdict, and
``usage``, the call's totals from :func:`~rank1_integrations.judgment.total_usage`:
``prompt_tokens``, ``reasoning_tokens``, ``requests`` and ``cached``; errors via
``on_chain_error``), and each verdict as one ``on_text`` line the moment it arrives, so
tracers and ``StdOutCallbackHandler`` show what rank1 decided while it decides.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ._adapter import RerankSettings, extra_error, judgment_metadata, select
from .client import OnDeadline, PassageInput
from .judgment import Judgment, total_usage

try:
    from langchain_core.callbacks import AsyncCallbackManager, CallbackManager, Callbacks
    from langchain_core.documents import BaseDocumentCompressor, Document
    from pydantic import Field
except ImportError as exc:  # pragma: no cover - exercised with the package hidden
    raise extra_error("langchain", "langchain", exc) from exc

__all__ = ["Rank1Rerank"]

_RUN_NAME = "Rank1Rerank"


class Rank1Rerank(BaseDocumentCompressor, RerankSettings):
    """Rerank LangChain documents with rank1.

    Settings (all optional): ``client`` or the client settings (``base_url``, ``api_key``,
    ``model``, ``mode``, ``max_reasoning_tokens``, ``concurrency``, ``timeout``,
    ``max_retries``; ``api_key`` defaults to ``RANK1_API_KEY``), ``top_n``,
    ``score_threshold`` (keep ``score >= threshold``), ``include_reasoning``,
    ``instruction``, ``on_error`` (``"raise"``, ``"keep"`` or ``"drop"``), ``title_key``,
    ``deadline``, ``on_deadline`` and ``stop_after_relevant``.
    """

    title_key: str | None = Field(
        default=None,
        description="Metadata key of the document's title, passed to rank1 (None: no title).",
    )

    def compress_documents(
        self,
        documents: Sequence[Document],
        query: str,
        callbacks: Callbacks | None = None,
        *,
        instruction: str | None = None,
        max_reasoning_tokens: int | None = None,
        deadline: float | None = None,
        on_deadline: OnDeadline | None = None,
        stop_after_relevant: int | None = None,
    ) -> Sequence[Document]:
        """Judge every document against ``query``; return the selection, best first.
        ``instruction``, ``max_reasoning_tokens``, ``deadline``, ``on_deadline`` and
        ``stop_after_relevant`` override the reranker's for this call."""
        run = CallbackManager.configure(callbacks).on_chain_start(
            None, _run_inputs(query, documents), name=_RUN_NAME
        )
        try:
            judgments = self.judge_all(
                query, self._passages(documents),
                on_judgment=lambda j: run.on_text(_verdict_line(j), end="\n"),  # as it arrives
                instruction=instruction, max_reasoning_tokens=max_reasoning_tokens,
                deadline=deadline, on_deadline=on_deadline,
                stop_after_relevant=stop_after_relevant,
            )
        except BaseException as exc:
            run.on_chain_error(exc)
            raise
        run.on_chain_end(_run_outputs(judgments))
        return self._select(documents, judgments)

    async def acompress_documents(
        self,
        documents: Sequence[Document],
        query: str,
        callbacks: Callbacks | None = None,
        *,
        instruction: str | None = None,
        max_reasoning_tokens: int | None = None,
        deadline: float | None = None,
        on_deadline: OnDeadline | None = None,
        stop_after_relevant: int | None = None,
    ) -> Sequence[Document]:
        """Async :meth:`compress_documents`: the judgments run concurrently on the loop."""
        run = await AsyncCallbackManager.configure(callbacks).on_chain_start(
            None, _run_inputs(query, documents), name=_RUN_NAME
        )
        try:
            judgments = await self.ajudge_all(
                query, self._passages(documents),
                on_judgment=lambda j: run.on_text(_verdict_line(j), end="\n"),  # as it arrives
                instruction=instruction, max_reasoning_tokens=max_reasoning_tokens,
                deadline=deadline, on_deadline=on_deadline,
                stop_after_relevant=stop_after_relevant,
            )
        except BaseException as exc:
            await run.on_chain_error(exc)
            raise
        await run.on_chain_end(_run_outputs(judgments))
        return self._select(documents, judgments)

    def _passages(self, documents: Sequence[Document]) -> list[PassageInput]:
        """What rank1 judges: each document's text, with its title under ``title_key``
        (a document without one is judged on its text alone)."""
        key = self.title_key
        if key is None:
            return [d.page_content for d in documents]
        return [{"text": d.page_content, "title": d.metadata.get(key)} for d in documents]

    def _select(self, documents: Sequence[Document], judgments: list[Judgment]) -> list[Document]:
        chosen = select(judgments, top_n=self.top_n, score_threshold=self.score_threshold)
        out = []
        for judgment in chosen:
            doc = documents[judgment.index]
            added = judgment_metadata(judgment, include_reasoning=self.include_reasoning)
            out.append(doc.model_copy(update={"metadata": {**doc.metadata, **added}}))
        return out


def _run_inputs(query: str, documents: Sequence[Document]) -> dict[str, Any]:
    return {"query": query, "documents": len(documents)}


def _run_outputs(judgments: list[Judgment]) -> dict[str, Any]:
    return {
        "judgments": [
            {"index": j.index, "score": j.score, "relevant": j.relevant, "error": j.error}
            for j in judgments
        ],
        "usage": total_usage(judgments),
    }


def _verdict_line(j: Judgment) -> str:
    """The ``on_text`` line of one verdict."""
    if j.score is None:
        if j.state.unjudged:
            return f"rank1: document {j.index} {j.error}"
        return f"rank1: document {j.index} failed: {j.error or ''}"
    verdict = "relevant" if j.relevant else "not relevant"
    return f"rank1: document {j.index} {verdict} (score {j.score:.3f})"
