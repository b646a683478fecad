"""The generic GGUF writer and the random test model, through the real llama.cpp engine."""

from __future__ import annotations

import hashlib

import pytest
from rank1_server.models import build_vocabulary, write_random_model
from rank1_server.models.vocab import TOKEN_CONTROL


def test_vocabulary_has_single_answer_tokens_and_control_think_tags():
    vocab = build_vocabulary(["honey"])
    for text in (" true", " false", " honey", "Query", "Passage"):
        assert vocab.token_id(text) is not None, text
    think, end = vocab.token_id("<think>"), vocab.token_id("</think>")
    assert vocab.token_types[think] == TOKEN_CONTROL
    assert vocab.token_types[end] == TOKEN_CONTROL
    assert vocab.encode("x</think> true")[-2:] == [end, vocab.token_id(" true")]


def test_vocabulary_without_special_think_end_splits_it_like_qwen():
    vocab = build_vocabulary(think_end_special=False)
    assert "</think>" not in vocab.special_ids
    pieces = [vocab.token_text(i) for i in vocab.encode("</think>")]
    assert pieces == ["</", "think", ">"]


def test_vocabulary_is_deterministic():
    a, b = build_vocabulary(["zebra"]), build_vocabulary(["zebra"])
    assert a.tokens == b.tokens and a.merges == b.merges


def test_random_model_same_bytes_for_same_seed(tmp_path):
    a = write_random_model(tmp_path / "a.gguf", seed=3)
    b = write_random_model(tmp_path / "b.gguf", seed=3)
    c = write_random_model(tmp_path / "c.gguf", seed=4)

    def digest(p):
        return hashlib.sha256(p.read_bytes()).hexdigest()

    assert digest(a) == digest(b) != digest(c)


@pytest.mark.parametrize("think_end_special", [True, False])
def test_random_model_loads_tokenizes_and_generates(tmp_path, think_end_special):
    llama_cpp = pytest.importorskip("llama_cpp")
    path = write_random_model(tmp_path / "m.gguf", think_end_special=think_end_special)
    vocab = build_vocabulary(think_end_special=think_end_special)
    llm = llama_cpp.Llama(str(path), n_ctx=256, n_threads=1, n_threads_batch=1, verbose=False)
    assert llm.n_vocab() == vocab.size
    text = "Query: what is true\nPassage: it is false\n<think>\nfine</think> true"
    # llama.cpp's tokenizer agrees with the vocabulary's own (pre-tokeniser, merges, specials).
    assert llm.tokenize(text.encode(), add_bos=False, special=True) == vocab.encode(text)
    out = llm.create_completion("Query: a\nPassage: b\n<think>", max_tokens=24, temperature=0.0)
    choice = out["choices"][0]
    assert choice["finish_reason"] == "length"  # special tokens (EOS included) are suppressed
    assert out["usage"]["completion_tokens"] == 24
    assert choice["text"].strip()
    again = llm.create_completion("Query: a\nPassage: b\n<think>", max_tokens=24, temperature=0.0)
    assert again["choices"][0]["text"] == choice["text"]


@pytest.mark.parametrize(
    ("kwargs", "n_vocab"),
    [
        ({"n_layer": 8, "n_embd": 512, "dtype": "f16"}, None),  # the benchmarks' mid-size model
        ({"n_vocab": 151_936}, 151_936),  # Qwen2.5's logits width, padded with unused tokens
    ],
)
def test_benchmark_shapes_load_and_generate(tmp_path, kwargs, n_vocab):
    llama_cpp = pytest.importorskip("llama_cpp")
    path = write_random_model(tmp_path / "m.gguf", **kwargs)
    llm = llama_cpp.Llama(str(path), n_ctx=256, n_threads=1, n_threads_batch=1, verbose=False)
    if n_vocab is not None:
        assert llm.n_vocab() == n_vocab
    out = llm.create_completion("Query: a\nPassage: b\n<think>", max_tokens=8, temperature=0.0)
    assert out["usage"]["completion_tokens"] == 8
    assert "[PAD" not in out["choices"][0]["text"]
