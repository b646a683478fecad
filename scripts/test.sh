#!/usr/bin/env bash
# The README's test command: set up a fresh machine and run the whole suite.
# llama-cpp-python compiles from source on first install (about 5-9 minutes on 2 cores;
# pip caches the wheel afterwards), and so does llama.cpp's llama-server, which the suite
# runs against (about 9 minutes; cached outside git by scripts/build_llama_server.sh).
# vLLM's CPU build (~4 min cold, 3.5 GB, mostly download) and Debian's chromium install in
# the background meanwhile.
set -euo pipefail
cd "$(dirname "$0")/.."
LOGS="$(mktemp -d)"
# vLLM's CPU build in a venv of its own (kept when it imports): the real vLLM server.
bash scripts/install_vllm.sh >"$LOGS/vllm.out" 2>"$LOGS/vllm.log" &
VLLM_JOB=$!
# The browser tests drive Debian's chromium (headless) through Playwright; the playground
# test runs the curl command its copy button gives.
(
  if [ ! -x /usr/bin/chromium ] || ! command -v curl >/dev/null; then
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
      chromium curl >/dev/null
  fi
) >"$LOGS/apt.log" 2>&1 &
APT_JOB=$!
python3 -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
# two distributions: rank1-server (local_server/) and rank1-integrations, whose `server`
# extra it satisfies
.venv/bin/python -m pip install --quiet -e . -e ./local_server -e ".[all,test]"
.venv/bin/python -m ruff check .
.venv/bin/python -m mypy  # both packages ([tool.mypy] in pyproject.toml)
# The real programs and models the suite tests against (errors, not skips, when missing).
RANK1_LLAMA_SERVER="$(bash scripts/build_llama_server.sh)"
RANK1_TEST_GGUF="$(bash scripts/fetch_test_model.sh)"
wait "$VLLM_JOB" || { echo "scripts/install_vllm.sh failed:" >&2; cat "$LOGS/vllm.log" >&2; exit 1; }
RANK1_VLLM_PYTHON="$(tail -n1 "$LOGS/vllm.out")"
wait "$APT_JOB" || { echo "installing chromium failed:" >&2; cat "$LOGS/apt.log" >&2; exit 1; }
# the demo model as a Hugging Face directory for vLLM (seconds; cached by a hash of its sources)
.venv/bin/python scripts/build_hf_demo_model.py >/dev/null
export RANK1_LLAMA_SERVER RANK1_TEST_GGUF RANK1_VLLM_PYTHON
# pytest exits 5 when it collects no test: `set -e` turns that into a failure too.
.venv/bin/python -m pytest "$@"
