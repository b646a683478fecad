"""What the ``rank1`` subcommands share: endpoint options, argument types, instruction
files, error messages."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ..settings import ClientSettings
from .flags import add_flags, flag_values, non_negative_int, positive_int

__all__ = [
    "ENDPOINT_SETTINGS",
    "add_endpoint_options",
    "client_from_args",
    "fail",
    "non_negative_int",
    "positive_int",
    "read_instruction",
]


def read_instruction(value: str | None) -> str | None:
    """``--instruction`` as given, or the contents of ``@FILE`` (one trailing newline off)."""
    if value is None or not value.startswith("@"):
        return value
    path = Path(value[1:])
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"--instruction {value}: cannot read {path}: {exc.strerror}") from exc
    return text[:-1] if text.endswith("\n") else text


#: The client settings ``rank1``'s subcommands take as flags (``--max-retries`` sets
#: ``max_retries``); type, check, default and help come from
#: :class:`~rank1_integrations.settings.ClientSettings`' fields, written there once.
ENDPOINT_SETTINGS = (
    "base_url", "model", "api_key", "mode", "max_reasoning_tokens", "concurrency", "timeout",
    "max_retries", "max_requests_per_minute", "max_tokens_per_minute", "two_step",
)


def add_endpoint_options(parser: argparse.ArgumentParser) -> None:
    """The options that say which server to ask and how: one flag per
    :data:`ENDPOINT_SETTINGS` entry, generated from its settings field."""
    ep = parser.add_argument_group(
        "endpoint (defaults: RANK1_BASE_URL, RANK1_MODEL, RANK1_API_KEY)"
    )
    add_flags(ep, ClientSettings, ENDPOINT_SETTINGS)


def client_from_args(args: argparse.Namespace, **overrides: Any) -> Any:
    """A :class:`~rank1_integrations.Rank1Client` built from the endpoint options."""
    from ..client import Rank1Client

    options = flag_values(args, ENDPOINT_SETTINGS)
    options.update(overrides)
    return Rank1Client(**options)


def fail(command: str, message: str) -> int:
    """Print ``rank1 COMMAND: error: MESSAGE`` on stderr; return exit status 1."""
    print(f"rank1 {command}: error: {message}", file=sys.stderr)
    return 1
