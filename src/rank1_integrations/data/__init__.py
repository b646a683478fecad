"""Data files shipped with the package: the demo corpus and queries.

``rank1 demo`` and ``rank1 eval``'s tests read them; the bundled server's demo model
(``rank1_server.models.demo_model``) builds its vocabulary from them. They live here, in the
client package, so that the client reads them without the server package (which may import
this one, never the reverse). Described in ``demo/README.md`` beside them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["DEMO_CORPUS_PATH", "DEMO_DATA_DIR", "DEMO_QUERIES_PATH", "demo_corpus", "demo_queries"]

DEMO_DATA_DIR = Path(__file__).resolve().parent / "demo"
DEMO_CORPUS_PATH = DEMO_DATA_DIR / "corpus.jsonl"
DEMO_QUERIES_PATH = DEMO_DATA_DIR / "queries.jsonl"


def demo_corpus() -> list[dict[str, str]]:
    """The bundled demo passages: dicts with ``id``, ``title``, ``text``."""
    return [json.loads(line) for line in DEMO_CORPUS_PATH.read_text("utf-8").splitlines() if line]


def demo_queries() -> list[dict[str, Any]]:
    """The bundled demo queries: dicts with ``id``, ``text``, ``relevance`` ({doc id: grade})."""
    return [json.loads(line) for line in DEMO_QUERIES_PATH.read_text("utf-8").splitlines() if line]
