#!/usr/bin/env bash
# Re-record tests/client/recorded/*.json from the real servers (needs the llama-server build
# and the SmolLM2 model: scripts/build_llama_server.sh, scripts/fetch_test_model.sh; for vLLM
# its CPU build: scripts/install_vllm.sh).
#   bash scripts/record_fixtures.sh [rank1-server|llama-server|llama-cpp-python|vllm|vllm-reasoning ...]
set -euo pipefail
cd "$(dirname "$0")/.."
RANK1_LLAMA_SERVER="${RANK1_LLAMA_SERVER:-$(bash scripts/build_llama_server.sh)}"
RANK1_TEST_GGUF="${RANK1_TEST_GGUF:-$(bash scripts/fetch_test_model.sh)}"
case " ${*:-vllm} " in  # vLLM only when its recordings are asked for (or all are)
  *" vllm"*) RANK1_VLLM_PYTHON="${RANK1_VLLM_PYTHON:-$(bash scripts/install_vllm.sh)}" ;;
esac
export RANK1_LLAMA_SERVER RANK1_TEST_GGUF
[ -n "${RANK1_VLLM_PYTHON:-}" ] && export RANK1_VLLM_PYTHON

exec .venv/bin/python -m tests.real.record "$@"
