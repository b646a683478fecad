"""Chat completions: the GGUF's chat template when it has one, the raw rank1 prompt when
it has none."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from rank1_server.models import Qwen2Config, build_vocabulary, write_qwen2_gguf
from rank1_server.models.random_model import _random_weights
from rank1_server.testing import running_server

from rank1_integrations.protocol import build_prompt

CHATML = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + "
    "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


@pytest.fixture(scope="module")
def templated_server(model_dir: Path) -> Iterator[str]:
    vocab = build_vocabulary(think_end_special=True)
    cfg = Qwen2Config(n_vocab=vocab.size, n_embd=64, n_layer=2, n_head=2, n_head_kv=2,
                      n_ff=256, n_ctx=4096)
    weights = _random_weights(cfg, np.random.default_rng(3), np.zeros(vocab.size, bool))
    path = write_qwen2_gguf(model_dir / "chatml.gguf", vocab, weights, cfg, name="chatml",
                            description="random, with a chat template",
                            extra_metadata={"tokenizer.chat_template": CHATML})
    with running_server(path, parallel=2, n_ctx=512) as url:
        yield url


def _chat_vs_completion(url: str, messages: list[dict], prompt: str) -> None:
    body = {"max_tokens": 8, "temperature": 0, "skip_special_tokens": False}
    chat = httpx.post(f"{url}/chat/completions", json={**body, "messages": messages}).json()
    done = httpx.post(f"{url}/completions", json={**body, "prompt": prompt}).json()
    assert chat["choices"][0]["message"]["content"] == done["choices"][0]["text"]
    assert chat["usage"] == done["usage"]


def test_chat_template_is_applied(templated_server: str) -> None:
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}]
    prompt = ("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n"
              "<|im_start|>assistant\n")
    _chat_vs_completion(templated_server, messages, prompt)


def test_without_template_the_rank1_prompt_is_rebuilt(server: str) -> None:
    """What the client's chat mode sends (the prompt minus its trailing ``<think>``) is
    served as the raw rank1 prompt."""
    prompt = build_prompt("what causes tides?", "the moon")
    content = prompt.removesuffix("<think>").rstrip("\n")
    _chat_vs_completion(server, [{"role": "user", "content": content}], prompt)
