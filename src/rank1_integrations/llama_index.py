"""rank1 as a LlamaIndex node postprocessor.

Usage::

    from llama_index.core import VectorStoreIndex
    from rank1_integrations.llama_index import Rank1Rerank

    reranker = Rank1Rerank(base_url="http://127.0.0.1:8000/v1", top_n=3)
    engine = index.as_query_engine(similarity_top_k=20, node_postprocessors=[reranker])
    response = engine.query("what causes tides?")     # or: await engine.aquery(...)
    for node in response.source_nodes:
        node.score, node.metadata["rank1_relevant"]

Each returned :class:`NodeWithScore` holds a copy of the retrieved node (same id, every
metadata key kept; the caller's nodes are not touched) with ``score`` = rank1's
confidence and ``metadata["rank1_relevant"]``; with ``include_reasoning=True`` also
``metadata["rank1_reasoning"]``, and with ``keep_retrieval_score=True`` the retriever's
score in ``metadata["retrieval_score"]``. What the reranker adds to the metadata is
hidden from the embedder and from the LLM (``excluded_*_metadata_keys``), unless
``show_reasoning_to_llm=True`` shows the verdict and the reasoning to the LLM.

Nodes come sorted by score, descending (ties keep their order). Unjudged ones (failed
judgments under ``on_error="keep"``, nodes a ``deadline`` or ``stop_after_relevant`` left
unjudged) come last in first-stage order with ``score=None``,
``metadata["rank1_judged"] = False`` and ``metadata["rank1_error"]``; the output never
exceeds ``top_n``. See :mod:`rank1_integrations._adapter` for the rules on ``top_n`` and
``score_threshold``.

Per-call options: ``postprocess_nodes`` takes only the nodes and the query, so
``instruction`` / ``max_reasoning_tokens`` for one call go through
``with reranker.call_options(instruction=...): engine.query(q)`` (a context variable: it
reaches the query engine's sync and async paths and its worker threads).

Serialisation: ``to_dict`` / ``from_dict`` (and ``to_json`` / ``from_json``, pickle)
round-trip the settings; the API key is never written out (it comes back from
``RANK1_API_KEY``), nor is a ``client`` you passed (the copy builds its own).

Observability: ``ReRankStartEvent`` / ``ReRankEndEvent`` on the instrumentation
dispatcher (the end event's ``tags["rank1_usage"]`` holds the call's totals from
:func:`~rank1_integrations.judgment.total_usage`: ``prompt_tokens``,
``reasoning_tokens``, ``requests``, ``cached``), one :class:`Rank1JudgmentEvent` per
verdict as it arrives, a span around both the sync and the async path, and the legacy
``CBEventType.RERANKING`` callback event.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ._adapter import (
    REASONING_KEY,
    RELEVANT_KEY,
    RerankSettings,
    extra_error,
    judgment_metadata,
    select,
)
from .judgment import Judgment, total_usage

try:
    from llama_index.core.bridge.pydantic import Field
    from llama_index.core.callbacks import CBEventType, EventPayload
    from llama_index.core.instrumentation import get_dispatcher
    from llama_index.core.instrumentation.events.base import BaseEvent
    from llama_index.core.instrumentation.events.rerank import ReRankEndEvent, ReRankStartEvent
    from llama_index.core.postprocessor.types import BaseNodePostprocessor
    from llama_index.core.schema import MetadataMode, NodeWithScore, QueryBundle
except ImportError as exc:  # pragma: no cover - exercised with the package hidden
    raise extra_error("llama_index", "llamaindex", exc) from exc

__all__ = ["Rank1JudgmentEvent", "Rank1Rerank", "USAGE_TAG"]

dispatcher = get_dispatcher(__name__)

#: The ``ReRankEndEvent`` tag holding the call's usage totals.
USAGE_TAG = "rank1_usage"
#: Where ``keep_retrieval_score=True`` puts the retriever's score (LlamaIndex convention).
RETRIEVAL_SCORE_KEY = "retrieval_score"


class Rank1JudgmentEvent(BaseEvent):
    """One rank1 verdict, dispatched the moment it arrives (between ``ReRankStartEvent``
    and ``ReRankEndEvent``, in the reranker's span). ``index`` is the node's position in
    the reranker's input; ``judged`` is False for a failure kept under ``on_error="keep"``
    and for a node a ``deadline`` or ``stop_after_relevant`` left unjudged (``error``
    says why)."""

    index: int
    score: float | None = None
    relevant: bool | None = None
    judged: bool = True
    #: ``judged``, ``failed``, ``deadline`` or ``stopped_early`` (:class:`JudgmentState`).
    state: str = "judged"
    error: str | None = None
    reasoning_tokens: int = 0

    @classmethod
    def class_name(cls) -> str:
        return "Rank1JudgmentEvent"

    @classmethod
    def of(cls, judgment: Judgment) -> Rank1JudgmentEvent:
        return cls(
            index=judgment.index, score=judgment.score, relevant=judgment.relevant,
            judged=judgment.state.judged, state=judgment.state.value, error=judgment.error,
            reasoning_tokens=judgment.reasoning_tokens,
        )


def _dispatch_judgment(judgment: Judgment) -> None:
    dispatcher.event(Rank1JudgmentEvent.of(judgment))


class Rank1Rerank(BaseNodePostprocessor, RerankSettings):
    """Rerank LlamaIndex nodes with rank1.

    Settings (all optional): ``client`` or the client settings (``base_url``, ``api_key``,
    ``model``, ``mode``, ``max_reasoning_tokens``, ``concurrency``, ``timeout``,
    ``max_retries``; ``api_key`` defaults to ``RANK1_API_KEY``), ``top_n``,
    ``score_threshold`` (keep ``score >= threshold``), ``include_reasoning``,
    ``instruction``, ``on_error`` (``"raise"``, ``"keep"`` or ``"drop"``), ``deadline``,
    ``on_deadline``, ``stop_after_relevant``, and the LlamaIndex ones below.
    """

    keep_retrieval_score: bool = Field(
        default=False, description="Put the retriever's score in metadata['retrieval_score']."
    )
    show_reasoning_to_llm: bool = Field(
        default=False,
        description="Let the LLM see metadata['rank1_reasoning'] and ['rank1_relevant'] "
        "(needs include_reasoning=True); hidden by default.",
    )
    metadata_mode: MetadataMode = Field(
        default=MetadataMode.NONE,
        description="Which metadata goes into the passage rank1 judges (default: none, "
        "the node's text only).",
    )

    def model_post_init(self, context: Any) -> None:
        super().model_post_init(context)
        if self.show_reasoning_to_llm and not self.include_reasoning:
            raise ValueError("show_reasoning_to_llm=True needs include_reasoning=True")

    @classmethod
    def class_name(cls) -> str:
        return "Rank1Rerank"

    @dispatcher.span
    def _postprocess_nodes(
        self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None = None
    ) -> list[NodeWithScore]:
        query = _query(query_bundle)
        self._start_event(nodes, query_bundle)
        with self.callback_manager.event(
            CBEventType.RERANKING, payload=self._callback_payload(nodes, query)
        ) as event:
            judgments = self.judge_all(
                query, self._passages(nodes), on_judgment=_dispatch_judgment
            )
            out = self._select(nodes, judgments)
            event.on_end(payload={EventPayload.NODES: out})
        dispatcher.event(ReRankEndEvent(nodes=out, tags={USAGE_TAG: total_usage(judgments)}))
        return out

    @dispatcher.span
    async def _apostprocess_nodes(
        self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None = None
    ) -> list[NodeWithScore]:
        query = _query(query_bundle)
        self._start_event(nodes, query_bundle)
        with self.callback_manager.event(
            CBEventType.RERANKING, payload=self._callback_payload(nodes, query)
        ) as event:
            judgments = await self.ajudge_all(
                query, self._passages(nodes), on_judgment=_dispatch_judgment
            )
            out = self._select(nodes, judgments)
            event.on_end(payload={EventPayload.NODES: out})
        dispatcher.event(ReRankEndEvent(nodes=out, tags={USAGE_TAG: total_usage(judgments)}))
        return out

    # ------------------------------------------------------------------ helpers

    def _passages(self, nodes: list[NodeWithScore]) -> list[str]:
        return [n.node.get_content(metadata_mode=self.metadata_mode) for n in nodes]

    def _start_event(self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None) -> None:
        dispatcher.event(ReRankStartEvent(
            query=query_bundle, nodes=nodes, top_n=self.top_n or len(nodes),
            model_name=self.rank1_client.model,
        ))

    def _callback_payload(self, nodes: list[NodeWithScore], query: str) -> dict[str, Any]:
        return {
            EventPayload.NODES: nodes,
            EventPayload.MODEL_NAME: self.rank1_client.model,
            EventPayload.QUERY_STR: query,
            EventPayload.TOP_K: self.top_n,
        }

    def _select(
        self, nodes: list[NodeWithScore], judgments: list[Judgment]
    ) -> list[NodeWithScore]:
        chosen = select(judgments, top_n=self.top_n, score_threshold=self.score_threshold)
        out = []
        for judgment in chosen:
            original = nodes[judgment.index]
            added = judgment_metadata(
                judgment, include_reasoning=self.include_reasoning, score_key=None
            )
            if self.keep_retrieval_score:
                added[RETRIEVAL_SCORE_KEY] = original.score
            shown = {REASONING_KEY, RELEVANT_KEY} if self.show_reasoning_to_llm else set()
            node = original.node
            copy = node.model_copy(update={
                "metadata": {**node.metadata, **added},
                "excluded_embed_metadata_keys": _union(node.excluded_embed_metadata_keys, added),
                "excluded_llm_metadata_keys": _union(
                    node.excluded_llm_metadata_keys, (k for k in added if k not in shown)
                ),
            })
            out.append(NodeWithScore(node=copy, score=judgment.score))
        return out


def _query(query_bundle: QueryBundle | None) -> str:
    if query_bundle is None:
        raise ValueError(
            "Rank1Rerank needs the query: call postprocess_nodes(nodes, query_str=...) "
            "or pass query_bundle"
        )
    return query_bundle.query_str


def _union(existing: list[str], added: Iterable[str]) -> list[str]:
    """A new list: ``existing`` then the keys of ``added`` not already in it."""
    out = list(existing)
    out.extend(k for k in added if k not in out)
    return out
