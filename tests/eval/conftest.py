"""A small IR test collection written to disk, and the fake rank1 server.

Three judged queries and one unjudged, 40 documents. Each judged query has relevant
documents that contain every query word (the fake server gives those P(true) ~0.95) and
non-relevant ones with some or none of the words; the first-stage run ranks the relevant
documents low, so reranking the top ``DEPTH`` has something to fix. For q3, one relevant
document sits beyond ``DEPTH`` in the first stage and must stay there.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import rank1_integrations
from rank1_integrations.testing import FakeRank1Server, overlap_score

SRC = str(Path(rank1_integrations.__file__).resolve().parents[1])

DEPTH = 8

QUERIES = {
    "q1": "tidal forces moon gravity",
    "q2": "photosynthesis chlorophyll light energy",
    "q3": "volcano magma eruption lava",
    "q4": "glacier ice sheet melting",  # in the run, not in the qrels
}

# Per query, the first-stage order: (docid, title, text, relevant grade or None).
_FIRST_STAGE: dict[str, list[tuple[str, str, str, int | None]]] = {
    "q1": [
        ("d101", "Ocean", "Waves are driven by wind over the ocean.", 0),
        ("d102", "Moon", "The moon orbits the earth every month.", 0),
        ("d103", "Tides", "Tidal patterns differ between coasts.", None),
        ("d104", "Tides", "Tidal forces come from the moon and its gravity.", 1),
        ("d105", "Gravity", "Gravity keeps planets in orbit.", 0),
        ("d106", "Sailing", "Sailors watch the weather closely.", 0),
        ("d107", "Physics", "The moon's gravity creates tidal forces on earth.", 2),
        ("d108", "Moon", "Moon gravity is weaker than earth gravity.", 0),
        ("d109", "Tides", "Tidal forces moon gravity explained again.", 1),  # beyond depth
        ("d110", "Fish", "Fish swim in schools.", 0),
    ],
    "q2": [
        ("d201", "Plants", "Plants need water and light.", 0),
        ("d202", "Energy", "Solar energy powers panels.", 0),
        ("d203", "Leaves", "Leaves contain chlorophyll.", 0),
        ("d204", "Biology", "Cells divide by mitosis.", None),
        ("d205", "Photosynthesis", "Chlorophyll absorbs light energy for photosynthesis.", 2),
        ("d206", "Light", "Light travels fast.", 0),
        ("d207", "Botany", "In photosynthesis, chlorophyll turns light into energy.", 1),
        ("d208", "Colour", "Green is the colour of chlorophyll.", 0),
        ("d209", "Soil", "Soil holds nutrients.", 0),
        ("d210", "Rain", "Rain falls from clouds.", 0),
    ],
    "q3": [
        ("d301", "Mountains", "Mountains form over millions of years.", 0),
        ("d302", "Volcano", "A volcano can be dormant for centuries.", 0),
        ("d303", "Magma", "Magma is molten rock below the surface.", 0),
        ("d304", "Eruption", "The volcano eruption sent magma and lava downhill.", 1),
        ("d305", "Lava", "Lava cools into basalt.", 0),
        ("d306", "Rocks", "Rocks are igneous, sedimentary or metamorphic.", 0),
        ("d307", "Islands", "Hawaii formed from volcanic activity.", 0),
        ("d308", "Ash", "Ash clouds disrupt flights.", 0),
        ("d309", "Lava flows", "Volcano eruption: magma rises and lava flows.", 1),  # beyond
        ("d310", "Quakes", "Earthquakes shake the ground.", 0),
    ],
    "q4": [
        ("d401", "Ice", "Glacier ice sheet melting raises sea levels.", None),
        ("d402", "Snow", "Snow falls in winter.", None),
        ("d403", "Arctic", "The arctic ice sheet is shrinking.", None),
        ("d404", "Climate", "Glacier melting is a sign of warming.", None),
        ("d405", "Rivers", "Rivers carry meltwater.", None),
        ("d406", "Seas", "Sea levels rise slowly.", None),
        ("d407", "Poles", "Penguins live near the south pole.", None),
        ("d408", "Ice", "Ice sheet melting glacier data.", None),
        ("d409", "Glaciers", "Glaciers move slowly.", None),
        ("d410", "Weather", "Weather changes daily.", None),
    ],
}


@dataclass(frozen=True)
class Collection:
    """Paths of the collection files, and the facts tests check against."""

    root: Path
    queries: Path
    corpus: Path
    run: Path
    qrels: Path
    #: {qid: [(docid, title, text, grade)]} in first-stage order.
    first_stage: dict[str, list[tuple[str, str, str, int | None]]]

    def args(self, *extra: str) -> list[str]:
        """``rank1 eval`` arguments for this collection (no endpoint)."""
        return [
            "eval",
            "--queries", str(self.queries),
            "--corpus", str(self.corpus),
            "--run", str(self.run),
            "--qrels", str(self.qrels),
            "--depth", str(DEPTH),
            "--no-progress",
            *extra,
        ]  # fmt: skip

    #: The reranking depth the tests use.
    depth: int = DEPTH
    #: The query texts by id.
    texts: dict[str, str] = field(default_factory=lambda: dict(QUERIES))

    @property
    def pairs(self) -> int:
        return sum(min(DEPTH, len(docs)) for docs in self.first_stage.values())

    def expected_ranking(self, depth: int = DEPTH) -> dict[str, list[str]]:
        """The reranked order the fake server must produce, worked out independently:
        top ``depth`` by the fake's P(true) on the prompt's passage (``"title text"``),
        ties in first-stage order, then the rest in first-stage order."""
        out: dict[str, list[str]] = {}
        for qid, docs in self.first_stage.items():
            head = docs[:depth]
            ordered = sorted(
                range(len(head)),
                key=lambda i: (-overlap_score(QUERIES[qid], f"{head[i][1]} {head[i][2]}"), i),
            )
            out[qid] = [head[i][0] for i in ordered] + [d[0] for d in docs[depth:]]
        return out

    def grades(self, qid: str) -> dict[str, int]:
        return {d: g for d, _, _, g in self.first_stage[qid] if g is not None}


def write_collection(root: Path) -> Collection:
    root.mkdir(parents=True, exist_ok=True)
    queries = root / "queries.tsv"
    queries.write_text("".join(f"{qid}\t{text}\n" for qid, text in QUERIES.items()))
    corpus = root / "corpus.jsonl"
    with corpus.open("w") as fh:
        for docs in _FIRST_STAGE.values():
            for docid, title, text, _ in docs:
                fh.write(json.dumps({"_id": docid, "title": title, "text": text}) + "\n")
    run = root / "bm25.trec"
    with run.open("w") as fh:
        for qid, docs in _FIRST_STAGE.items():
            for rank, (docid, *_rest) in enumerate(docs, start=1):
                fh.write(f"{qid} Q0 {docid} {rank} {20.0 - rank:.2f} bm25\n")
    qrels = root / "qrels.trec"
    with qrels.open("w") as fh:
        for qid, docs in _FIRST_STAGE.items():
            for docid, _, _, grade in docs:
                if grade is not None:
                    fh.write(f"{qid} 0 {docid} {grade}\n")
    return Collection(root, queries, corpus, run, qrels, _FIRST_STAGE)


@pytest.fixture
def collection(tmp_path: Path) -> Collection:
    return write_collection(tmp_path / "collection")


class _CountingView:
    """The shared fake server, with ``requests`` counted from the start of one test."""

    def __init__(self, server: FakeRank1Server) -> None:
        self.base_url = server.base_url
        self._server, self._start = server, server.requests

    @property
    def requests(self) -> int:
        return self._server.requests - self._start


@pytest.fixture(scope="session")
def _shared_fake_server():
    with FakeRank1Server() as server:
        yield server


@pytest.fixture
def fake_server(_shared_fake_server: FakeRank1Server) -> _CountingView:
    """The fake rank1 server (shared: its shutdown takes ~0.5 s). Tests stay independent
    because each uses its own store or none; ``requests`` counts this test's requests."""
    return _CountingView(_shared_fake_server)


def cli_command(*args: str) -> list[str]:
    """``python -m rank1_integrations.cli ...``: the ``rank1`` command in a fresh process
    (run from the source tree, so the package need not be installed)."""
    return [sys.executable, "-m", "rank1_integrations.cli", *args]


def cli_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}


@pytest.fixture
def run_cli() -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run ``rank1`` in a subprocess and wait for it."""

    def run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            cli_command(*args), env=cli_env(), capture_output=True, text=True, timeout=timeout
        )

    return run


@pytest.fixture
def spawn_cli() -> Callable[..., subprocess.Popen[str]]:
    """Start ``rank1`` in a subprocess without waiting (to kill it, or run two at once)."""

    def spawn(*args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            cli_command(*args),
            env=cli_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    return spawn
