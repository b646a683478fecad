"""Suite-wide checks."""

from __future__ import annotations

import importlib.util
import os

import pytest


def pytest_configure(config: pytest.Config) -> None:
    # The server, demo and model tests skip without llama-cpp-python; in CI that would turn
    # a broken install into a green run, so there its absence is an error.
    if os.environ.get("CI") and importlib.util.find_spec("llama_cpp") is None:
        raise pytest.UsageError(
            "CI must run the llama.cpp tests, but llama-cpp-python is not installed "
            '(pip install -e ".[all,test]")'
        )
