"""The rerankers' client settings derive from ClientSettings (names, descriptions and the
defaults of the client they build)."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from rank1_integrations import ClientSettings
from rank1_integrations._adapter import _CLIENT_SETTINGS, RerankSettings
from rank1_integrations.settings import DEFAULTS


def test_client_fields_are_client_settings() -> None:
    for name in _CLIENT_SETTINGS:
        field = RerankSettings.model_fields[name]
        assert field.description == ClientSettings.model_fields[name].description, name
        assert field.default is None or name == "api_key"  # unset: the client's default


def test_unset_fields_give_the_clients_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in ("RANK1_BASE_URL", "RANK1_API_KEY", "RANK1_MODEL"):
        monkeypatch.delenv(variable, raising=False)
    settings = RerankSettings(concurrency=2)
    client = settings.rank1_client
    try:
        assert client.settings.concurrency == 2
        for name in ("max_reasoning_tokens", "timeout", "max_retries", "mode"):
            assert getattr(client.settings, name) == getattr(DEFAULTS, name), name
    finally:
        settings.close()
    monkeypatch.setenv("RANK1_API_KEY", "sk-env")
    assert RerankSettings().api_key == SecretStr("sk-env")
