"""Judgment caches: what the client remembers between calls.

rank1 decodes greedily, so the same prompt on the same endpoint, model and budget gives
the same judgment under the same rules (``protocol.PROTOCOL_VERSION``, part of every key:
a rule fix bumps it, so no judgment made under old rules is reused): the client caches
successful judgments in memory by default (bounded, least recently used first out). Pass
``cache=None`` to turn it off, or any object with ``get``/``put`` (see
:class:`JudgmentCache`), such as the SQLite store of ``rank1 eval``.

>>> cache = MemoryCache(maxsize=2)
>>> cache.get("k") is None
True
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from typing import Protocol, runtime_checkable

from .judgment import Judgment

__all__ = ["JudgmentCache", "MemoryCache", "cache_key"]


@runtime_checkable
class JudgmentCache(Protocol):
    """Anything that stores judgments by key. Implementations must be thread-safe."""

    def get(self, key: str) -> Judgment | None: ...

    def put(self, key: str, judgment: Judgment) -> None: ...


class MemoryCache:
    """A bounded, thread-safe LRU cache of judgments (the client's default)."""

    def __init__(self, maxsize: int = 10_000) -> None:
        if maxsize <= 0:
            raise ValueError(f"maxsize must be positive, got {maxsize}")
        self.maxsize = maxsize
        self._items: OrderedDict[str, Judgment] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> Judgment | None:
        with self._lock:
            judgment = self._items.get(key)
            if judgment is not None:
                self._items.move_to_end(key)
            return judgment

    def put(self, key: str, judgment: Judgment) -> None:
        with self._lock:
            self._items[key] = judgment
            self._items.move_to_end(key)
            while len(self._items) > self.maxsize:
                self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)


def cache_key(**fields: object) -> str:
    """A stable key over everything that changes the answer (protocol version, endpoint,
    mode, model, prompt, reasoning budget, ...): the SHA-256 of the fields as sorted JSON.
    The client never calls it with text UTF-8 cannot encode (it fails that passage first)."""
    blob = json.dumps(fields, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()
