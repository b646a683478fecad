"""Fixtures for the adapter tests: the loopback fake rank1 server and clients on it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from rank1_integrations import Rank1Client
from rank1_integrations.testing import FakeRank1Server

from .adapter_support import FailingTransport


@pytest.fixture(scope="module")
def server() -> Iterator[FakeRank1Server]:
    """One fake server per test module (stopping one takes half a second); tests that
    count requests compare ``server.requests`` before and after."""
    with FakeRank1Server() as fake:
        yield fake


@pytest.fixture
def client(server: FakeRank1Server) -> Iterator[Rank1Client]:
    """A client without cache, so that every judgment is a request the server counts."""
    rank1 = Rank1Client(base_url=server.base_url, cache=None, max_retries=0)
    yield rank1
    rank1.close()


@pytest.fixture
async def aclient(server: FakeRank1Server) -> AsyncIterator[Rank1Client]:
    """Like ``client``, for async tests (closes its SDK client on the test's loop)."""
    rank1 = Rank1Client(base_url=server.base_url, cache=None, max_retries=0)
    yield rank1
    await rank1.aclose()


@pytest.fixture
async def failing_client(server: FakeRank1Server) -> AsyncIterator[Rank1Client]:
    """A client whose requests for passages holding FAIL_MARKER fail with HTTP 500.

    Use it from async tests only (its httpx client belongs to the test's loop)."""
    http = httpx.AsyncClient(transport=FailingTransport())
    rank1 = Rank1Client(base_url=server.base_url, cache=None, max_retries=0, client=http)
    yield rank1
    await http.aclose()
