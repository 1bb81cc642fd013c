"""The cluster-wide limiter: exact sliding windows, token settlement, and what it learns
from the provider. fakeredis (with Lua through lupa) under a controlled clock, then a
real redis-server hammered by threads."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import fakeredis
import pytest
import redis
from fakeredis._socket import _base as fake_socket
from fakeredis.commands_mixins import server_mixin

from shared.embedded_redis import start_redis
from shared.providers.errors import RateLimited, ServerError
from shared.rate_limits import (
    DEFAULT_429_WAIT_SECONDS,
    MAX_LEARNED_WAIT_SECONDS,
    Limits,
    RateLimiter,
    learned_delay,
)

KEY = "k1"


class Clock:
    """fakeredis's TIME and key expiry, moved by hand."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def time(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock()
    fake_time = SimpleNamespace(time=clock.time, sleep=time.sleep, monotonic=time.monotonic)
    monkeypatch.setattr(server_mixin, "time", fake_time)
    monkeypatch.setattr(fake_socket, "time", fake_time)
    return clock


@pytest.fixture
def limiter(clock: Clock) -> RateLimiter:
    return RateLimiter(fakeredis.FakeRedis(), window_seconds=60.0)


def test_no_limits_never_wait(limiter: RateLimiter) -> None:
    for _ in range(1000):
        assert limiter.acquire(KEY, Limits(), tokens=10**6) == 0.0


def test_rpm_admits_exactly_n_per_window_then_waits_for_the_oldest(
    limiter: RateLimiter, clock: Clock
) -> None:
    limits = Limits(rpm=3)
    for _ in range(3):
        assert limiter.acquire(KEY, limits, tokens=0) == 0.0
        clock.advance(10)
    # calls at t=0, 10, 20; now t=30: the first leaves the window just after t=60
    wait = limiter.acquire(KEY, limits, tokens=0)
    assert wait == pytest.approx(30.0, abs=1e-3)
    clock.advance(29.9)
    assert limiter.acquire(KEY, limits, tokens=0) > 0
    clock.advance(0.2)
    assert limiter.acquire(KEY, limits, tokens=0) == 0.0
    # a refusal takes nothing: the next slot is the t=10 call's, at t=70
    assert limiter.acquire(KEY, limits, tokens=0) == pytest.approx(9.9, abs=1e-3)


def test_a_call_exactly_one_window_old_still_counts(limiter: RateLimiter, clock: Clock) -> None:
    limits = Limits(rpm=1)
    assert limiter.acquire(KEY, limits, tokens=0) == 0.0
    clock.advance(60.0)
    assert limiter.acquire(KEY, limits, tokens=0) > 0  # a closed 60 s window would hold 2
    clock.advance(0.001)
    assert limiter.acquire(KEY, limits, tokens=0) == 0.0


def test_no_window_ever_holds_more_than_rpm_under_steady_pressure(
    limiter: RateLimiter, clock: Clock
) -> None:
    limits = Limits(rpm=60)
    admitted: list[float] = []
    for _ in range(3000):  # 3000 attempts over 300 simulated seconds
        if limiter.acquire(KEY, limits, tokens=0) == 0.0:
            admitted.append(clock.now)
        clock.advance(0.1)
    assert max_in_any_window(admitted, 60.0) == 60
    # and the limiter is not timid: about 60 per minute over five minutes
    assert len(admitted) >= 5 * 60


def test_keys_are_independent(limiter: RateLimiter) -> None:
    assert limiter.acquire("a", Limits(rpm=1), tokens=0) == 0.0
    assert limiter.acquire("a", Limits(rpm=1), tokens=0) > 0
    assert limiter.acquire("b", Limits(rpm=1), tokens=0) == 0.0


def test_lowering_rpm_waits_until_enough_calls_age_out(limiter: RateLimiter, clock: Clock) -> None:
    for _ in range(5):
        assert limiter.acquire(KEY, Limits(rpm=5), tokens=0) == 0.0
        clock.advance(1)
    # five calls at t=0..4, now t=5; with rpm=2 four must leave, the last at t=3
    assert limiter.acquire(KEY, Limits(rpm=2), tokens=0) == pytest.approx(58.0, abs=1e-3)


def test_tpm_counts_tokens_and_waits_for_enough_to_free(limiter: RateLimiter, clock: Clock) -> None:
    limits = Limits(tpm=1000)
    assert limiter.acquire(KEY, limits, tokens=400) == 0.0
    clock.advance(10)
    assert limiter.acquire(KEY, limits, tokens=400) == 0.0
    clock.advance(10)
    # 800 used; 300 more needs the first 400 to leave (t=60, now t=20)
    assert limiter.acquire(KEY, limits, tokens=300) == pytest.approx(40.0, abs=1e-3)
    assert limiter.acquire(KEY, limits, tokens=200) == 0.0  # fits; the refusal took nothing
    assert limiter.acquire(KEY, limits, tokens=1) > 0


def test_a_request_bigger_than_tpm_waits_for_an_empty_window_not_forever(
    limiter: RateLimiter, clock: Clock
) -> None:
    limits = Limits(tpm=100)
    assert limiter.acquire(KEY, limits, tokens=5000) == 0.0
    wait = limiter.acquire(KEY, limits, tokens=5000)
    assert wait == pytest.approx(60.0, abs=1e-3)
    clock.advance(wait)
    assert limiter.acquire(KEY, limits, tokens=5000) == 0.0


def test_both_limits_must_allow_and_a_refusal_takes_neither(
    limiter: RateLimiter, clock: Clock
) -> None:
    limits = Limits(rpm=10, tpm=100)
    assert limiter.acquire(KEY, limits, tokens=100) == 0.0
    assert limiter.acquire(KEY, limits, tokens=1) > 0  # tokens refuse
    # the refused call took no request slot: nine more still fit
    for _ in range(9):
        assert limiter.acquire(KEY, Limits(rpm=10), tokens=0) == 0.0
    assert limiter.acquire(KEY, Limits(rpm=10), tokens=0) > 0


def test_settle_with_request_id_replaces_the_estimate_exactly(
    limiter: RateLimiter, clock: Clock
) -> None:
    limits = Limits(tpm=1000)
    assert limiter.acquire(KEY, limits, tokens=900, request_id="s1:1") == 0.0
    assert limiter.acquire(KEY, limits, tokens=200) > 0
    limiter.settle(KEY, limits, estimated=900, actual=100, request_id="s1:1")
    assert limiter.acquire(KEY, limits, tokens=900) == 0.0  # 100 + 900
    assert limiter.acquire(KEY, limits, tokens=1) > 0
    # the refund left with its reservation: both slots free together after a window
    clock.advance(60.001)
    assert limiter.acquire(KEY, limits, tokens=1000) == 0.0


def test_settle_overrun_makes_later_calls_wait(limiter: RateLimiter, clock: Clock) -> None:
    limits = Limits(tpm=1000)
    assert limiter.acquire(KEY, limits, tokens=100, request_id="s2:1") == 0.0
    limiter.settle(KEY, limits, estimated=100, actual=1500, request_id="s2:1")
    clock.advance(30)
    # the window holds 1500 > 1000: even one token waits for the call to age out
    assert limiter.acquire(KEY, limits, tokens=1) == pytest.approx(30.0, abs=1e-3)


def test_settle_without_request_id_adds_overruns_but_never_refunds(
    limiter: RateLimiter, clock: Clock
) -> None:
    limits = Limits(tpm=1000)
    assert limiter.acquire(KEY, limits, tokens=600) == 0.0
    limiter.settle(KEY, limits, estimated=600, actual=10)  # no refund
    assert limiter.acquire(KEY, limits, tokens=500) > 0
    clock.advance(10)
    limiter.settle(KEY, limits, estimated=0, actual=300)  # overrun stamped now (t=10)
    clock.advance(50.001)  # the 600 left; the 300 stays until t=70
    assert limiter.acquire(KEY, limits, tokens=800) > 0
    assert limiter.acquire(KEY, limits, tokens=700) == 0.0


def test_settle_counts_a_clamped_estimate_as_what_was_reserved(
    limiter: RateLimiter, clock: Clock
) -> None:
    limits = Limits(tpm=100)
    assert limiter.acquire(KEY, limits, tokens=5000) == 0.0  # reserved 100
    limiter.settle(KEY, limits, estimated=5000, actual=150)  # 50 over what was reserved
    clock.advance(60.001)
    assert limiter.acquire(KEY, limits, tokens=100) == 0.0


def test_the_same_request_id_twice_keeps_both_reservations(limiter: RateLimiter) -> None:
    limits = Limits(tpm=1000)
    assert limiter.acquire(KEY, limits, tokens=400, request_id="again") == 0.0
    assert limiter.acquire(KEY, limits, tokens=400, request_id="again") == 0.0
    assert limiter.acquire(KEY, limits, tokens=300) > 0


def test_idle_keys_expire(limiter: RateLimiter, clock: Clock) -> None:
    client = limiter._client
    limiter.acquire(KEY, Limits(rpm=5, tpm=100), tokens=10)
    assert client.keys("ownkey:rl:*")
    clock.advance(62)
    assert client.keys("ownkey:rl:*") == []


# What the provider tells us -----------------------------------------------------------


def test_a_429_with_retry_after_blocks_every_caller_even_without_limits(
    limiter: RateLimiter, clock: Clock
) -> None:
    error = RateLimited("openai: rate limited", retry_after=12.0)
    assert limiter.learn(KEY, error) == 12.0
    assert limiter.learned_wait(KEY) == pytest.approx(12.0, abs=1e-3)
    assert limiter.acquire(KEY, Limits(), tokens=0) == pytest.approx(12.0, abs=1e-3)
    assert limiter.acquire("other", Limits(), tokens=0) == 0.0
    clock.advance(12.001)
    assert limiter.learned_wait(KEY) == 0.0
    assert limiter.acquire(KEY, Limits(), tokens=0) == 0.0


def test_a_shorter_wait_never_shortens_a_longer_one(limiter: RateLimiter) -> None:
    limiter.learn(KEY, RateLimited("x", retry_after=30.0))
    limiter.learn(KEY, RateLimited("x", retry_after=2.0))
    assert limiter.learned_wait(KEY) == pytest.approx(30.0, abs=1e-3)


def test_remaining_zero_from_successful_headers_blocks_until_reset(
    limiter: RateLimiter,
) -> None:
    assert limiter.learn(KEY, {"X-RateLimit-Remaining-Requests": "5"}) == 0.0
    assert limiter.learned_wait(KEY) == 0.0
    headers = {"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "6m0s"}
    assert limiter.learn(KEY, headers) == 360.0
    assert limiter.learned_wait(KEY) == pytest.approx(360.0, abs=1e-3)


def test_other_errors_teach_nothing(limiter: RateLimiter) -> None:
    assert limiter.learn(KEY, ServerError("openai: 500")) == 0.0
    assert limiter.learned_wait(KEY) == 0.0


def test_learned_delay_reads_each_providers_headers() -> None:
    now = 1_800_000_000.0
    bare = RateLimited("x")
    assert learned_delay(bare, now=now) == DEFAULT_429_WAIT_SECONDS
    openai = RateLimited(
        "x",
        rate_limit_headers={
            "x-ratelimit-remaining-requests": "0",
            "x-ratelimit-reset-requests": "1.5s",
            "x-ratelimit-remaining-tokens": "0",
            "x-ratelimit-reset-tokens": "250ms",
        },
    )
    assert learned_delay(openai, now=now) == 1.5
    anthropic = RateLimited(
        "x",
        rate_limit_headers={
            "anthropic-ratelimit-tokens-remaining": "0",
            "anthropic-ratelimit-tokens-reset": "2027-01-15T08:00:20Z",
        },
    )
    reset_at = 1_800_000_000.0 + 20  # 2027-01-15T08:00:00Z is 1_800_000_000
    assert learned_delay(anthropic, now=reset_at - 20) == pytest.approx(20.0)
    assert learned_delay({"x-ratelimit-remaining-requests": "3"}, now=now) is None
    assert learned_delay({"x-ratelimit-remaining-requests": "0"}, now=now) is None  # no reset


def test_an_absurd_reset_is_capped(limiter: RateLimiter) -> None:
    assert limiter.learn(KEY, RateLimited("x", retry_after=86400.0)) == MAX_LEARNED_WAIT_SECONDS


# A real Redis, many threads ------------------------------------------------------------


def max_in_any_window(times: list[float], window: float) -> int:
    """The most events inside any closed interval of length `window`."""
    times = sorted(times)
    best, start = 0, 0
    for end, t in enumerate(times):
        while times[start] < t - window:
            start += 1
        best = max(best, end - start + 1)
    return best


@pytest.fixture
def real_redis(tmp_path: Path) -> Iterator[redis.Redis]:
    server = start_redis(tmp_path / "redis")
    client = redis.Redis.from_url(server.url)
    try:
        yield client
    finally:
        client.close()
        server.stop()


def test_threads_on_a_real_redis_never_exceed_the_limit_in_any_window(
    real_redis: redis.Redis,
) -> None:
    window, rpm = 2.0, 30
    limiter = RateLimiter(real_redis, window_seconds=window)
    # a second limiter object: another process's view of the same key
    other = RateLimiter(redis.Redis(connection_pool=real_redis.connection_pool), window_seconds=2)
    admitted: list[float] = []
    lock = threading.Lock()
    deadline = time.monotonic() + 3.0

    def hammer(index: int) -> None:
        mine = limiter if index % 2 else other
        while time.monotonic() < deadline:
            decision = mine.try_acquire(KEY, Limits(rpm=rpm, tpm=30_000), tokens=1000)
            if decision.admitted:
                with lock:
                    admitted.append(decision.server_time)
            else:
                assert decision.wait > 0
                time.sleep(min(decision.wait, 0.01))

    threads = [threading.Thread(target=hammer, args=(i,)) for i in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert max_in_any_window(admitted, window) <= rpm
    # three seconds of pressure on a 2 s window fill the first window and most of a second
    assert len(admitted) >= rpm + rpm // 2
    assert len(set(admitted)) == len(admitted)
