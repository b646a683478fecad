"""Reading rank1-server's ``/metrics`` in tests: one counter's value, and waiting for one."""

from __future__ import annotations

import asyncio
import re
import time

import httpx


def metric(root: str, name: str) -> float:
    """The value of counter ``name`` on the server at ``root`` (its URL without ``/v1``)."""
    text = httpx.get(f"{root}/metrics").text
    m = re.search(rf"^{name} ([0-9.e+]+)$", text, re.M)
    assert m, name
    return float(m.group(1))


async def wait_for_metric(root: str, name: str, value: float, timeout: float = 30.0) -> None:
    """Wait until counter ``name`` reads ``value`` (fails after ``timeout`` seconds)."""
    deadline = time.monotonic() + timeout
    while metric(root, name) != value:
        assert time.monotonic() < deadline, f"{name} never reached {value}"
        await asyncio.sleep(0.02)
