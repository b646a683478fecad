"""Generated GGUF models for tests and the offline demo (no downloads).

* :func:`write_random_model` - random qwen2 weights, for engine tests and benchmarks.
* :func:`write_demo_model` - the hand-wired "rank1-format" demo model (see ``demo_model``).
* :func:`build_vocabulary` / :func:`write_qwen2_gguf` - the generic parts.

These are development stand-ins for offline pipelines, not relevance models.
"""

from .demo_model import (
    DEMO_MODEL_PATH,
    demo_corpus,
    demo_queries,
    expected_completion,
    expected_p_true,
    overlap_fraction,
    write_demo_model,
)
from .gguf_writer import LayerWeights, Qwen2Config, Qwen2Weights, write_qwen2_gguf
from .random_model import write_random_model
from .vocab import Vocabulary, build_vocabulary, pad_vocabulary

__all__ = [
    "DEMO_MODEL_PATH",
    "LayerWeights",
    "Qwen2Config",
    "Qwen2Weights",
    "Vocabulary",
    "build_vocabulary",
    "demo_corpus",
    "demo_queries",
    "expected_completion",
    "expected_p_true",
    "overlap_fraction",
    "pad_vocabulary",
    "write_demo_model",
    "write_qwen2_gguf",
    "write_random_model",
]
