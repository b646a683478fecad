#!/usr/bin/env bash
# Build llama.cpp's own C++ server, `llama-server`, from the llama.cpp source vendored in
# the pinned llama-cpp-python sdist: the same commit as the engine of rank1-server, with
# no network beyond the package registry (pip downloads the sdist). The tests run the
# client against this real binary.
#
#   bash scripts/build_llama_server.sh          # prints the binary's path
#
# The build is cached outside git, under ${RANK1_CACHE_DIR:-~/.cache/rank1-integrations}
# (one folder per llama-cpp-python version); a cached binary is reused as is. About
# 9 minutes on 2 cores the first time. CURL and OpenSSL are off (no downloads, no TLS).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
# the pin is rank1-server's (local_server/pyproject.toml): the engine's llama.cpp
VERSION="$("$PY" -c 'import re,pathlib;print(re.search(r"llama-cpp-python==([0-9.]+)",pathlib.Path("local_server/pyproject.toml").read_text()).group(1))')"
CACHE="${RANK1_CACHE_DIR:-$HOME/.cache/rank1-integrations}/llama-server-$VERSION"
BIN="$CACHE/bin/llama-server"
if [ -x "$BIN" ] && "$BIN" --version >/dev/null 2>&1; then
  echo "$BIN"
  exit 0
fi
mkdir -p "$CACHE"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
"$PY" -m pip download --quiet --no-deps --no-binary :all: "llama-cpp-python==$VERSION" -d "$WORK" >&2
tar xzf "$WORK"/llama_cpp_python-"$VERSION".tar.gz -C "$WORK" \
  "llama_cpp_python-$VERSION/vendor/llama.cpp"
SRC="$WORK/llama_cpp_python-$VERSION/vendor/llama.cpp"
cmake -S "$SRC" -B "$WORK/build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DLLAMA_BUILD_SERVER=ON -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
  -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DBUILD_SHARED_LIBS=OFF >&2
cmake --build "$WORK/build" --target llama-server -j "${JOBS:-$(nproc)}" >&2
mkdir -p "$CACHE/bin"
cp "$WORK/build/bin/llama-server" "$BIN.tmp"
mv "$BIN.tmp" "$BIN"
"$BIN" --version >&2
echo "$BIN"
