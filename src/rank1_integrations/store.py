"""A disk store of judgments in one SQLite file: resumable runs and a persistent cache.

:class:`JudgmentStore` implements the client's ``JudgmentCache`` protocol (``get`` /
``put``), so it plugs straight into :class:`~rank1_integrations.client.Rank1Client`::

    from rank1_integrations import Rank1Client
    from rank1_integrations.store import JudgmentStore

    with JudgmentStore("judgments.sqlite") as store:
        client = Rank1Client("http://127.0.0.1:8000/v1", cache=store)
        client.judge("what is rank1?", "rank1 is a reasoning reranker.")  # asks the model
        client.judge("what is rank1?", "rank1 is a reasoning reranker.")  # read from disk

The client computes the key (a hash over endpoint, mode, model, prompt, reasoning budget
and ``protocol.PROTOCOL_VERSION``, so a store never hands back a judgment made under rules
since fixed) and stores successful judgments only, so a store never remembers a failure.

Durability and sharing:

* every ``put`` is its own committed transaction: a process killed with SIGKILL loses
  only the judgments it had not yet put;
* the file is in WAL mode with a busy timeout, so several processes (two ``rank1 eval``
  runs on one store, say) can read and write it at once without corrupting it or failing
  on a momentary lock;
* the first judgment stored under a key is kept (``INSERT OR IGNORE``): rank1 decodes
  greedily, so a second judgment of the same key is a duplicate, and keeping the first
  makes reruns reproduce earlier output exactly;
* one connection per process, shared by threads under a lock; a forked child opens its
  own (SQLite connections must not cross ``fork``).

A store on a network file system (NFS, SMB) is not safe: SQLite's WAL needs shared
memory on one machine.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

from .judgment import Judgment

__all__ = ["JudgmentStore", "StoreError"]

#: Bumped when the table layout changes; a store written by another version is refused.
SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS judgments (
    key        TEXT PRIMARY KEY,
    judgment   TEXT NOT NULL,   -- Judgment.model_dump_json()
    created_at REAL NOT NULL    -- Unix time of the put
);
"""


class StoreError(RuntimeError):
    """The store file cannot be used (not a store, another schema version, corrupt row)."""


class JudgmentStore:
    """Judgments by key in one SQLite file; thread-safe and safe across processes.

    ``path`` is created (with its parent directories) when missing. ``timeout`` is how long
    a write waits for another process's lock before it fails (seconds).

    >>> import tempfile, os
    >>> from rank1_integrations.judgment import Judgment
    >>> path = os.path.join(tempfile.mkdtemp(), "j.sqlite")
    >>> with JudgmentStore(path) as store:
    ...     store.put("k", Judgment(relevant=True, score=0.9, source="answer_logprobs"))
    ...     store.get("k").score, store.get("missing"), len(store)
    (0.9, None, 1)
    """

    def __init__(self, path: str | os.PathLike[str], *, timeout: float = 60.0) -> None:
        self.path = Path(path)
        self.timeout = float(timeout)
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._pid = -1
        self._closed = False
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._connection()  # fail now, not at the first judgment, if the file is unusable

    # ------------------------------------------------------------------ connection

    def _connection(self) -> sqlite3.Connection:
        """This process's connection, opened (and the schema checked) on first use."""
        if self._closed:
            raise StoreError(f"judgment store {self.path} is closed")
        if self._conn is not None and self._pid == os.getpid():
            return self._conn
        try:
            # isolation_level=None: autocommit; each statement is its own transaction.
            conn = sqlite3.connect(
                self.path, timeout=self.timeout, isolation_level=None, check_same_thread=False
            )
            conn.execute(f"PRAGMA busy_timeout = {int(self.timeout * 1000)}")
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise StoreError(f"judgment store {self.path}: cannot use WAL mode ({mode})")
            # NORMAL in WAL mode: a committed put survives the process being killed (it is
            # in the WAL file); only a power loss can drop the last few commits.
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.executescript(_SCHEMA)
            conn.execute(
                "INSERT OR IGNORE INTO meta (name, value) VALUES ('schema_version', ?)",
                (str(SCHEMA_VERSION),),
            )
            version = conn.execute(
                "SELECT value FROM meta WHERE name = 'schema_version'"
            ).fetchone()[0]
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path} is not a usable judgment store: {exc}") from exc
        if version != str(SCHEMA_VERSION):
            conn.close()
            raise StoreError(
                f"judgment store {self.path} has schema version {version}, "
                f"this version of rank1-integrations reads {SCHEMA_VERSION}"
            )
        self._conn, self._pid = conn, os.getpid()
        return conn

    # ------------------------------------------------------------------ cache protocol

    def get(self, key: str) -> Judgment | None:
        """The judgment stored under ``key``, or ``None``."""
        with self._lock:
            row = (
                self._connection()
                .execute("SELECT judgment FROM judgments WHERE key = ?", (key,))
                .fetchone()
            )
        if row is None:
            return None
        try:
            return Judgment.model_validate_json(row[0])
        except ValueError as exc:
            raise StoreError(f"judgment store {self.path}: bad row for key {key}: {exc}") from exc

    def put(self, key: str, judgment: Judgment) -> None:
        """Store ``judgment`` under ``key`` and commit; an existing entry is kept."""
        if not isinstance(judgment, Judgment):
            raise TypeError(f"expected a Judgment, got {type(judgment).__name__}")
        blob = judgment.model_dump_json()
        with self._lock:
            self._connection().execute(
                "INSERT OR IGNORE INTO judgments (key, judgment, created_at) VALUES (?, ?, ?)",
                (key, blob, time.time()),
            )

    # ------------------------------------------------------------------ inspection

    def __len__(self) -> int:
        with self._lock:
            return int(self._connection().execute("SELECT COUNT(*) FROM judgments").fetchone()[0])

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, str):
            return False
        with self._lock:
            row = (
                self._connection()
                .execute("SELECT 1 FROM judgments WHERE key = ?", (key,))
                .fetchone()
            )
        return row is not None

    def keys(self) -> Iterator[str]:
        """All keys, oldest put first (a snapshot taken when called)."""
        with self._lock:
            rows = (
                self._connection()
                .execute("SELECT key FROM judgments ORDER BY created_at, rowid")
                .fetchall()
            )
        return iter([r[0] for r in rows])

    # ------------------------------------------------------------------ lifetime

    def close(self) -> None:
        """Close this process's connection; further use raises :class:`StoreError`."""
        with self._lock:
            if self._conn is not None and self._pid == os.getpid():
                self._conn.close()
            self._conn = None
            self._closed = True

    def __enter__(self) -> JudgmentStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"JudgmentStore({str(self.path)!r})"
