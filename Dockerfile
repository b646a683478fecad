# rank1-server on an NVIDIA GPU: llama.cpp compiled with CUDA, served on port 8000.
#
#   docker build -t rank1-server .
#   docker run --gpus all -p 8000:8000 -v /path/to/models:/models rank1-server \
#       --model /models/rank1-7b-Q4_K_M.gguf --n-gpu-layers -1 --parallel 8
#
# Needs the NVIDIA Container Toolkit on the host. CUDA_ARCHS picks the GPU generations
# compiled for (fewer = faster build): 80 A100, 86 RTX 30xx/A10, 89 RTX 40xx/L4, 90 H100.
ARG CUDA_VERSION=12.4.1

FROM nvidia/cuda:${CUDA_VERSION}-devel-ubuntu22.04 AS build
ARG CUDA_ARCHS="80;86;89;90"
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv python3-dev build-essential cmake git \
 && rm -rf /var/lib/apt/lists/*
RUN python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
COPY local_server ./local_server
# The driver's libcuda is only present at run time: link against the toolkit's stub.
ENV CMAKE_ARGS="-DGGML_CUDA=on -DGGML_NATIVE=off -DCMAKE_CUDA_ARCHITECTURES=${CUDA_ARCHS} -DCMAKE_EXE_LINKER_FLAGS=-Wl,--allow-shlib-undefined" \
    FORCE_CMAKE=1
RUN ln -s /usr/local/cuda/lib64/stubs/libcuda.so /usr/local/cuda/lib64/stubs/libcuda.so.1 \
 && LD_LIBRARY_PATH=/usr/local/cuda/lib64/stubs pip install --no-cache-dir --upgrade pip \
 && LD_LIBRARY_PATH=/usr/local/cuda/lib64/stubs pip install --no-cache-dir ./local_server .

FROM nvidia/cuda:${CUDA_VERSION}-runtime-ubuntu22.04
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 libgomp1 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --create-home rank1
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
USER rank1
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=300s \
  CMD python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health')"
# Inside a container the server must listen on all interfaces (the default is 127.0.0.1).
ENTRYPOINT ["rank1-server", "--host", "0.0.0.0", "--port", "8000"]
# Without --model the tiny bundled demo model is served (no GPU work to speak of).
CMD []
