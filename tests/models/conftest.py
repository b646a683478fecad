"""Fixtures for the generated-model tests: the shipped demo model loaded in llama.cpp and a
greedy rank1 judge that reads P(true) at the answer position from the engine's logits."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
from rank1_server.models.demo_model import DEMO_MODEL_PATH

from rank1_integrations.protocol import ANSWER_FALSE, ANSWER_TRUE, score_from_logprobs


@dataclass(frozen=True)
class GreedyRun:
    """What greedy decoding wrote after a prompt, token by token."""

    token_ids: list[int]
    text: str  # special tokens rendered (``</think>`` visible)
    p_true: float | None  # at the position of the first answer token, if one was written


@pytest.fixture(scope="module")
def demo_llm():
    llama_cpp = pytest.importorskip("llama_cpp")
    llm = llama_cpp.Llama(
        str(DEMO_MODEL_PATH), n_ctx=4096, n_threads=1, n_threads_batch=1, verbose=False
    )
    yield llm
    llm.close()


@pytest.fixture(scope="module")
def greedy(demo_llm):
    """``greedy(prompt, max_tokens=40) -> GreedyRun`` on the demo model, through llama.cpp."""
    import llama_cpp

    llm = demo_llm
    answer_ids = {
        llm.tokenize(ANSWER_TRUE.encode(), add_bos=False, special=False)[0]: ANSWER_TRUE,
        llm.tokenize(ANSWER_FALSE.encode(), add_bos=False, special=False)[0]: ANSWER_FALSE,
    }
    true_id, false_id = list(answer_ids)
    n_vocab = llm.n_vocab()

    def run(prompt: str, max_tokens: int = 40) -> GreedyRun:
        llm.reset()
        llm.eval(llm.tokenize(prompt.encode(), add_bos=False, special=True))
        out: list[int] = []
        p_true = None
        for _ in range(max_tokens):
            ptr = llama_cpp.llama_get_logits_ith(llm.ctx, -1)
            logits = np.ctypeslib.as_array(ptr, shape=(n_vocab,)).astype(np.float64)
            tok = int(np.argmax(logits))
            if tok == llm.token_eos():
                break
            if tok in answer_ids and p_true is None:
                top = logits.max()
                lse = top + np.log(np.exp(logits - top).sum())
                p_true = score_from_logprobs(logits[true_id] - lse, logits[false_id] - lse)
            out.append(tok)
            llm.eval([tok])
        text = llm.detokenize(out, special=True).decode("utf-8")
        return GreedyRun(token_ids=out, text=text, p_true=p_true)

    return run
