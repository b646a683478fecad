#!/usr/bin/env bash
# The README's test command: set up a fresh machine and run the whole suite.
# llama-cpp-python compiles from source on first install (about 5-9 minutes on 2 cores;
# pip caches the wheel afterwards).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e ".[all,test]"
.venv/bin/python -m ruff check .
# pytest exits 5 when it collects no test: `set -e` turns that into a failure too.
.venv/bin/python -m pytest "$@"
