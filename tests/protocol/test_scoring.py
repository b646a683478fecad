"""Score, answer reading, verdicts, reasoning and the forced-answer prompt."""

from __future__ import annotations

import math
import random

import pytest

from rank1_integrations.protocol import (
    ANSWER_FALSE,
    ANSWER_TRUE,
    STOP_STRINGS,
    clean_reasoning,
    extract_reasoning,
    forced_answer_prompt,
    normalise_answer_token,
    read_answer,
    score_from_logprobs,
    verdict_from_text,
)


def naive(lt: float, lf: float) -> float:
    """The official formula, exp(lt) / (exp(lt) + exp(lf))."""
    return math.exp(lt) / (math.exp(lt) + math.exp(lf))


def test_constants_are_the_official_ones() -> None:
    assert ANSWER_TRUE == " true"
    assert ANSWER_FALSE == " false"
    assert STOP_STRINGS == ("</think> true", "</think> false")


@pytest.mark.parametrize(
    ("lt", "lf"),
    [(-0.1, -2.4), (-2.4, -0.1), (-0.5, -0.5), (0.0, -30.0), (-30.0, 0.0), (-7.3, -7.31)],
)
def test_score_matches_the_official_formula(lt: float, lf: float) -> None:
    assert score_from_logprobs(lt, lf) == pytest.approx(naive(lt, lf), rel=1e-12, abs=1e-15)


def test_score_known_value() -> None:
    assert score_from_logprobs(-0.1, -2.4) == pytest.approx(0.9088770389851438, rel=1e-12)


def test_score_is_a_plain_float() -> None:
    import numpy as np

    score = score_from_logprobs(np.float32(-0.1), np.float32(-2.4))
    assert type(score) is float


def test_underflow_gives_no_nan() -> None:
    with pytest.raises(ZeroDivisionError):
        naive(-1e4, -1e4)  # the official form divides 0/0
    assert score_from_logprobs(-1e4, -1e4) == 0.5
    assert score_from_logprobs(-1e4, -1e4 - 1.0) == pytest.approx(1 / (1 + math.exp(-1.0)))
    assert score_from_logprobs(-1e4 - 1.0, -1e4) == pytest.approx(1 / (1 + math.exp(1.0)))


def test_extreme_gaps_saturate_without_overflow() -> None:
    assert score_from_logprobs(0.0, -9999.0) == 1.0
    assert score_from_logprobs(-9999.0, 0.0) == 0.0
    assert score_from_logprobs(1e300, -1e300) == 1.0


@pytest.mark.parametrize(
    ("token", "answer"),
    [
        (" true", ANSWER_TRUE), ("true", ANSWER_TRUE), (" True", ANSWER_TRUE),
        ("TRUE", ANSWER_TRUE), (" true\n", ANSWER_TRUE), (" false", ANSWER_FALSE),
        ("False", ANSWER_FALSE), (" FALSE ", ANSWER_FALSE),
        (" truth", None), ("true.", None), ("", None), ("</think>", None), ("token_id:830", None),
    ],
)
def test_normalise_answer_token(token: str, answer: str | None) -> None:
    assert normalise_answer_token(token) == answer


def test_read_answer_exact_tokens() -> None:
    reading = read_answer({" true": -0.1, " false": -2.4, "\n": -5.0})
    assert reading is not None
    assert reading.score == pytest.approx(naive(-0.1, -2.4))
    assert (reading.logprob_true, reading.logprob_false, reading.estimated) == (-0.1, -2.4, False)


def test_read_answer_exact_token_wins_over_a_more_probable_variant() -> None:
    # ' True' and 'true' are other tokens than ' true': the exact one's logprob counts even
    # where a variant is listed as more probable, and the reading is a measurement
    reading = read_answer({" True": -0.3, "true": -0.5, " false": -2.0, " true": -2.2})
    assert reading is not None
    assert (reading.logprob_true, reading.logprob_false) == (-2.2, -2.0)
    assert reading.score == pytest.approx(naive(-2.2, -2.0))
    assert not reading.estimated
    reading = read_answer({" FALSE": -0.1, " false": -3.0, " true": -1.0}.items())
    assert reading is not None and reading.logprob_false == -3.0 and not reading.estimated


@pytest.mark.parametrize("variant", ["True", "true", " TRUE", " True", "TRUE "])
def test_read_answer_variant_fills_in_for_an_absent_exact_token(variant: str) -> None:
    reading = read_answer({variant: -0.4, " false": -2.0, "\n": -6.0})
    assert reading is not None
    assert (reading.logprob_true, reading.logprob_false) == (-0.4, -2.0)
    assert reading.estimated  # a stand-in, not the trained answer token
    # of several variants the most probable stands in
    reading = read_answer({" False": -3.5, "false": -1.5, " true": -0.3})
    assert reading is not None and reading.logprob_false == -1.5 and reading.estimated


def test_read_answer_ids_are_exact() -> None:
    ids = {830: ANSWER_TRUE, 895: ANSWER_FALSE}
    # llama-server's pairs: each alternative by text and by id; ' True' (3007) is a variant
    pairs = [(" True", -0.2), (3007, -0.2), (" true", -1.0), (830, -1.0), ("", -3.0), (895, -3.0)]
    reading = read_answer(pairs, answer_ids=ids)
    assert reading is not None
    assert (reading.logprob_true, reading.logprob_false, reading.estimated) == (-1.0, -3.0, False)
    reading = read_answer({"token_id:830": -0.5, " False": -1.0}, answer_ids=ids)
    assert reading is not None and reading.logprob_true == -0.5 and reading.estimated


def test_read_answer_vllm_minus_inf_counts_as_present() -> None:
    reading = read_answer({" true": -0.0001, " false": -9999.0})
    assert reading is not None and not reading.estimated
    assert reading.score == 1.0


def test_read_answer_token_id_keys_need_answer_ids() -> None:
    top = {"token_id:830": -0.3, "token_id:895": -1.5, "token_id:13": -4.0}
    assert read_answer(top) is None
    reading = read_answer(top, answer_ids={830: ANSWER_TRUE, 895: ANSWER_FALSE})
    assert reading is not None
    assert reading.score == pytest.approx(naive(-0.3, -1.5))


def test_read_answer_integer_ids_from_pairs() -> None:
    pairs = [
        ("", -6.0), (151666, -6.0), (" true", -0.2), (830, -0.2), (" false", -1.9), (895, -1.9)
    ]
    reading = read_answer(pairs, answer_ids={830: ANSWER_TRUE, 895: ANSWER_FALSE})
    assert reading is not None
    assert reading.score == pytest.approx(naive(-0.2, -1.9))
    only_ids = [(830, -0.2), (895, -1.9), (13, -3.0)]
    assert read_answer(only_ids) is None
    assert read_answer(only_ids, answer_ids={830: ANSWER_TRUE, 895: ANSWER_FALSE}) is not None


def test_neither_answer_token_gives_none() -> None:
    assert read_answer({"\n": -0.1, "The": -2.0}) is None
    assert read_answer({}) is None


def test_missing_false_is_estimated_as_a_lower_bound() -> None:
    reading = read_answer({" true": -0.05, "\n": -4.0, " yes": -6.5})
    assert reading is not None and reading.estimated
    # ' false' is bounded by the smallest listed logprob (-6.5)
    assert reading.logprob_false == -6.5
    assert reading.score == pytest.approx(naive(-0.05, -6.5))
    assert reading.score > 0.5


def test_missing_true_is_estimated_as_an_upper_bound() -> None:
    reading = read_answer({" false": -0.02, "\n": -5.0, " no": -7.0})
    assert reading is not None and reading.estimated
    assert reading.logprob_true == -7.0
    assert reading.score == pytest.approx(naive(-7.0, -0.02))
    assert reading.score < 0.5


def test_estimate_bounds_the_real_score_on_truncated_distributions() -> None:
    """Cut a random full distribution to its top-k: when one answer falls out, the estimate
    is on the conservative side of the real score (below it when ' false' is missing,
    above it when ' true' is missing)."""
    rng = random.Random(7)
    checked = 0
    for _ in range(300):
        logits = {f"tok{i}": rng.gauss(0, 3) for i in range(60)}
        logits[ANSWER_TRUE] = rng.gauss(0, 3)
        logits[ANSWER_FALSE] = rng.gauss(0, 3)
        norm = math.log(sum(math.exp(v) for v in logits.values()))
        logprobs = {k: v - norm for k, v in logits.items()}
        top = dict(sorted(logprobs.items(), key=lambda kv: -kv[1])[:20])
        real = score_from_logprobs(logprobs[ANSWER_TRUE], logprobs[ANSWER_FALSE])
        reading = read_answer(top)
        if reading is None:
            continue
        if (ANSWER_TRUE in top) != (ANSWER_FALSE in top):
            checked += 1
            assert reading.estimated
            if ANSWER_TRUE in top:
                assert reading.score <= real + 1e-12
            else:
                assert reading.score >= real - 1e-12
        else:
            assert not reading.estimated
            assert reading.score == pytest.approx(real)
    assert checked > 10


@pytest.mark.parametrize(
    ("text", "verdict"),
    [
        ("reasoning</think> true", True),
        ("reasoning</think> false", False),
        ("reasoning\n</think>\n\nTrue.", True),
        ("it is true that...</think> false", False),
        ("no tag at all, the answer is false", False),
        ("no tag, last word decides: true maybe", None),
        ("reasoning</think> maybe", None),
        ("", None),
    ],
)
def test_verdict_from_text(text: str, verdict: bool | None) -> None:
    assert verdict_from_text(text) is verdict


@pytest.mark.parametrize(
    ("text", "reasoning"),
    [
        ("<think>\nThe passage is about tides.\n</think> true", "The passage is about tides."),
        ("  The passage is about tides.\n</think>", "The passage is about tides."),
        ("no closing tag, all reasoning  ", "no closing tag, all reasoning"),
        ("a</think>b</think>c", "a"),
    ],
)
def test_extract_reasoning(text: str, reasoning: str) -> None:
    assert extract_reasoning(text) == reasoning


@pytest.mark.parametrize(
    ("text", "cleaned"),
    [
        ("First point. Second point is unfin", "First point."),
        ("Is it? Maybe! Then more", "Is it? Maybe!"),
        ("Ends well.  \n", "Ends well."),
        ("no sentence end at all", "no sentence end at all"),
        ("  \n ", ""),
        ("Version 1.5 is cited and", "Version 1."),
    ],
)
def test_clean_reasoning(text: str, cleaned: str) -> None:
    assert clean_reasoning(text) == cleaned


PROMPT = (
    "Determine if the following passage is relevant to the query. Answer only with "
    "'true' or 'false'.\nQuery: tides\nPassage: The Moon pulls the sea.\n<think>"
)


def test_forced_answer_prompt_is_the_official_one() -> None:
    assert forced_answer_prompt(PROMPT, "The passage names the Moon. It says noth") == (
        "Determine if the following passage is relevant to the query. Answer only with "
        "'true' or 'false'.\nQuery: tides\nPassage: The Moon pulls the sea.\n<think>"
        "\nThe passage names the Moon.\n</think>"
    )


def test_forced_answer_prompt_has_no_second_think_end() -> None:
    forced = forced_answer_prompt(PROMPT, "It is relevant.\n</think>\n\nThe answer")
    assert forced == PROMPT + "\nIt is relevant.\n</think>"
    assert forced.count("</think>") == 1


def test_forced_answer_prompt_with_empty_reasoning() -> None:
    assert forced_answer_prompt(PROMPT, "") == PROMPT + "\n\n</think>"
