"""Print the CMake arguments that let ggml's CUDA backend build against this machine's CUDA.

ggml-cuda links cuBLAS and (for its VMM memory pool) the driver library ``libcuda``.
Images that carry only CUDA's compiler and runtime (toolkits assembled from NVIDIA's pip
wheels) lack both in the toolkit folder:

* cuBLAS then comes from the Python environment: PyTorch's CUDA wheels depend on
  ``nvidia-cublas``, whose wheel holds ``cublas_v2.h`` and ``libcublas.so.N``
  (``site-packages/nvidia/cu13/`` or ``nvidia/cublas/``);
* ``libcuda`` is the driver's (found through ``ldconfig`` or the usual driver folders);
  without one, ``GGML_CUDA_NO_VMM=ON`` builds the backend without linking it.

Prints one argument per line, then ``LIBDIR=<folder>`` for each library folder the
programs need at run time (for ``LD_LIBRARY_PATH``). Exits 1 naming what is missing.

Usage: ``python benchmarks/gpu/cuda_cmake_args.py``
"""

from __future__ import annotations

import glob
import os
import shutil
import site
import subprocess
import sys
import sysconfig


def toolkit_root() -> str:
    if os.environ.get("CUDA_HOME"):
        return os.environ["CUDA_HOME"]
    nvcc = shutil.which("nvcc") or "/usr/local/cuda/bin/nvcc"
    return os.path.dirname(os.path.dirname(os.path.realpath(nvcc)))


def find(patterns: list[str]) -> list[str]:
    return sorted({p for pat in patterns for p in glob.glob(pat, recursive=True)})


def main() -> int:
    cuda = toolkit_root()
    args: list[str] = []
    libdirs: list[str] = []
    toolkit_inc = [f"{cuda}/include", *glob.glob(f"{cuda}/targets/*/include")]
    if not any(os.path.isfile(f"{d}/cublas_v2.h") for d in toolkit_inc):
        roots = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"],
                 *site.getsitepackages()}
        headers = find([f"{r}/nvidia/**/include/cublas_v2.h" for r in roots])
        if not headers:
            print(f"cuda_cmake_args: no cuBLAS: {cuda} has no cublas_v2.h and no Python "
                  f"package under {sorted(roots)} has nvidia/*/include/cublas_v2.h",
                  file=sys.stderr)
            return 1
        inc = os.path.dirname(headers[0])
        lib = os.path.join(os.path.dirname(inc), "lib")
        cublas = find([f"{lib}/libcublas.so*"])
        cublas_lt = find([f"{lib}/libcublasLt.so*"])
        if not (cublas and cublas_lt):
            print(f"cuda_cmake_args: {inc} has cuBLAS headers but {lib} lacks libcublas.so* "
                  "or libcublasLt.so*", file=sys.stderr)
            return 1
        args += [f"-DCUDA_cublas_LIBRARY={cublas[0]}", f"-DCUDA_cublasLt_LIBRARY={cublas_lt[0]}",
                 f"-DCMAKE_CUDA_FLAGS=-I{inc}"]
        libdirs.append(lib)
    toolkit_lib = [f"{cuda}/lib64", f"{cuda}/lib", f"{cuda}/lib64/stubs", f"{cuda}/lib/stubs",
                   *glob.glob(f"{cuda}/targets/*/lib"), *glob.glob(f"{cuda}/targets/*/lib/stubs")]
    if not any(os.path.isfile(f"{d}/libcuda.so") for d in toolkit_lib):
        driver = []
        try:
            out = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True).stdout
            driver = [line.split("=>")[-1].strip() for line in out.splitlines()
                      if line.strip().startswith("libcuda.so")]
        except OSError:
            pass
        dirs = [d for d in os.environ.get("LD_LIBRARY_PATH", "").split(":") if d]
        dirs += ["/usr/local/nvidia/lib64", "/usr/local/nvidia/lib", "/usr/lib/x86_64-linux-gnu",
                 "/usr/lib64", "/usr/lib/wsl/lib"]
        driver += find([f"{d}/libcuda.so*" for d in dirs])
        driver = [d for d in driver if os.path.isfile(d)]
        if driver:
            args.append(f"-DCUDA_cuda_driver_LIBRARY={driver[0]}")
        else:
            print("cuda_cmake_args: no libcuda (driver) found: building without VMM",
                  file=sys.stderr)
            args.append("-DGGML_CUDA_NO_VMM=ON")
    for a in args:
        print(a)
    for d in libdirs:
        print(f"LIBDIR={d}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
