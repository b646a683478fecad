"""The retry policy itself: which failures are retried and how long it waits."""

from __future__ import annotations

import httpx
import openai
import pytest
from tenacity import RetryCallState

from rank1_integrations._retry import is_retryable, retry_after_seconds, retrying
from rank1_integrations.errors import NoVerdictError

REQUEST = httpx.Request("POST", "http://rank1.test/v1/completions")


def status_error(status: int, headers: dict[str, str] | None = None) -> openai.APIStatusError:
    response = httpx.Response(status, headers=headers or {}, request=REQUEST)
    return openai.APIStatusError("failed", response=response, body=None)


@pytest.mark.parametrize(
    ("status", "retried"),
    [(408, True), (409, True), (429, True), (500, True), (502, True), (503, True),
     (400, False), (401, False), (403, False), (404, False), (422, False)],
)
def test_statuses(status: int, retried: bool) -> None:
    assert is_retryable(status_error(status)) is retried


def test_connection_errors_and_timeouts_are_retried() -> None:
    assert is_retryable(openai.APIConnectionError(request=REQUEST))
    assert is_retryable(openai.APITimeoutError(request=REQUEST))
    assert is_retryable(httpx.ReadTimeout("slow", request=REQUEST))


def test_no_verdict_and_programming_errors_are_not_retried() -> None:
    assert not is_retryable(NoVerdictError("no answer"))
    assert not is_retryable(ValueError("bad"))


def test_retry_after_forms() -> None:
    assert retry_after_seconds(status_error(429, {"Retry-After": "1.5"})) == 1.5
    assert retry_after_seconds(status_error(429, {"retry-after-ms": "250"})) == 0.25
    assert retry_after_seconds(status_error(429, {"Retry-After": "-3"})) == 0.0
    assert retry_after_seconds(status_error(429, {"Retry-After": "never"})) is None
    assert retry_after_seconds(status_error(429, {"Retry-After": "nan"})) is None
    assert retry_after_seconds(status_error(429, {"retry-after-ms": "NaN"})) is None
    assert retry_after_seconds(status_error(429, {"Retry-After": "inf"})) == 60.0
    assert retry_after_seconds(status_error(429)) is None
    assert retry_after_seconds(ValueError("no response")) is None


def wait_at(policy, attempt: int, exc: BaseException | None = None) -> float:
    state = RetryCallState(policy, fn=None, args=(), kwargs={})
    state.attempt_number = attempt
    if exc is not None:
        state.set_exception((type(exc), exc, None))
    return policy.wait(state)


def test_backoff_grows_with_jitter_and_is_capped() -> None:
    policy = retrying(5, backoff=0.5, max_backoff=3.0)
    for _ in range(50):
        assert 0.5 <= wait_at(policy, 1) <= 1.0
        assert 1.0 <= wait_at(policy, 2) <= 1.5
        assert 2.0 <= wait_at(policy, 3) <= 2.5
        assert wait_at(policy, 30) <= 3.0 + 0.5


def test_retry_after_wins_over_the_backoff() -> None:
    policy = retrying(5, backoff=0.5)
    assert wait_at(policy, 4, status_error(429, {"Retry-After": "0.2"})) == 0.2
    assert 0.5 <= wait_at(policy, 1, status_error(500)) <= 1.0


def test_stop_after_max_retries() -> None:
    policy = retrying(2)
    state = RetryCallState(policy, fn=None, args=(), kwargs={})
    state.attempt_number = 2
    assert not policy.stop(state)
    state.attempt_number = 3
    assert policy.stop(state)
