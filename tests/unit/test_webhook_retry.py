"""The webhook retry schedule: 10 s, 30 s, 2 min, 10 min, 30 min, then hourly, each
moved by up to 20%, scaled by the configured base."""

from __future__ import annotations

import random

import pytest

from worker.webhook_retry import retry_delay

NOMINAL = {1: 10, 2: 30, 3: 120, 4: 600, 5: 1800, 6: 3600, 7: 3600, 30: 3600}


@pytest.mark.parametrize(("attempt", "nominal"), sorted(NOMINAL.items()))
def test_each_delay_is_its_nominal_value_within_twenty_percent(attempt: int, nominal: int) -> None:
    rng = random.Random(attempt)
    delays = [retry_delay(attempt, base_seconds=10, rng=rng) for _ in range(500)]
    assert all(0.8 * nominal <= d <= 1.2 * nominal for d in delays)
    # Jittered, and across the whole band: deliveries of one outage spread out.
    assert min(delays) < 0.85 * nominal and max(delays) > 1.15 * nominal


def test_delays_grow_and_are_capped() -> None:
    nominal = [retry_delay(n, base_seconds=10, rng=_Middle()) for n in range(1, 10)]
    assert nominal == [10, 30, 120, 600, 1800, 3600, 3600, 3600, 3600]


def test_the_base_scales_the_whole_schedule() -> None:
    assert retry_delay(1, base_seconds=0.5, rng=_Middle()) == 0.5
    assert retry_delay(3, base_seconds=0.5, rng=_Middle()) == 6.0


class _Middle(random.Random):
    """No jitter: the middle of the band."""

    def uniform(self, a: float, b: float) -> float:
        return (a + b) / 2
