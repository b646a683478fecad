"""``rank1 eval --report`` and ``rank1 calibrate``: the threshold rules by hand, the CLI on
the loopback server, and the HTML report opened in Debian's headless Chromium (its plots
present, its chains expandable). A screenshot is saved (``$RANK1_SCREENSHOT_DIR``, default
the test's tmp dir); the README's ``docs/eval-report.png`` is one of them."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from rank1_integrations.cli import main
from rank1_integrations.evaluation.calibration import (
    Labelled,
    labelled_pairs,
    pick_threshold,
    threshold_table,
)

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]


def _pair(score: float, relevant: bool) -> Labelled:
    return Labelled("q", f"d{score}", score, relevant, int(relevant))


def test_threshold_table_by_hand() -> None:
    pairs = [_pair(0.9, True), _pair(0.8, False), _pair(0.7, True), _pair(0.6, True),
             _pair(0.2, False), _pair(0.1, True)]
    rows = threshold_table(pairs)
    assert [(r.threshold, r.kept, r.true_positives) for r in rows] == [
        (0.9, 1, 1), (0.8, 2, 1), (0.7, 3, 2), (0.6, 4, 3), (0.2, 5, 3), (0.1, 6, 4)]
    assert [r.recall for r in rows] == [0.25, 0.25, 0.5, 0.75, 0.75, 1.0]
    assert pick_threshold(rows, 0.75).threshold == 0.6  # precision 3/4, most recall
    assert pick_threshold(rows, 0.7).threshold == 0.6
    assert pick_threshold(rows, 1.0).threshold == 0.9
    ties = threshold_table([_pair(0.5, True), Labelled("q", "x", 0.5, False, 0)])
    assert [(r.kept, r.precision) for r in ties] == [(2, 0.5)]  # ties enter together
    assert threshold_table([_pair(0.5, False)]) == []


def test_labelled_pairs_use_only_labelled_documents() -> None:
    pairs = labelled_pairs({"q": {"a": 0.9, "b": 0.1, "c": 0.5}}, {"q": {"a": 2, "b": 0}})
    assert [(p.docid, p.relevant, p.grade) for p in pairs] == [("a", True, 2), ("b", False, 0)]


@pytest.fixture
def evaluated(collection, fake_server, tmp_path, capsys):
    report, judg = tmp_path / "report.html", tmp_path / "j.jsonl"
    args = collection.args("--base-url", fake_server.base_url, "--no-store",
                           "--judgments", str(judg), "--report", str(report),
                           "--target-precision", "0.5")
    assert main(args) == 0
    out = capsys.readouterr().out
    return report, judg, out


def test_eval_report_and_calibrate_agree(evaluated, collection, capsys) -> None:
    report, judg, out = evaluated
    line = next(x for x in out.splitlines() if x.startswith("score_threshold="))
    threshold = float(line.split()[0].split("=")[1])
    # the same table from the judgments file, by hand
    rows = [json.loads(x) for x in judg.read_text().splitlines()]
    from rank1_integrations.evaluation.io import read_qrels

    qrels = read_qrels(collection.qrels)
    scores: dict = {}
    for r in rows:
        scores.setdefault(r["qid"], {})[r["docid"]] = r["score"]
    best = pick_threshold(threshold_table(labelled_pairs(scores, qrels)), 0.5)
    assert best is not None and f"{best.threshold:.4f}" == f"{threshold:.4f}"
    assert main(["calibrate", str(collection.qrels), str(judg),
                 "--target-precision", "0.5"]) == 0
    table = capsys.readouterr().out
    assert f"score_threshold={threshold:.4f}" in table and "<- chosen" in table
    assert main(["calibrate", str(collection.qrels), str(judg),
                 "--target-precision", "1.01"]) == 1
    html = report.read_text()
    assert "<script" not in html and "http://" not in html.split("<svg", 1)[0]
    assert f"score_threshold = {threshold:.4f}" in html


@pytest.mark.slow  # starts a browser
def test_report_in_the_browser(evaluated, tmp_path) -> None:
    from playwright.sync_api import sync_playwright

    report, judg, _ = evaluated
    n_rows = len(judg.read_text().splitlines())
    assert os.path.exists(CHROMIUM), "Debian's chromium is missing (scripts/test.sh installs it)"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1100, "height": 900})
        requests: list[str] = []
        page.on("request", lambda r: requests.append(r.url))
        page.goto(report.as_uri())
        for key in ("ndcg", "reliability", "histogram", "length", "pr"):
            box = page.locator(f"#plot-{key} svg").bounding_box()
            assert box and box["width"] > 200 and box["height"] > 150, key
            assert page.locator(f"#plot-{key} svg path").count() > 5, key  # drawn, not empty
        assert page.locator("#judgments tr").count() == n_rows + 1
        chain = page.locator("#judgments details").first
        assert not chain.locator("pre").is_visible()
        chain.locator("summary").click()
        assert chain.locator("pre").is_visible()
        shots = Path(os.environ.get("RANK1_SCREENSHOT_DIR") or tmp_path)
        shots.mkdir(parents=True, exist_ok=True)
        page.evaluate("window.scrollTo(0, 0)")
        page.screenshot(path=str(shots / "eval-report.png"))
        browser.close()
    assert requests == [report.as_uri()]  # self-contained: nothing else fetched
