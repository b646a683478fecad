"""Settings from the environment, injected clients, one async client per event loop."""

from __future__ import annotations

import asyncio
import warnings

import httpx
import openai
import pytest

from rank1_integrations import JudgmentError, Rank1Client
from rank1_integrations.client import DEFAULT_BASE_URL, DEFAULT_MODEL

from .rank1_payloads import RecordingServer, body_of, prompt_for, vllm_completion


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ("RANK1_BASE_URL", "RANK1_API_KEY", "RANK1_MODEL"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_defaults_without_environment(clean_env: pytest.MonkeyPatch) -> None:
    client = Rank1Client()
    assert client.base_url == DEFAULT_BASE_URL == "http://127.0.0.1:8000/v1"
    assert client.model == DEFAULT_MODEL == "jhu-clsp/rank1-7b"
    assert client.max_reasoning_tokens == 2048
    assert client.mode == "completions"


def test_environment_settings_reach_the_wire(clean_env: pytest.MonkeyPatch) -> None:
    with RecordingServer() as server:
        clean_env.setenv("RANK1_BASE_URL", server.base_url)
        clean_env.setenv("RANK1_API_KEY", "sk-from-env")
        clean_env.setenv("RANK1_MODEL", "env-model")
        with Rank1Client(cache=None) as client:  # the SDK's default HTTP stack
            assert client.judge("q", "p").ok
    (path, headers, body), = server.requests
    assert path == "/v1/completions"
    assert headers["authorization"] == "Bearer sk-from-env"
    assert body["model"] == "env-model"
    assert body["prompt"] == prompt_for("q", "p")
    assert body["skip_special_tokens"] is False
    assert body["stop"] == ["</think> true", "</think> false"]


def test_arguments_win_over_the_environment(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("RANK1_BASE_URL", "http://127.0.0.1:9/v1")  # nothing listens there
    clean_env.setenv("RANK1_API_KEY", "sk-env")
    clean_env.setenv("RANK1_MODEL", "env-model")
    with RecordingServer() as server:
        with Rank1Client(server.base_url, "sk-arg", "arg-model", cache=None) as client:
            assert client.judge("q", "p").ok
    (_, headers, body), = server.requests
    assert headers["authorization"] == "Bearer sk-arg"
    assert body["model"] == "arg-model"


def test_async_client_is_created_per_event_loop(clean_env: pytest.MonkeyPatch) -> None:
    """Two asyncio.run calls with one Rank1Client: the second loop gets its own SDK client
    (the first one's connections belong to a closed loop)."""
    with RecordingServer() as server:
        client = Rank1Client(server.base_url, cache=None)

        async def one(passage: str) -> float | None:
            judgments = await client.arerank("q", [passage, passage + "!"])
            return judgments[0].score

        with warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)
            first = asyncio.run(one("p1"))
            second = asyncio.run(one("p2"))
        # and the sync API (its own background loop) next to them
        third = client.judge("q", "p3").score
        client.close()
    assert first is not None and first == second == third
    assert len(server.requests) == 5


def test_injected_async_openai_client_is_used(clean_env: pytest.MonkeyPatch) -> None:
    seen: list[httpx.Request] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=vllm_completion())

    sdk = openai.AsyncOpenAI(base_url="http://injected.test/v1", api_key="sk-injected",
                             max_retries=0,
                             http_client=httpx.AsyncClient(transport=httpx.MockTransport(handler)))
    client = Rank1Client(model="m", client=sdk, cache=None)
    judgment = asyncio.run(client.ajudge("q", "p"))
    assert judgment.ok
    # the server probe (once per client) goes through the injected client too
    assert [str(r.url) for r in seen] == ["http://injected.test/v1/models",
                                          "http://injected.test/v1/completions"]
    assert seen[1].headers["authorization"] == "Bearer sk-injected"
    assert body_of(seen[1])["model"] == "m"


def test_injected_sync_openai_client_is_used(clean_env: pytest.MonkeyPatch) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=vllm_completion())

    sdk = openai.OpenAI(base_url="http://sync.test/v1", api_key="sk-sync", max_retries=0,
                        http_client=httpx.Client(transport=httpx.MockTransport(handler)))
    with Rank1Client(client=sdk, cache=None) as client:
        judgments = client.rerank("q", ["a", "b", "c"])
        assert asyncio.run(client.ajudge("q", "d")).ok
    assert len(judgments) == 3 and all(j.ok for j in judgments)
    assert len(seen) == 5  # 4 judgments and the server probe (once per client)
    assert {str(r.url) for r in seen} == {"http://sync.test/v1/completions",
                                          "http://sync.test/v1/models"}


def test_injected_httpx_async_client_is_used(clean_env: pytest.MonkeyPatch) -> None:
    seen: list[httpx.Request] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=vllm_completion())

    http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    client = Rank1Client("http://httpx.test/v1", "sk-h", client=http, cache=None)
    assert asyncio.run(client.ajudge("q", "p")).ok
    assert [str(r.url) for r in seen] == ["http://httpx.test/v1/models",
                                          "http://httpx.test/v1/completions"]
    assert seen[1].headers["authorization"] == "Bearer sk-h"


def test_injected_httpx_sync_client_is_used(clean_env: pytest.MonkeyPatch) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=vllm_completion())

    http = httpx.Client(transport=httpx.MockTransport(handler))
    with Rank1Client("http://httpx-sync.test/v1", client=http, cache=None) as client:
        assert client.judge("q", "p").ok
    assert [str(r.url) for r in seen] == ["http://httpx-sync.test/v1/models",
                                          "http://httpx-sync.test/v1/completions"]


@pytest.mark.parametrize(("max_retries", "expected"), [(0, 1), (2, 3)])
def test_default_http_stack_has_the_sdk_retries_off(
    clean_env: pytest.MonkeyPatch, max_retries: int, expected: int
) -> None:
    """Over the SDK's default HTTP stack: a server that always fails gets exactly
    1 + max_retries requests (the SDK adds none of its own)."""
    with RecordingServer(fail_first=(503,) * 10) as server:
        with Rank1Client(server.base_url, cache=None, max_retries=max_retries,
                         retry_backoff=0.01) as client:
            with pytest.raises(JudgmentError) as info:
                client.judge("q", "p")
    assert len(server.requests) == expected
    assert isinstance(info.value.__cause__, openai.InternalServerError)


def test_default_http_stack_retries_then_succeeds(clean_env: pytest.MonkeyPatch) -> None:
    with RecordingServer(fail_first=(500, 429)) as server:
        with Rank1Client(server.base_url, cache=None, retry_backoff=0.01) as client:
            assert client.judge("q", "p").ok
    assert len(server.requests) == 3


def test_timeout_applies_and_is_retried(clean_env: pytest.MonkeyPatch) -> None:
    with RecordingServer(delay=0.5) as server:
        with Rank1Client(server.base_url, cache=None, timeout=0.1, max_retries=1,
                         retry_backoff=0.01) as client:
            with pytest.raises(JudgmentError) as info:
                client.judge("q", "p")
    assert len(server.requests) == 2
    assert isinstance(info.value.__cause__, openai.APITimeoutError)


def test_one_settings_model_gives_every_default(clean_env: pytest.MonkeyPatch) -> None:
    """The client's parameters, the CLI's options and the rerankers' fields take their
    defaults and descriptions from ClientSettings."""
    import argparse
    import inspect

    from rank1_integrations import ClientSettings
    from rank1_integrations.cli._common import ENDPOINT_SETTINGS, add_endpoint_options
    from rank1_integrations.settings import DEFAULTS

    parameters = inspect.signature(Rank1Client).parameters
    for name, field in ClientSettings.model_fields.items():
        assert parameters[name].default == field.default, name
    assert DEFAULTS.max_reasoning_tokens == 2048 and DEFAULTS.concurrency == 8
    assert DEFAULTS.timeout == 600.0 and DEFAULTS.max_retries == 3

    parser = argparse.ArgumentParser()
    add_endpoint_options(parser)
    args = parser.parse_args([])
    for name in ("mode", "max_reasoning_tokens", "concurrency", "timeout", "max_retries"):
        assert getattr(args, name) == getattr(DEFAULTS, name), name
    # the flags are generated from the fields: help is the field's description, and the
    # field's check is the flag's (ge=1: a positive integer)
    help_text = " ".join(parser.format_help().split())
    for name in ENDPOINT_SETTINGS:
        assert " ".join(ClientSettings.description(name).split()) in help_text, name
    with pytest.raises(SystemExit):
        parser.parse_args(["--concurrency", "0"])

    client = Rank1Client(max_retries=0)
    assert client.settings == ClientSettings.model_construct(
        **{**DEFAULTS.model_dump(), "base_url": DEFAULT_BASE_URL, "api_key": "EMPTY",
           "model": DEFAULT_MODEL, "max_retries": 0})
    client.close()


def test_settings_read_the_environment_when_made(clean_env: pytest.MonkeyPatch) -> None:
    from rank1_integrations import ClientSettings

    assert ClientSettings().base_url == DEFAULT_BASE_URL
    clean_env.setenv("RANK1_BASE_URL", "http://env.test/v1")
    clean_env.setenv("RANK1_MODEL", "env-model")
    settings = ClientSettings(model="", api_key="sk")  # empty: the environment's
    assert (settings.base_url, settings.model, settings.api_key) == (
        "http://env.test/v1", "env-model", "sk")
    assert Rank1Client().settings.base_url == "http://env.test/v1"
    with pytest.raises(ValueError, match="max_retrys"):
        ClientSettings(max_retrys=3)  # type: ignore[call-arg]
