"""What the ``rank1`` subcommands share: endpoint options, argument types, instruction
files, error messages."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, get_args

from ..settings import DEFAULTS, Mode

__all__ = [
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


def add_endpoint_options(parser: argparse.ArgumentParser) -> None:
    """The options that say which server to ask and how."""
    ep = parser.add_argument_group(
        "endpoint (defaults: RANK1_BASE_URL, RANK1_MODEL, RANK1_API_KEY)"
    )
    ep.add_argument("--base-url", help="OpenAI-compatible base URL, e.g. http://127.0.0.1:8000/v1")
    ep.add_argument("--model", help="model name the endpoint serves")
    ep.add_argument("--api-key", help="API key (prefer the RANK1_API_KEY variable)")
    ep.add_argument(
        "--mode", choices=get_args(Mode), default=DEFAULTS.mode,
        help="API shape",
    )
    ep.add_argument(
        "--max-reasoning-tokens", type=positive_int, default=DEFAULTS.max_reasoning_tokens,
        metavar="N",
    )
    ep.add_argument(
        "--concurrency", type=positive_int, default=DEFAULTS.concurrency, metavar="N",
        help="judgments in flight",
    )
    ep.add_argument("--timeout", type=float, default=DEFAULTS.timeout, help="seconds per request")
    ep.add_argument(
        "--max-retries", type=non_negative_int, default=DEFAULTS.max_retries, metavar="N",
        help=f"further tries per judgment after a transient error (default {DEFAULTS.max_retries})",
    )
    ep.add_argument(
        "--max-requests-per-minute", type=positive_int,
        default=DEFAULTS.max_requests_per_minute, metavar="N",
        help="the endpoint's request rate limit: requests wait for it (default: none)",
    )
    ep.add_argument(
        "--max-tokens-per-minute", type=positive_int,
        default=DEFAULTS.max_tokens_per_minute, metavar="N",
        help="the endpoint's token rate limit: requests wait for it (default: none)",
    )


def client_from_args(args: argparse.Namespace, **overrides: Any) -> Any:
    """A :class:`~rank1_integrations.Rank1Client` built from the endpoint options."""
    from ..client import Rank1Client

    options: dict[str, Any] = {
        "base_url": args.base_url, "api_key": args.api_key, "model": args.model,
        "mode": args.mode, "max_reasoning_tokens": args.max_reasoning_tokens,
        "concurrency": args.concurrency, "timeout": args.timeout,
        "max_retries": args.max_retries,
        "max_requests_per_minute": args.max_requests_per_minute,
        "max_tokens_per_minute": args.max_tokens_per_minute,
    }
    options.update(overrides)
    return Rank1Client(**options)


def fail(command: str, message: str) -> int:
    """Print ``rank1 COMMAND: error: MESSAGE`` on stderr; return exit status 1."""
    print(f"rank1 {command}: error: {message}", file=sys.stderr)
    return 1
