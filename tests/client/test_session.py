"""The HTTP session is its own object: SDK clients per event loop, the concurrency bound
per loop, the injected-client rules; transports reach it through their Sdk."""

from __future__ import annotations

import asyncio

import httpx
import openai
import pytest

from rank1_integrations import Rank1Client
from rank1_integrations._session import HttpSession
from rank1_integrations.transports.sdk import Sdk

BASE_URL = "http://rank1.test/v1"


def session(**kwargs) -> HttpSession:
    owner = type("Owner", (), {})()
    kwargs = {"base_url": BASE_URL, "api_key": "k", "timeout": 5.0, "concurrency": 3, **kwargs}
    return HttpSession(owner, **kwargs)


def test_one_sdk_client_and_one_bound_per_event_loop() -> None:
    http = session()

    async def held() -> tuple[openai.AsyncOpenAI | openai.OpenAI, asyncio.Semaphore]:
        assert http.sdk_client() is http.sdk_client()
        return http.sdk_client(), http.semaphore()

    first, second = asyncio.run(held()), asyncio.run(held())
    assert first[0] is not second[0] and first[1] is not second[1]
    assert isinstance(first[0], openai.AsyncOpenAI)
    assert str(first[0].base_url).rstrip("/") == BASE_URL and first[0].max_retries == 0
    assert first[1]._value == 3  # the concurrency bound
    http.close()


def test_an_injected_async_client_is_bound_to_its_first_loop() -> None:
    http = session(client=httpx.AsyncClient())

    async def use() -> None:
        http.check_loop()

    asyncio.run(use())
    with pytest.raises(RuntimeError, match="bound to one event loop"):
        asyncio.run(use())


def test_the_sync_api_runs_on_the_sessions_background_loop() -> None:
    http = session()

    async def where() -> asyncio.AbstractEventLoop:
        return asyncio.get_running_loop()

    loop = http.run(where())
    assert http.run(where()) is loop and not loop.is_closed()
    http.close()
    assert loop.is_closed()


def test_transports_are_handed_the_clients_session() -> None:
    client = Rank1Client(BASE_URL, model="m")
    assert client.transport.sdk.session is client._session  # type: ignore[attr-defined]
    assert isinstance(client.transport.sdk, Sdk)  # type: ignore[attr-defined]
    assert client.transport.probe.sdk is client._sdk  # type: ignore[attr-defined]  # the fitting lives in the completions transport

    async def base_url() -> str:
        return client._sdk.base_url()

    assert client._run(base_url()).rstrip("/") == BASE_URL  # the session's SDK client
    client.close()
