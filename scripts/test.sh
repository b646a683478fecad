#!/usr/bin/env bash
# The README's test command: set up a fresh machine and run the whole suite.
# llama-cpp-python compiles from source on first install (about 5-9 minutes on 2 cores;
# pip caches the wheel afterwards), and so does llama.cpp's llama-server, which the suite
# runs against (about 9 minutes; cached outside git by scripts/build_llama_server.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
# two distributions: rank1-server (local_server/) and rank1-integrations, whose `server`
# extra it satisfies
.venv/bin/python -m pip install --quiet -e . -e ./local_server -e ".[all,test]"
.venv/bin/python -m ruff check .
.venv/bin/python -m mypy  # both packages ([tool.mypy] in pyproject.toml)
# The real programs and model the suite tests against (errors, not skips, when missing).
RANK1_LLAMA_SERVER="$(bash scripts/build_llama_server.sh)"
RANK1_TEST_GGUF="$(bash scripts/fetch_test_model.sh)"
export RANK1_LLAMA_SERVER RANK1_TEST_GGUF
# The browser tests drive Debian's chromium (headless) through Playwright; the playground
# test runs the curl command its copy button gives.
if [ ! -x /usr/bin/chromium ] || ! command -v curl >/dev/null; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
    chromium curl >/dev/null
fi
# pytest exits 5 when it collects no test: `set -e` turns that into a failure too.
.venv/bin/python -m pytest "$@"
