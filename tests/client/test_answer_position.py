"""When a completion counts as ended on rank1's answer (``closes_on_answer``): what the
official stop strings ``"</think> true"`` / ``"</think> false"`` match, on every server's
way of showing ``</think>``."""

from __future__ import annotations

import pytest

from rank1_integrations.transports.logprobs import Position, closes_on_answer


def chain(*tokens: str, ids: tuple[int | None, ...] | None = None) -> list[Position]:
    ids = ids or (None,) * len(tokens)
    return [Position(t, [], i) for t, i in zip(tokens, ids, strict=True)]


@pytest.mark.parametrize(
    "tokens",
    [
        ("It", " fits", ".", "</think>", " true"),  # vLLM / rank1-server: rendered tag
        ("It", " fits", ".", "</", "think", ">", " false"),  # tag in pieces (plain Qwen2.5)
        ("It", " fits", ".", "", " true"),  # llama-cpp-python: the control token as ""
    ],
)
def test_a_closed_chain_ends_on_the_answer(tokens):
    assert closes_on_answer(chain(*tokens))


@pytest.mark.parametrize(
    "tokens",
    [
        ("The", " answer", " is", ":", " True"),  # a word, not the answer token
        ("The", " answer", " is", " true"),  # the answer token, but the chain never closed
        ("It", " fits", ".", "</think>", "true"),  # a variant of the answer token
        (" true",),
        (),
    ],
)
def test_a_chain_that_only_ends_on_a_word_is_not_closed(tokens):
    assert not closes_on_answer(chain(*tokens))


def test_answer_ids_match_tokens_whose_text_is_not_the_answer():
    items = chain("It", "</think>", "", ids=(1, 2, 830))
    assert closes_on_answer(items, (830, 895))
    assert not closes_on_answer(items, (831, 895))
