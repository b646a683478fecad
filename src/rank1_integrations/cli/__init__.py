"""The ``rank1`` command line: ``rank1 demo``, ``rank1 rerank``, ``rank1 eval``,
``rank1 calibrate``.

Each subcommand lives in its own module exposing ``add_parser(subparsers)`` (which sets
``func`` on its parser) and is imported only when the command line is parsed.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

__all__ = ["main"]

#: Subcommand modules, in the order ``rank1 --help`` lists them.
_SUBCOMMANDS = ("demo", "rerank", "eval", "calibrate")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rank1", description="Run the rank1 reasoning reranker from the command line."
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in _SUBCOMMANDS:
        importlib.import_module(f"{__name__}.{name}_cmd").add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``rank1`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
