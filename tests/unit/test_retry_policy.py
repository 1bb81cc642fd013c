from __future__ import annotations

import pytest

from shared.providers import AuthFailed, MalformedResponse, Overloaded, RateLimited, ServerError
from worker.retry_policy import RetryPolicy

POLICY = RetryPolicy(base_seconds=1, cap_seconds=8, max_retry_after_seconds=100)


@pytest.mark.parametrize("error", [AuthFailed("no"), MalformedResponse("bad json")])
def test_permanent_errors_never_retry(error: Exception) -> None:
    assert POLICY.delay_for(error, attempt=1, max_attempts=5) is None  # type: ignore[arg-type]


def test_transient_errors_back_off_exponentially_with_jitter_under_a_cap() -> None:
    for attempt, ceiling in [(1, 1), (2, 2), (3, 4), (4, 8), (9, 8)]:
        delays = [
            POLICY.delay_for(ServerError("500"), attempt=attempt, max_attempts=10)
            for _ in range(200)
        ]
        assert all(d is not None and 0 <= d <= ceiling for d in delays)
        assert len({round(d, 6) for d in delays if d is not None}) > 100  # jittered, not fixed


def test_attempts_run_out() -> None:
    assert POLICY.delay_for(Overloaded("529"), attempt=3, max_attempts=3) is None
    assert POLICY.delay_for(Overloaded("529"), attempt=2, max_attempts=3) is not None


def test_retry_after_is_a_floor_and_is_capped() -> None:
    assert POLICY.delay_for(RateLimited("429", retry_after=30), attempt=1, max_attempts=3) == 30
    assert POLICY.delay_for(RateLimited("429", retry_after=5000), attempt=1, max_attempts=3) == 100
