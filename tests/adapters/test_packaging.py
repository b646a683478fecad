"""The adapters are optional: the core package imports no framework, and an adapter
without its framework says which extra to install."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"


def test_core_import_pulls_in_no_framework() -> None:
    code = (
        "import sys, rank1_integrations\n"
        "from rank1_integrations import Rank1Client\n"
        "loaded = sorted(m for m in sys.modules\n"
        "                if m.split('.')[0] in ('langchain', 'langchain_core',\n"
        "                                       'langchain_classic', 'llama_index'))\n"
        "print(loaded)\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(SRC), *filter(None, [os.environ.get("PYTHONPATH")])])}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, timeout=60, check=True)
    assert done.stdout.strip() == "[]"


def hide(monkeypatch: pytest.MonkeyPatch, *packages: str) -> None:
    """Make ``packages`` (and their submodules) unimportable, and forget the adapters."""
    for name in list(sys.modules):
        if name.split(".")[0] in packages:
            monkeypatch.setitem(sys.modules, name, None)
    for package in packages:
        monkeypatch.setitem(sys.modules, package, None)
    for adapter in ("rank1_integrations.langchain", "rank1_integrations.llama_index"):
        monkeypatch.delitem(sys.modules, adapter, raising=False)


@pytest.mark.parametrize(("adapter", "hidden", "extra"), [
    ("rank1_integrations.langchain", "langchain_core", "langchain"),
    ("rank1_integrations.llama_index", "llama_index", "llamaindex"),
])
def test_adapter_without_its_framework_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, adapter: str, hidden: str, extra: str
) -> None:
    hide(monkeypatch, hidden)
    with pytest.raises(ImportError) as caught:
        importlib.import_module(adapter)
    message = str(caught.value)
    assert f'pip install "rank1-integrations[{extra}]"' in message
    assert hidden in message  # which package was missing
