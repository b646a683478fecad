"""The protocol's readers are the inverses of its writers: prompt, forced-answer prompt,
``token_id:N`` logprob keys; and the one ranking rule."""

from __future__ import annotations

import pytest

from rank1_integrations.protocol import (
    apply_instruction,
    build_prompt,
    forced_answer_prompt,
    parse_forced_answer_prompt,
    parse_prompt,
    token_id_in_key,
    token_id_key,
)
from rank1_integrations.ranking import rank_order


@pytest.mark.parametrize("query,passage,title,instruction", [
    ("what causes tides?", "the moon pulls the sea", None, None),
    ("q {x} %s", "p\nwith <think> tags </think> and\nlines", "A Title", None),
    ("q", "p", "", "Relevant means on-topic."),
    ("q", "", None, "Find {query} passages"),
])
def test_parse_prompt_inverts_build_prompt(query, passage, title, instruction) -> None:
    prompt = build_prompt(query, passage, title=title, instruction=instruction)
    parsed = parse_prompt(prompt)
    assert parsed == (
        apply_instruction(query, instruction), passage if title is None else f"{title} {passage}"
    )
    assert build_prompt(*parsed) == prompt


@pytest.mark.parametrize("text", [
    "", "hello", "Query: q\nPassage: p\n<think>",
    build_prompt("q", "p").removesuffix("<think>"), build_prompt("q", "p") + " ",
])
def test_parse_prompt_refuses_other_text(text: str) -> None:
    assert parse_prompt(text) is None


@pytest.mark.parametrize("reasoning,cleaned", [
    ("The passage covers it. Then", "The passage covers it."),
    ("", ""),
    ("done</think> true", "done"),
])
def test_parse_forced_answer_prompt_inverts_forced_answer_prompt(reasoning, cleaned) -> None:
    prompt = build_prompt("q", "a passage\nof two lines", title="T")
    assert parse_forced_answer_prompt(forced_answer_prompt(prompt, reasoning)) == (
        prompt, cleaned)


@pytest.mark.parametrize("text", [
    build_prompt("q", "p"), build_prompt("q", "p") + "\n</think>", "x\n<think>\nr\n</think>",
])
def test_parse_forced_answer_prompt_refuses_other_text(text: str) -> None:
    assert parse_forced_answer_prompt(text) is None


@pytest.mark.parametrize("token", [0, 830, 151_643])
def test_token_id_key_round_trip(token: int) -> None:
    assert token_id_in_key(token_id_key(token)) == token


def test_rank_order_score_desc_ties_in_input_order_unscored_last() -> None:
    scores = {"a": 0.5, "b": None, "c": 0.9, "d": 0.5, "e": None, "f": 0.0}
    assert rank_order(list(scores), scores.get) == ["c", "a", "d", "f", "b", "e"]
    assert rank_order(list(reversed(scores)), scores.get) == ["c", "d", "a", "f", "e", "b"]
    assert rank_order([], scores.get) == []
