"""Command-line flags generated from a pydantic settings model, as llama-cpp-python's
server makes its flags from its settings: each field's type, check, default and
description are written once, on the field, and a new field gets its flag by itself.

A field's ``json_schema_extra`` may name its flags (``{"flags": ["--model", "-m"]}``;
default ``--field-name``) and an environment variable that gives its default
(``{"env": "RANK1_SERVER_API_KEY"}``). A bool field is a switch: ``--x`` when it defaults
to False, ``--no-x`` when it defaults to True.

Usage::

    parser = argparse.ArgumentParser()
    add_flags(parser, ClientSettings, ["concurrency", "timeout"])
    settings = ClientSettings(**flag_values(parser.parse_args(), ["concurrency", "timeout"]))
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterable, Mapping
from typing import Any, Literal, get_args, get_origin

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

__all__ = ["add_flags", "flag_values", "non_negative_int", "positive_int"]


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


def _extra(info: FieldInfo) -> Mapping[str, Any]:
    extra = info.json_schema_extra
    return extra if isinstance(extra, Mapping) else {}


def _flag_type(info: FieldInfo) -> dict[str, Any]:
    """argparse's ``type`` / ``choices`` / ``metavar`` for a field."""
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


def add_flags(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup, model: type[BaseModel],
    names: Iterable[str] | None = None,
) -> None:
    """One flag per field of ``model`` (or per name of ``names``, in that order); the
    parsed value's ``dest`` is the field's name."""
    for name in names if names is not None else model.model_fields:
        info = model.model_fields[name]
        extra = _extra(info)
        default = None if info.default is PydanticUndefined else info.default
        if "env" in extra:
            default = os.environ.get(extra["env"]) or default
        help_text = info.description or ""
        flags = list(extra.get("flags") or [f"--{name.replace('_', '-')}"])
        if info.annotation is bool:
            if default:
                flags = [f"--no-{name.replace('_', '-')}"]
                parser.add_argument(*flags, dest=name, action="store_false", help=help_text)
            else:
                parser.add_argument(*flags, dest=name, action="store_true", help=help_text)
            continue
        if "env" in extra:
            help_text += f" (env {extra['env']})"
        elif default is not None:
            help_text += f" (default {default})"
        options = _flag_type(info)
        if "metavar" in extra:
            options["metavar"] = extra["metavar"]
        parser.add_argument(*flags, dest=name, default=default, help=help_text, **options)


def flag_values(args: argparse.Namespace, names: Iterable[str]) -> dict[str, Any]:
    """The parsed values of the fields ``names``, by field name."""
    return {name: getattr(args, name) for name in names}
