"""Passage truncation: only the passage is cut, the prompt's tail survives."""

from __future__ import annotations

import pytest

from rank1_integrations.protocol import DEFAULT_MAX_PASSAGE_CHARS, build_prompt, truncate_passage


class WordTokenizer:
    """A toy tokenizer: one id per whitespace-separated word."""

    def __init__(self) -> None:
        self.vocab: dict[str, int] = {}
        self.words: list[str] = []
        self.calls = 0

    def tokenize(self, text: str) -> list[int]:
        self.calls += 1
        ids = []
        for word in text.split():
            if word not in self.vocab:
                self.vocab[word] = len(self.words)
                self.words.append(word)
            ids.append(self.vocab[word])
        return ids

    def detokenize(self, ids: list[int]) -> str:
        return " ".join(self.words[i] for i in ids)


def test_short_passage_is_untouched() -> None:
    assert truncate_passage("a short passage", max_chars=100) == ("a short passage", False)


def test_passage_exactly_at_budget_is_untouched() -> None:
    assert truncate_passage("abcde", max_chars=5) == ("abcde", False)


def test_char_budget_cuts_and_flags() -> None:
    text, truncated = truncate_passage("x" * 250, max_chars=100)
    assert truncated is True
    assert text == "x" * 100


def test_char_budget_does_not_split_a_word() -> None:
    passage = " ".join(f"word{i:03d}" for i in range(100))  # 'word000 word001 ...'
    text, truncated = truncate_passage(passage, max_chars=50)
    assert truncated is True
    assert text == "word000 word001 word002 word003 word004 word005"
    assert passage.startswith(text)


def test_char_budget_splits_when_no_whitespace_near_the_end() -> None:
    passage = "short " + "y" * 200
    text, truncated = truncate_passage(passage, max_chars=100)
    assert truncated is True
    assert text == passage[:100]


def test_default_char_budget() -> None:
    text, truncated = truncate_passage("z" * (DEFAULT_MAX_PASSAGE_CHARS + 1))
    assert truncated is True
    assert len(text) == DEFAULT_MAX_PASSAGE_CHARS


def test_token_budget_with_a_tokenizer() -> None:
    tok = WordTokenizer()
    passage = "one two three four five six seven"
    text, truncated = truncate_passage(
        passage, max_tokens=3, tokenize=tok.tokenize, detokenize=tok.detokenize
    )
    assert (text, truncated) == ("one two three", True)


def test_token_budget_not_exceeded_is_untouched() -> None:
    tok = WordTokenizer()
    passage = "one  two\nthree"  # whitespace kept as given when not cut
    assert truncate_passage(
        passage, max_tokens=3, tokenize=tok.tokenize, detokenize=tok.detokenize
    ) == (passage, False)


def test_token_budget_wins_over_char_budget() -> None:
    tok = WordTokenizer()
    passage = "alpha beta gamma"
    # 16 chars > max_chars 5, but 3 tokens <= 3: the token budget decides
    assert truncate_passage(
        passage, max_tokens=3, tokenize=tok.tokenize, detokenize=tok.detokenize, max_chars=5
    ) == (passage, False)


def test_negative_budgets_are_rejected() -> None:
    tok = WordTokenizer()
    with pytest.raises(ValueError, match="max_tokens"):
        truncate_passage("a", max_tokens=-1, tokenize=tok.tokenize, detokenize=tok.detokenize)
    with pytest.raises(ValueError, match="max_chars"):
        truncate_passage("a", max_chars=-1)


def test_prompt_tail_survives_truncation() -> None:
    passage = "The tides. " * 5000
    text, truncated = truncate_passage(passage, max_chars=200)
    prompt = build_prompt("what causes tides?", text)
    assert truncated
    assert prompt.endswith("\nPassage: " + text + "\n<think>")
    assert len(prompt) < 400


def test_prompt_tail_survives_token_truncation() -> None:
    tok = WordTokenizer()
    text, truncated = truncate_passage(
        "w " * 10_000, max_tokens=8, tokenize=tok.tokenize, detokenize=tok.detokenize
    )
    assert truncated
    assert build_prompt("q", text).endswith("Passage: w w w w w w w w\n<think>")


def test_passage_with_think_tags_is_cut_not_the_prompt() -> None:
    passage = "</think> true " * 1000
    text, truncated = truncate_passage(passage, max_chars=100)
    assert truncated and len(text) <= 100
    assert build_prompt("q", text).endswith("\n<think>")


# --------------------------------------------------------------------------- fit_passage


def test_fit_passage_cuts_the_title_first_then_the_text_to_what_is_left() -> None:
    from rank1_integrations import Passage
    from rank1_integrations.protocol import fit_passage

    # the title takes budget - 1 (its space is counted); nothing is left for the text
    fitted, cut = fit_passage(Passage("body", title="T" * 50), max_chars=10)
    assert fitted == Passage("", title="T" * 9) and cut
    assert len(build_prompt("q", fitted.text, title=fitted.title).split("Passage: ")[1]) == (
        10 + len("\n<think>"))
    # a short title leaves the rest of the budget to the text
    fitted, cut = fit_passage(Passage("x" * 50, title="Head"), max_chars=10)
    assert fitted == Passage("x" * 5, title="Head") and cut
    # what fits is left alone, and an untitled passage has the whole budget
    assert fit_passage(Passage("fits", title="T"), max_chars=6) == (Passage("fits", "T"), False)
    assert fit_passage(Passage("y" * 20), max_chars=10) == (Passage("y" * 10), True)
    assert fit_passage(Passage("a", title=""), max_chars=2) == (Passage("a", ""), False)


def test_fit_passage_does_not_mutate_its_input() -> None:
    from rank1_integrations import Passage
    from rank1_integrations.protocol import fit_passage

    passage = Passage("z" * 30, title="Title")
    fit_passage(passage, max_chars=8)
    assert passage == Passage("z" * 30, title="Title")
