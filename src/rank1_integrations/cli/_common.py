"""What the ``rank1`` subcommands share: endpoint options, argument types, instruction
files, error messages."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

from pydantic.fields import FieldInfo

from ..settings import DEFAULTS, ClientSettings

__all__ = [
    "ENDPOINT_SETTINGS",
    "add_endpoint_options",
    "client_from_args",
    "fail",
    "non_negative_int",
    "positive_int",
    "read_instruction",
]


def _int_at_least(text: str, least: int, what: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
    if value < least:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
    return value


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    return _int_at_least(text, 1, "a positive integer")


def non_negative_int(text: str) -> int:
    """argparse type: an integer >= 0."""
    return _int_at_least(text, 0, "a non-negative integer")


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
    "max_retries", "max_requests_per_minute", "max_tokens_per_minute",
)


def _flag_type(info: FieldInfo) -> dict[str, Any]:
    """argparse's ``type`` / ``choices`` / ``metavar`` for a settings field."""
    if get_origin(info.annotation) is Literal:
        return {"choices": get_args(info.annotation)}
    kinds = {a for a in get_args(info.annotation) if a is not type(None)} or {info.annotation}
    if int in kinds:
        least = next((m.ge for m in info.metadata if getattr(m, "ge", None) is not None), None)
        if least == 1:
            return {"type": positive_int, "metavar": "N"}
        if least == 0:
            return {"type": non_negative_int, "metavar": "N"}
        return {"type": int, "metavar": "N"}
    if float in kinds:
        return {"type": float}
    return {}


def add_endpoint_options(parser: argparse.ArgumentParser) -> None:
    """The options that say which server to ask and how: one flag per
    :data:`ENDPOINT_SETTINGS` entry, generated from its settings field."""
    ep = parser.add_argument_group(
        "endpoint (defaults: RANK1_BASE_URL, RANK1_MODEL, RANK1_API_KEY)"
    )
    for name in ENDPOINT_SETTINGS:
        info = ClientSettings.model_fields[name]
        default = getattr(DEFAULTS, name)
        shown = "" if default is None else f" (default {default})"
        ep.add_argument(
            f"--{name.replace('_', '-')}", default=default,
            help=(info.description or "") + shown, **_flag_type(info),
        )


def client_from_args(args: argparse.Namespace, **overrides: Any) -> Any:
    """A :class:`~rank1_integrations.Rank1Client` built from the endpoint options."""
    from ..client import Rank1Client

    options: dict[str, Any] = {name: getattr(args, name) for name in ENDPOINT_SETTINGS}
    options.update(overrides)
    return Rank1Client(**options)


def fail(command: str, message: str) -> int:
    """Print ``rank1 COMMAND: error: MESSAGE`` on stderr; return exit status 1."""
    print(f"rank1 {command}: error: {message}", file=sys.stderr)
    return 1
