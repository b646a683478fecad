"""What the rerank client tests share: the query, the texts and the scores the demo model
gives them (P(true) follows the query/passage word overlap)."""

from __future__ import annotations

from rank1_server.models.demo_model import expected_p_true

from rank1_integrations.ranking import rank_order

__all__ = ["EXPECTED", "KEY", "NO_RETRY", "ORDER", "QUERY", "TEXTS"]

KEY = "sk-rank1-test"
QUERY = "how do bees make honey from nectar"
TEXTS = [
    "Volcanoes erupt when magma rises through the crust.",
    "Bees make honey from nectar they collect from flowers.",
    "Honey bees live in hives.",
    "The stock market fell on Tuesday.",
]
#: The demo model's P(true) for each text, and the order a reranker must give.
EXPECTED = [expected_p_true(QUERY, t) for t in TEXTS]
ORDER = rank_order(range(len(TEXTS)), lambda i: EXPECTED[i])
NO_RETRY = {"max_retries": 0}
