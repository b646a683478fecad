"""The playground: a web page at ``/`` to try rank1 by hand (``--no-ui`` turns it off).

A query, an optional instruction, passages (one per line, or a JSONL file) and a reasoning
budget; the page calls ``POST v1/rerank`` with ``"stream": true``
(:mod:`~rank1_server.streaming`), shows each document's reasoning as it streams, its
verdict and a score bar as it lands, sorts the list when the ranking arrives, and opens a
document's whole chain on click. Its copy buttons give the equivalent ``curl`` command
and Python call.

Plain HTML, CSS and JavaScript shipped in the package (``rank1_server/ui``): no build
step, no CDN, works offline. Every URL in it is relative, so it works the same behind a
proxy that serves the server under a path prefix.

Usage::

    if config.ui:
        mount_playground(app)
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

__all__ = ["UI_DIR", "mount_playground"]

#: The page's files (package data).
UI_DIR = Path(__file__).resolve().parent / "ui"


def mount_playground(app: FastAPI) -> None:
    """Serve the page at ``/`` and its files under ``/ui/``."""

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(UI_DIR / "index.html", headers={"Cache-Control": "no-cache"})

    app.mount("/ui", StaticFiles(directory=UI_DIR), name="ui")
