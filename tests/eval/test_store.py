"""JudgmentStore: the cache protocol, durability under SIGKILL, several processes at once."""

from __future__ import annotations

import multiprocessing
import os
import signal
import sqlite3
import threading
import time
from multiprocessing.connection import Connection
from pathlib import Path

import pytest

from rank1_integrations.cache import JudgmentCache
from rank1_integrations.judgment import Judgment
from rank1_integrations.protocol import VerdictSource
from rank1_integrations.store import JudgmentStore, StoreError


def _judgment(i: int) -> Judgment:
    return Judgment(
        index=i,
        relevant=i % 2 == 0,
        score=0.9 if i % 2 == 0 else 0.1,
        reasoning=f"reasoning {i} with unicode é and </think>",
        source=VerdictSource.FORCED_ANSWER if i % 3 == 0 else VerdictSource.ANSWER_LOGPROBS,
        score_estimated=i % 5 == 0,
        reasoning_tokens=10 * i,
        truncated=i % 7 == 0,
    )


def test_roundtrip_keeps_every_field(tmp_path: Path) -> None:
    with JudgmentStore(tmp_path / "s.sqlite") as store:
        for i in range(8):
            store.put(f"k{i}", _judgment(i))
        for i in range(8):
            assert store.get(f"k{i}") == _judgment(i)
        assert store.get("missing") is None
        assert len(store) == 8
        assert "k3" in store and "nope" not in store
        assert list(store.keys()) == [f"k{i}" for i in range(8)]


def test_is_a_judgment_cache(tmp_path: Path) -> None:
    with JudgmentStore(tmp_path / "s.sqlite") as store:
        assert isinstance(store, JudgmentCache)


def test_first_judgment_under_a_key_is_kept(tmp_path: Path) -> None:
    with JudgmentStore(tmp_path / "s.sqlite") as store:
        store.put("k", _judgment(0))
        store.put("k", _judgment(1))
        assert store.get("k") == _judgment(0)
        assert len(store) == 1


def test_persists_across_reopen_and_uses_wal(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "dir" / "s.sqlite"
    with JudgmentStore(path) as store:
        store.put("k", _judgment(4))
    with JudgmentStore(path) as store:
        assert store.get("k") == _judgment(4)
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()


def test_rejects_a_file_that_is_not_a_store(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("this is not a database\n" * 100)
    with pytest.raises(StoreError, match="notes.txt"):
        JudgmentStore(path)


def test_rejects_another_schema_version(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    JudgmentStore(path).close()
    conn = sqlite3.connect(path)
    conn.execute("UPDATE meta SET value = '999' WHERE name = 'schema_version'")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="schema version 999"):
        JudgmentStore(path)


def test_put_rejects_non_judgments_and_closed_store_refuses(tmp_path: Path) -> None:
    store = JudgmentStore(tmp_path / "s.sqlite")
    with pytest.raises(TypeError, match="Judgment"):
        store.put("k", {"score": 0.5})  # type: ignore[arg-type]
    store.close()
    with pytest.raises(StoreError, match="closed"):
        store.get("k")


def test_threads_share_one_store(tmp_path: Path) -> None:
    store = JudgmentStore(tmp_path / "s.sqlite")
    errors: list[BaseException] = []

    def work(t: int) -> None:
        try:
            for i in range(50):
                store.put(f"t{t}-{i}", _judgment(i))
                assert store.get(f"t{t}-{i}") == _judgment(i)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(store) == 400
    store.close()


def _writer(path: str, tag: str, n: int) -> None:
    """Run in a forked process: own keys plus keys every writer shares."""
    store = JudgmentStore(path, timeout=30)
    for i in range(n):
        j = Judgment(relevant=True, score=0.75, reasoning=tag * 50, source="answer_logprobs")
        store.put(f"{tag}-{i}", j)
        store.put(f"shared-{i}", j)
        assert store.get(f"shared-{i}") is not None


def test_several_processes_write_one_store(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    ctx = multiprocessing.get_context("fork")  # no re-import: the test stays fast
    procs = [ctx.Process(target=_writer, args=(str(path), tag, 60)) for tag in "abcd"]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()
    with JudgmentStore(path) as store:
        assert len(store) == 4 * 60 + 60  # own keys + the shared ones, once each


def test_a_forked_child_opens_its_own_connection(tmp_path: Path) -> None:
    store = JudgmentStore(tmp_path / "s.sqlite")
    store.put("parent", _judgment(1))
    ctx = multiprocessing.get_context("fork")
    child = ctx.Process(target=lambda: store.put("child", _judgment(2)))
    child.start()
    child.join(timeout=30)
    assert child.exitcode == 0
    assert store.get("child") == _judgment(2) and store.get("parent") == _judgment(1)
    store.close()


def _slow_writer(path: str, conn: Connection) -> None:
    store = JudgmentStore(path)
    for i in range(10_000):
        store.put(f"k{i}", Judgment(relevant=False, score=0.2, source="answer_logprobs"))
        conn.send(i)  # sent only after the put returned
        time.sleep(0.002)


def test_sigkill_loses_no_committed_judgment(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    ctx = multiprocessing.get_context("fork")
    receiver, sender = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_slow_writer, args=(str(path), sender))
    proc.start()
    last = -1
    deadline = time.monotonic() + 30
    while last < 40 and time.monotonic() < deadline:
        if receiver.poll(0.1):
            last = receiver.recv()
    assert proc.pid is not None
    os.kill(proc.pid, signal.SIGKILL)
    proc.join(timeout=10)
    assert proc.exitcode == -signal.SIGKILL
    while receiver.poll(0):  # puts acknowledged before the kill
        last = receiver.recv()
    assert last >= 40
    with JudgmentStore(path) as store:
        for i in range(last + 1):
            assert f"k{i}" in store, f"committed judgment k{i} lost"
        assert len(store) in (last + 1, last + 2)  # at most one put not yet acknowledged


def test_a_persistent_cache_for_the_client(tmp_path: Path, fake_server) -> None:
    from rank1_integrations import Rank1Client

    path = tmp_path / "cache.sqlite"
    query, passage = "tidal forces moon", "The moon's gravity makes tidal forces."
    with JudgmentStore(path) as store, Rank1Client(fake_server.base_url, cache=store) as client:
        first = client.judge(query, passage)
        # one completion, and the new client's 4 server probes (/v1/models, /props, and
        # /tokenize in two shapes: the fake answers 404 but to /v1/models)
        assert (first.cached, first.requests) == (False, 1 + 4)
        hit = client.judge(query, passage)
        assert (hit.cached, hit.requests) == (True, 0)  # a hit says so and sent nothing
        assert hit.model_copy(update={"cached": False, "requests": 5}) == first
    assert fake_server.requests == 1
    # a new client and a new store object on the same file: answered from disk
    with JudgmentStore(path) as store, Rank1Client(fake_server.base_url, cache=store) as client:
        from_disk = client.judge(query, passage)
        assert from_disk.cached and from_disk.prompt_tokens == first.prompt_tokens > 0
        assert from_disk.model_copy(update={"cached": False, "requests": 5}) == first
        other = client.judge(query, "Unrelated text about cooking.")
    assert fake_server.requests == 2
    assert other.ok and other.score < first.score
