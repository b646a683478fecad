"""What the adapter tests share: a corpus with known rank1 scores on the fake server, and
a transport that makes chosen judgments fail.

The fake's P(true) is :func:`overlap_score` (share of query words in the passage), so the
expected order of any set of passages is known in advance. A passage holding
``FAIL_MARKER`` is answered with HTTP 500 by :class:`FailingTransport`, to exercise
``on_error``.
"""

from __future__ import annotations

import httpx

from rank1_integrations.testing import overlap_score

FAIL_MARKER = "UNJUDGEABLE"

QUERY = "what makes ocean tides rise"
#: (id, text, metadata); query words shared: 0, 3, 5, 1, 4 and 2 of 5, so all scores differ.
CORPUS = [
    ("d-cats", "Cats sleep most of the day.", {"source": "pets", "year": 2001}),
    ("d-half", "Ocean tides rise twice a day.", {"source": "sea", "year": 2002}),
    ("d-full", "What makes ocean tides rise is the Moon.", {"source": "sea", "year": 2003}),
    ("d-one", "The ocean is deep.", {"source": "sea", "year": 2004}),
    ("d-most", "What makes tides rise? The Moon.", {"source": "sea", "year": 2005}),
    ("d-two", "Ocean waves rise in storms.", {"source": "sea", "year": 2006}),
]


def expected_order(passages: list[tuple[str, str]], query: str = QUERY) -> list[str]:
    """Ids of (id, text) pairs ordered as rank1 on the fake server must order them."""
    indexed = list(enumerate(passages))
    indexed.sort(key=lambda item: (-overlap_score(query, item[1][1]), item[0]))
    return [pid for _, (pid, _) in indexed]


class FailingTransport(httpx.AsyncBaseTransport):
    """Forwards to the fake server, but answers 500 for a prompt holding FAIL_MARKER."""

    def __init__(self) -> None:
        self._inner = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if FAIL_MARKER.encode() in request.content:
            return httpx.Response(500, json={"error": {"message": "boom", "type": "server"}})
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()
