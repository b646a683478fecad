"""The selection rules both adapters share (``rank1_integrations._adapter``)."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, ValidationError

from rank1_integrations import Judgment, Rank1Client
from rank1_integrations._adapter import RerankSettings, judgment_metadata, select


def judged(index: int, score: float) -> Judgment:
    return Judgment(index=index, relevant=score >= 0.5, score=score, reasoning=f"r{index}",
                    source="answer_logprobs")


def failed(index: int) -> Judgment:
    return Judgment(index=index, relevant=None, score=None, error=f"passage {index} broke")


def indexes(judgments: list[Judgment]) -> list[int]:
    return [j.index for j in judgments]


JUDGMENTS = [judged(0, 0.2), judged(1, 0.9), judged(2, 0.5), judged(3, 0.9), judged(4, 0.0)]


def test_sorted_by_score_descending_ties_in_input_order() -> None:
    assert indexes(select(JUDGMENTS, top_n=None, score_threshold=None)) == [1, 3, 2, 0, 4]


def test_threshold_keeps_scores_equal_to_it() -> None:
    assert indexes(select(JUDGMENTS, top_n=None, score_threshold=0.5)) == [1, 3, 2]
    assert indexes(select(JUDGMENTS, top_n=None, score_threshold=0.9)) == [1, 3]


def test_threshold_zero_keeps_all_and_one_keeps_only_certain() -> None:
    assert indexes(select(JUDGMENTS, top_n=None, score_threshold=0.0)) == [1, 3, 2, 0, 4]
    assert select(JUDGMENTS, top_n=None, score_threshold=1.0) == []
    certain = [*JUDGMENTS, judged(5, 1.0)]
    assert indexes(select(certain, top_n=None, score_threshold=1.0)) == [5]


def test_top_n_after_threshold() -> None:
    assert indexes(select(JUDGMENTS, top_n=2, score_threshold=None)) == [1, 3]
    assert indexes(select(JUDGMENTS, top_n=10, score_threshold=None)) == [1, 3, 2, 0, 4]
    assert indexes(select(JUDGMENTS, top_n=2, score_threshold=0.95)) == []


def test_unjudged_come_last_outside_the_threshold_within_top_n() -> None:
    mixed = [failed(0), judged(1, 0.3), failed(2), judged(3, 0.8)]
    assert indexes(select(mixed, top_n=None, score_threshold=0.5)) == [3, 0, 2]
    assert indexes(select(mixed, top_n=3, score_threshold=0.5)) == [3, 0, 2]
    # the whole output respects top_n: judged first, then unjudged while room is left
    assert indexes(select(mixed, top_n=2, score_threshold=0.5)) == [3, 0]
    assert indexes(select(mixed, top_n=1, score_threshold=0.5)) == [3]
    assert indexes(select([failed(1), failed(0)], top_n=1, score_threshold=None)) == [0]


def test_metadata_for_judged_and_failed() -> None:
    assert judgment_metadata(judged(1, 0.75), include_reasoning=False) == {
        "relevance_score": 0.75, "rank1_relevant": True, "rank1_judged": True,
        "rank1_state": "judged",
    }
    assert judgment_metadata(judged(1, 0.25), include_reasoning=True, score_key=None) == {
        "rank1_relevant": False, "rank1_judged": True, "rank1_reasoning": "r1",
        "rank1_state": "judged",
    }
    assert judgment_metadata(failed(2), include_reasoning=True) == {
        "relevance_score": None, "rank1_relevant": None, "rank1_judged": False,
        "rank1_reasoning": "", "rank1_error": "passage 2 broke", "rank1_state": "failed",
    }
    score = judgment_metadata(judged(0, 0.5), include_reasoning=False)["relevance_score"]
    assert type(score) is float


class Settings(RerankSettings, BaseModel):
    """RerankSettings on its own, as each adapter sees it."""


@pytest.mark.parametrize("top_n", [0, -1])
def test_top_n_below_one_rejected(top_n: int) -> None:
    with pytest.raises(ValidationError, match="top_n must be a positive integer"):
        Settings(top_n=top_n)


@pytest.mark.parametrize("threshold", [-0.1, 1.5, float("nan")])
def test_threshold_outside_unit_interval_rejected(threshold: float) -> None:
    with pytest.raises(ValidationError, match="score_threshold must be in"):
        Settings(score_threshold=threshold)


def test_client_and_client_settings_together_rejected() -> None:
    with pytest.raises(ValidationError, match=r"either client or the client settings.*model"):
        Settings(client=Rank1Client(base_url="http://127.0.0.1:9/v1"), model="x")


def test_settings_build_the_client(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RANK1_API_KEY", "sk-from-env")
    settings = Settings(base_url="http://127.0.0.1:9/v1", model="m", mode="chat",
                        max_reasoning_tokens=64, concurrency=2, timeout=5.0, max_retries=1)
    assert "sk-from-env" not in repr(settings)
    built = settings.rank1_client
    assert built is settings.rank1_client  # built once
    assert (built.base_url, built.api_key, built.model, built.mode) == (
        "http://127.0.0.1:9/v1", "sk-from-env", "m", "chat")
    assert (built.max_reasoning_tokens, built.concurrency, built.timeout, built.max_retries) == (
        64, 2, 5.0, 1)


def test_unset_settings_leave_the_client_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RANK1_API_KEY", raising=False)
    built = Settings().rank1_client
    reference = Rank1Client()
    assert (built.base_url, built.model, built.mode, built.max_reasoning_tokens) == (
        reference.base_url, reference.model, reference.mode, reference.max_reasoning_tokens)
