"""Package boundaries: the client package (``rank1_integrations``) never imports the server
package (``rank1_server``); the server may import the client, not the reverse. The client
starts the server only as a process by module name (``python -m rank1_server.cli``)."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
CLIENT = SRC / "rank1_integrations"
FORBIDDEN = "rank1_server"
#: Callables that import the module named by their first argument.
_IMPORTERS = {"import_module", "__import__"}


def _is_forbidden(module: str | None) -> bool:
    return module is not None and (module == FORBIDDEN or module.startswith(FORBIDDEN + "."))


def forbidden_imports(path: Path) -> list[str]:
    """``line: statement`` for each import of the server package in one source file:
    ``import``/``from`` statements at any depth (inside functions too), and
    ``importlib.import_module``/``__import__`` calls on a literal name."""
    tree = ast.parse(path.read_text("utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        names: list[str | None] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names = [node.module]
        elif isinstance(node, ast.Call) and node.args:
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            arg = node.args[0]
            if name in _IMPORTERS and isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                names = [arg.value]
        if any(_is_forbidden(n) for n in names):
            found.append(f"{node.lineno}: {ast.unparse(node)}")
    return found


def client_modules() -> list[Path]:
    return sorted(CLIENT.rglob("*.py"))


def test_the_walk_sees_the_whole_client_package() -> None:
    names = {p.relative_to(CLIENT).as_posix() for p in client_modules()}
    assert {"__init__.py", "client.py", "protocol.py", "cli/_local.py",
            "cli/demo_cmd.py", "testing/fake_server.py"} <= names


def test_no_client_module_imports_the_server_package() -> None:
    offenders = {
        str(path.relative_to(SRC)): found
        for path in client_modules() if (found := forbidden_imports(path))
    }
    assert offenders == {}, f"rank1_integrations must not import {FORBIDDEN}: {offenders}"


@pytest.mark.parametrize("source", [
    "import rank1_server",
    "import os, rank1_server.models as m",
    "from rank1_server.models import demo_corpus",
    "def f():\n    from rank1_server import testing\n",
    "import importlib\nimportlib.import_module('rank1_server.cli')",
    "__import__('rank1_server')",
])
def test_the_check_catches_every_form_of_import(source: str, tmp_path: Path) -> None:
    path = tmp_path / "module.py"
    path.write_text(source)
    assert forbidden_imports(path)


@pytest.mark.parametrize("source", [
    "import rank1_serverless",
    "from . import rank1_server",  # a relative import is the client's own module
    "command = [sys.executable, '-m', 'rank1_server.cli']",
    "import importlib.util\nimportlib.util.find_spec('rank1_server')",
])
def test_the_check_lets_through_what_is_not_an_import(source: str, tmp_path: Path) -> None:
    path = tmp_path / "module.py"
    path.write_text(source)
    assert forbidden_imports(path) == []


@pytest.mark.slow
def test_importing_every_client_module_loads_no_server_module() -> None:
    """At run time too: import each module of the package (the adapters' frameworks and
    the eval extra may be missing: such a module is passed over, nothing else is)."""
    code = (
        "import importlib, pkgutil, sys\n"
        "import rank1_integrations as pkg\n"
        "optional = {'langchain_core', 'langchain_classic', 'llama_index', 'pytrec_eval'}\n"
        "for info in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + '.'):\n"
        "    if info.name.endswith('.__main__'):\n"
        "        continue  # runs the CLI\n"
        "    try:\n"
        "        importlib.import_module(info.name)\n"
        "    except ImportError as exc:\n"
        "        root = (getattr(exc.__cause__, 'name', None) or exc.name or '').split('.')[0]\n"
        "        if root not in optional:\n"
        "            raise\n"
        "assert 'rank1_integrations.cli.demo_cmd' in sys.modules\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'rank1_server'))\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(SRC), *filter(None, [os.environ.get("PYTHONPATH")])])}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "[]"


def _wheel(project: Path, out: Path) -> list[str]:
    """The file names inside the wheel built from ``project`` (hatchling, no network)."""
    import zipfile

    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
         "--quiet", "--wheel-dir", str(out), str(project)],
        capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    (wheel,) = out.glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        return archive.namelist()


@pytest.mark.slow
def test_the_client_wheel_holds_no_server_file(tmp_path: Path) -> None:
    """``pip install rank1-integrations`` installs the client only: no ``rank1_server``,
    no GGUF, no GGUF writer, no ``rank1-server`` command; the server is the second
    distribution, which the ``server`` extra pulls in."""
    names = _wheel(SRC.parent, tmp_path / "client")
    assert any(n.startswith("rank1_integrations/") for n in names)
    assert [n for n in names if n.startswith("rank1_server") or n.endswith(".gguf")
            or "gguf_writer" in n] == []
    (metadata,) = [n for n in names if n.endswith(".dist-info/METADATA")]
    (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
    import zipfile

    with zipfile.ZipFile(next((tmp_path / "client").glob("*.whl"))) as archive:
        meta = archive.read(metadata).decode()
        commands = archive.read(entry_points).decode()
    assert "Requires-Dist: rank1-server; extra == 'server'" in meta
    assert "rank1-server" not in commands and "rank1 = " in commands


@pytest.mark.slow
def test_the_server_wheel_ships_the_demo_model_not_the_model_writers(tmp_path: Path) -> None:
    names = _wheel(SRC.parent / "local_server", tmp_path / "server")
    assert "rank1_server/demo/rank1-demo.gguf" in names and "rank1_server/cli.py" in names
    assert [n for n in names if n.startswith("rank1_server/models")] == []
    assert [n for n in names if n.startswith("rank1_integrations")] == []
