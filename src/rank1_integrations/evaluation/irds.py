"""Read a collection through ``ir_datasets`` (``rank1 eval --dataset NAME``).

``ir_datasets`` is optional and not part of any extra (its downloads need a network):
``pip install ir_datasets``. Each part (queries, qrels, first-stage run, documents) is
taken from the dataset only when the dataset provides it; ``rank1 eval`` lets files
given on the command line take precedence.

Usage::

    ds = IRDataset("beir/scifact/test")
    queries, qrels = ds.queries(), ds.qrels()
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from .io import Document

__all__ = ["IRDataset"]


def _ir_datasets() -> Any:
    try:
        import ir_datasets
    except ImportError as exc:
        raise ImportError(
            "--dataset reads collections through ir_datasets, which is not installed: "
            "pip install ir_datasets (or give --queries, --corpus, --run and --qrels files)"
        ) from exc
    return ir_datasets


class IRDataset:
    """One ``ir_datasets`` dataset, read on demand."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._ds = _ir_datasets().load(name)

    def _need(self, what: str) -> None:
        if not getattr(self._ds, f"has_{what}")():
            raise ValueError(f"ir_datasets {self.name!r} has no {what}; give it as a file")

    def queries(self) -> dict[str, str]:
        self._need("queries")
        return {str(q.query_id): q.default_text() for q in self._ds.queries_iter()}

    def qrels(self) -> dict[str, dict[str, int]]:
        self._need("qrels")
        out: dict[str, dict[str, int]] = {}
        for r in self._ds.qrels_iter():
            out.setdefault(str(r.query_id), {})[str(r.doc_id)] = int(r.relevance)
        return out

    def run(self) -> dict[str, dict[str, float]]:
        """The dataset's first-stage results (``scoreddocs``), e.g. the official BM25 run."""
        self._need("scoreddocs")
        out: dict[str, dict[str, float]] = {}
        for s in self._ds.scoreddocs_iter():
            out.setdefault(str(s.query_id), {})[str(s.doc_id)] = float(s.score)
        return out

    def documents(self, wanted: Collection[str]) -> dict[str, Document]:
        """The documents with the ``wanted`` ids (looked up, not scanned)."""
        self._need("docs")
        found = self._ds.docs_store().get_many(list(wanted))
        docs: dict[str, Document] = {}
        for docid, doc in found.items():
            text = getattr(doc, "text", None)
            if not isinstance(text, str):
                text = doc.default_text()
            title = getattr(doc, "title", None)
            docs[str(docid)] = Document(text=text, title=title if isinstance(title, str) else None)
        return docs
