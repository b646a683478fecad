"""``rank1 rerank --local`` and ``rank1 demo``'s local server: started as a process by
module name, with a clear error (not a traceback) when it is not installed or cannot
start. None of these need llama-cpp-python: the server fails before it loads a model."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from rank1_integrations.cli import main
from rank1_integrations.cli._local import local_server

HINT = 'pip install "rank1-integrations[server]"'


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    path = tmp_path / "docs.txt"
    path.write_text("the moon pulls the tides\ncats sleep\n")
    return path


@pytest.fixture
def without_server_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Child processes find a ``uvicorn`` that cannot be imported, as without the extra."""
    shadow = tmp_path / "shadow"
    (shadow / "uvicorn").mkdir(parents=True)
    (shadow / "uvicorn" / "__init__.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'uvicorn'\", name='uvicorn')\n")
    paths = [str(shadow), *sys.path]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in paths if p))


def test_without_the_server_package_local_server_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "rank1_server", None)  # find_spec -> None
    with pytest.raises(ImportError, match="the local server is not installed") as caught:
        with local_server():
            pytest.fail("started")
    assert HINT in str(caught.value)


@pytest.mark.parametrize("command", ["rerank", "demo"])
def test_without_the_server_package_the_cli_fails_cleanly(
    command: str, docs: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture,
) -> None:
    monkeypatch.setitem(sys.modules, "rank1_server", None)
    argv = ["rerank", "q", str(docs), "--local"] if command == "rerank" else ["demo"]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert f"rank1 {command}: error: the local server is not installed" in err and HINT in err


@pytest.mark.parametrize("command", ["rerank", "demo"])
def test_without_the_server_extra_the_cli_quotes_the_servers_hint(
    command: str, docs: Path, without_server_extra: None, capsys: pytest.CaptureFixture,
) -> None:
    argv = ["rerank", "q", str(docs), "--local"] if command == "rerank" else ["demo"]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert f"rank1 {command}: error: rank1-server exited with status 2" in err
    assert "No module named 'uvicorn'" in err and HINT in err


def test_a_server_that_cannot_start_is_an_error_naming_the_cause(
    docs: Path, tmp_path: Path, capsys: pytest.CaptureFixture,
) -> None:
    pytest.importorskip("uvicorn", reason="the server checks its model after its imports")
    missing = tmp_path / "nope.gguf"
    assert main(["rerank", "q", str(docs), f"--local={missing}"]) == 1
    err = capsys.readouterr().err
    assert "rank1 rerank: error: rank1-server exited with status 2" in err
    assert f"model file not found: {missing}" in err
