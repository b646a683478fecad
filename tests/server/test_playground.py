"""The playground at ``/``, opened as a person would: Debian's headless Chromium (driven by
Playwright) on a real rank1-server serving the demo model. The ranking and scores on the
page equal ``/v1/rerank``'s for the same input; also behind a path-prefix proxy, and off
with ``ui=False``.

A screenshot is saved (``$RANK1_SCREENSHOT_DIR``, default the test's tmp dir); the README's
``docs/playground.png`` is one of them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
import uvicorn
from rank1_server.app import ServerConfig, create_app
from rank1_server.playground import UI_DIR
from rank1_server.testing import running_server
from starlette.applications import Starlette
from starlette.routing import Mount

from rank1_integrations._spawn import free_port

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]

QUERY = "how do bees make honey from nectar"
PASSAGES = [
    "Volcanoes erupt when magma rises through the crust.",
    "Bees make honey from nectar they collect from flowers.",
    "Honey bees live in hives.",
    "Nectar is a sugary liquid that flowers make.",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    assert os.path.exists(CHROMIUM), "Debian's chromium is missing (scripts/test.sh installs it)"
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


def _screenshot_dir(tmp_path: Path) -> Path:
    d = Path(os.environ.get("RANK1_SCREENSHOT_DIR") or tmp_path)
    d.mkdir(parents=True, exist_ok=True)
    return d


def _run_on_page(browser, url: str, tmp_path: Path, *, width: int = 1000) -> list[dict]:
    """Type the query and passages, start with the keyboard, wait for the ranking; the
    documents as the page shows them, top to bottom."""
    page = browser.new_page(viewport={"width": width, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("requestfailed", lambda r: errors.append(f"{r.url} failed"))
    page.goto(url)
    page.fill("#query", QUERY)
    page.fill("#passages", "\n".join(PASSAGES))
    page.fill("#budget", "64")
    page.focus("#query")
    page.keyboard.press("Control+Enter")
    page.wait_for_selector("body[data-state=done]", timeout=60_000)
    shown = page.eval_on_selector_all("#results > li.doc", """els => els.map(e => ({
        index: +e.dataset.index, rank: +e.dataset.rank, score: +e.dataset.score,
        score_text: e.querySelector('.score').textContent,
        verdict: e.querySelector('.verdict').textContent,
        live: e.querySelector('.live').textContent,
        bar: e.querySelector('.bar > span').style.width}))""")
    # a click (and Enter) opens the whole chain
    page.click("#results > li.doc >> nth=0")
    assert page.is_visible("#chain")
    shown[0]["chain"] = page.text_content("#chain-text")
    page.keyboard.press("Escape")
    assert not page.is_visible("#chain")
    page.focus("#results > li.doc >> nth=1")
    page.keyboard.press("Enter")
    assert page.is_visible("#chain")
    shown[1]["chain"] = page.text_content("#chain-text")
    page.keyboard.press("Escape")
    page.screenshot(path=str(_screenshot_dir(tmp_path) / f"playground-{width}.png"),
                    full_page=True)
    page.close()
    assert not errors, errors
    return shown


def _snippets(browser, url: str) -> tuple[str, str]:
    """The curl command and Python call the copy buttons give for the test's input."""
    page = browser.new_page()
    page.goto(url)
    page.fill("#query", QUERY)
    page.fill("#passages", "\n".join(PASSAGES))
    page.fill("#budget", "64")
    page.click("#copy-curl")
    curl = page.text_content("#snippet")
    page.click("#copy-python")
    python = page.text_content("#snippet")
    page.close()
    assert curl.startswith("curl ") and "rank1_integrations" in python
    return curl, python


def _check_against_api(shown: list[dict], api: str) -> None:
    r = httpx.post(f"{api}/rerank", json={
        "query": QUERY, "documents": PASSAGES, "max_reasoning_tokens": 64}, timeout=60)
    results = r.json()["results"]
    assert [s["index"] for s in shown] == [x["index"] for x in results]
    assert [s["rank"] for s in shown] == list(range(1, len(PASSAGES) + 1))
    for s, x in zip(shown, results, strict=True):
        assert s["score"] == pytest.approx(x["relevance_score"], abs=1e-6)
        assert s["score_text"] == f"{x['relevance_score']:.4f}"
        assert s["verdict"] == ("relevant" if x["relevant"] else "not relevant")
        assert s["live"] == x["reasoning"]
        assert s["bar"] == f"{100 * x['relevance_score']:.1f}%"
    assert shown[0]["chain"] == results[0]["reasoning"] != ""
    assert shown[1]["chain"] == results[1]["reasoning"]
    assert {x["relevant"] for x in results} == {True, False}  # the demo model tells them apart


def test_playground_ranks_like_the_api(browser, demo_server: str, tmp_path: Path) -> None:
    root = demo_server.removesuffix("/v1")
    shown = _run_on_page(browser, f"{root}/", tmp_path)
    _check_against_api(shown, demo_server)
    ranking = [s["index"] for s in shown]
    curl, python = _snippets(browser, f"{root}/")
    # the copied curl command, run: its stream ends with the same ranking
    out = subprocess.run(["bash", "-c", curl], capture_output=True, text=True, timeout=60,
                         check=True).stdout
    last = [line for line in out.splitlines() if line.startswith("data:")][-1]
    assert json.loads(last[5:])["ranking"] == ranking
    # the copied Python call, run: the same verdicts and scores
    out = subprocess.run([sys.executable, "-c", python], capture_output=True, text=True,
                         timeout=120, check=True).stdout
    printed = [line.split() for line in out.splitlines()]
    assert [int(p[0]) for p in printed] == ranking
    assert [float(p[2]) for p in printed] == [round(s["score"], 4) for s in shown]
    shown = _run_on_page(browser, f"{root}/", tmp_path, width=390)  # a phone's width
    _check_against_api(shown, demo_server)


@pytest.fixture(scope="module")
def prefixed_server(demo_model: Path) -> Iterator[str]:
    """rank1-server mounted under ``/tools/rank1`` of another app, as behind a proxy that
    forwards a path prefix. Yields the page's URL."""
    app = create_app(ServerConfig(model_path=str(demo_model), parallel=2, n_ctx=2048))

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        async with app.router.lifespan_context(app):  # the inner app loads its model
            yield

    outer = Starlette(routes=[Mount("/tools/rank1", app=app)], lifespan=lifespan)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(outer, host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}/tools/rank1"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{base}/health").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the prefixed server never became ready"
            time.sleep(0.1)
        yield f"{base}/"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def test_playground_behind_a_path_prefix(browser, prefixed_server: str, tmp_path) -> None:
    shown = _run_on_page(browser, prefixed_server, tmp_path)
    _check_against_api(shown, prefixed_server + "v1")


def test_page_is_served_offline_and_off_with_no_ui(demo_model: Path) -> None:
    html = (UI_DIR / "index.html").read_text()
    for asset in ("ui/style.css", "ui/app.js"):
        assert f'"{asset}"' in html  # relative: works under a path prefix
    for f in UI_DIR.iterdir():  # no CDN, nothing fetched from elsewhere
        text = f.read_text()
        assert "http://" not in text and "https://" not in text, f.name
    with running_server(demo_model, parallel=1, n_ctx=1024, ui=False) as api:
        root = api.removesuffix("/v1")
        assert httpx.get(f"{root}/").status_code == 404
        assert httpx.get(f"{root}/ui/app.js").status_code == 404
