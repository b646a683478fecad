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
# vLLM's CPU build in a venv of its own (~4 min cold, 3.5 GB; kept when it imports) and the
# demo model as a Hugging Face directory for it (seconds; cached by a hash of its sources).
RANK1_VLLM_PYTHON="$(bash scripts/install_vllm.sh)"
.venv/bin/python scripts/build_hf_demo_model.py >/dev/null
export RANK1_LLAMA_SERVER RANK1_TEST_GGUF RANK1_VLLM_PYTHON
# pytest exits 5 when it collects no test: `set -e` turns that into a failure too.
.venv/bin/python -m pytest "$@"
