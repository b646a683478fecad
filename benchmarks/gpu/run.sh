#!/usr/bin/env bash
# The GPU check, end to end, on a machine with no network: CUDA's compiler, CMake, ninja
# and Python 3.12 with PyTorch, numpy, httpx and tokenizers come with its image; the rest
# comes from the repository (benchmarks/gpu/.vendor, made by prepare.py).
#
#   bash benchmarks/gpu/run.sh all      # = install build model bench (each skips done work)
#   bash benchmarks/gpu/run.sh build    # one step; steps: install build model bench
#
# install: the vendored wheels into benchmarks/gpu/.work/site (pip --no-index --no-deps).
# build:   one CMake build of the vendored llama.cpp with CUDA for one architecture
#          (CUDA_ARCH, default 90 = H100/H200), shared libraries: libllama & co. for
#          llama-cpp-python (its Python code from the same sdist, loaded through
#          LLAMA_CPP_LIB_PATH) and the llama-server binary, so both servers run the same
#          llama.cpp build. Flash-attention kernels are left out (GPU_BENCH_FA=1 builds
#          them): both servers run with flash attention off, like rank1-server's default.
# model:   the rank1-7b-shaped Q4_0 GGUF (~4.3 GB, random weights) in .work.
# bench:   bench.py; the table and results.json go to $OUT (or .work/out).
#
# Extra arguments after the step go to bench.py (e.g. `run.sh bench --slots 1,32`).
set -euo pipefail
cd "$(dirname "$0")/../.."
HERE=benchmarks/gpu
VENDOR=$HERE/.vendor
WORK=$PWD/$HERE/.work
PY=${PYTHON:-python3}
ARCH=${CUDA_ARCH:-90}
JOBS=${JOBS:-$(nproc)}
TARBALL=$(ls "$VENDOR"/llama_cpp_python-*-min.tar.gz 2>/dev/null | head -n1 || true)
if [ -z "$TARBALL" ]; then
  echo "run.sh: no $VENDOR/llama_cpp_python-*-min.tar.gz: run benchmarks/gpu/prepare.py first" >&2
  exit 2
fi
SDIST=$WORK/$(basename "$TARBALL" -min.tar.gz)
BUILD=$WORK/build-cuda$ARCH
SITE=$WORK/site
export PYTHONPATH="$SITE:$SDIST:$PWD/src:$PWD/local_server${PYTHONPATH:+:$PYTHONPATH}"
export LLAMA_CPP_LIB_PATH="$BUILD/bin"
mkdir -p "$WORK"
if [ -f "$WORK/cuda-libdirs.txt" ]; then
  LD_LIBRARY_PATH="$(paste -sd: "$WORK/cuda-libdirs.txt")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  export LD_LIBRARY_PATH
fi
stamp() { date +%H:%M:%S; }

step_install() {
  if [ -f "$SITE/.done" ]; then return; fi
  echo "[$(stamp)] install: $(ls "$VENDOR"/wheels/*.whl | wc -l) wheels -> $SITE"
  rm -rf "$SITE"
  "$PY" -m pip install --quiet --no-index --no-deps --disable-pip-version-check \
    --no-compile --target "$SITE" "$VENDOR"/wheels/*.whl
  touch "$SITE/.done"
}

step_build() {
  if ! { [ -x "$BUILD/bin/llama-server" ] && [ -f "$BUILD/bin/libllama.so" ]; }; then
    build_llama_cpp
  fi
  # the Python binding loads the CUDA build and sees a GPU (GPU_BENCH_NO_GPU=1: a build-only
  # check on a machine without one)
  "$PY" -c "import llama_cpp, sys
ok = bool(llama_cpp.llama_supports_gpu_offload())
print('llama_cpp', llama_cpp.__version__, 'from', llama_cpp.__file__, '- GPU offload:', ok)
sys.exit(0 if ok or '${GPU_BENCH_NO_GPU:-0}' == '1' else 3)"
}

build_llama_cpp() {
  echo "[$(stamp)] build: llama.cpp with CUDA (sm_$ARCH), $JOBS jobs"
  rm -rf "$SDIST" "$BUILD"
  tar xzf "$TARBALL" -C "$WORK"
  # cuBLAS and libcuda where a compiler-only toolkit lacks them (see cuda_cmake_args.py)
  "$PY" "$HERE/cuda_cmake_args.py" > "$WORK/cuda-args.txt"
  grep '^LIBDIR=' "$WORK/cuda-args.txt" | cut -d= -f2- > "$WORK/cuda-libdirs.txt" || true
  mapfile -t CUDA_ARGS < <(grep -v '^LIBDIR=' "$WORK/cuda-args.txt")
  echo "[$(stamp)] build: CUDA arguments: ${CUDA_ARGS[*]:-none}"
  cmake -S "$SDIST/vendor/llama.cpp" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release \
    "${CUDA_ARGS[@]}" \
    -DBUILD_SHARED_LIBS=ON -DGGML_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES="$ARCH" \
    -DGGML_CUDA_FA="$([ "${GPU_BENCH_FA:-0}" = 1 ] && echo ON || echo OFF)" \
    -DGGML_CUDA_NCCL=OFF -DLLAMA_BUILD_SERVER=ON -DLLAMA_BUILD_TESTS=OFF \
    -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_APP=OFF -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF \
    -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF ${GPU_BENCH_CMAKE_ARGS:-} \
    > "$WORK/cmake.log" 2>&1 || { tail -40 "$WORK/cmake.log"; exit 1; }
  cmake --build "$BUILD" --target llama llama-server -j "$JOBS" > "$WORK/build.log" 2>&1 \
    || { tail -60 "$WORK/build.log"; exit 1; }
  if [ -f "$WORK/cuda-libdirs.txt" ]; then
    LD_LIBRARY_PATH="$(paste -sd: "$WORK/cuda-libdirs.txt")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    export LD_LIBRARY_PATH
  fi
  echo "[$(stamp)] build: done ($BUILD/bin/llama-server)"
}

step_model() {
  echo "[$(stamp)] model"
  "$PY" "$HERE/bench.py" --model-only
}

step_bench() {
  echo "[$(stamp)] bench"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
  "$PY" "$HERE/bench.py" --llama-server "$BUILD/bin/llama-server" --out "${OUT:-$WORK/out}" "$@"
  echo "[$(stamp)] bench: done"
}

what=${1:-all}
shift || true
case "$what" in
  install) step_install ;;
  build) step_install; step_build ;;
  model) step_install; step_model ;;
  bench) step_install; step_build; step_bench "$@" ;;
  all) step_install; step_build; step_model; step_bench "$@" ;;
  *) echo "usage: run.sh [all|install|build|model|bench] [bench.py arguments]" >&2; exit 2 ;;
esac
