"""Sign-in throttling against fakeredis: the counting and the waits it gives."""

from __future__ import annotations

import fakeredis

from shared.login_limits import LoginThrottle


def throttle() -> LoginThrottle:
    return LoginThrottle(fakeredis.FakeRedis(), per_user=3, per_address=5, window_seconds=60)


def test_a_user_is_refused_after_the_limit_and_told_how_long_to_wait() -> None:
    t = throttle()
    for _ in range(2):
        t.failed("alice", "10.0.0.1")
        assert t.retry_after("alice", "10.0.0.1") is None
    t.failed("alice", "10.0.0.1")
    wait = t.retry_after("Alice", "10.0.0.1")  # usernames count case-insensitively
    assert wait is not None and 0 < wait <= 60
    # Another address is not locked out for alice, and alice's address is not for bob.
    assert t.retry_after("alice", "10.0.0.2") is None
    assert t.retry_after("bob", "10.0.0.1") is None


def test_one_address_trying_many_usernames_is_refused() -> None:
    t = throttle()
    for name in ("a", "b", "c", "d", "e"):
        t.failed(name, "10.0.0.9")
    assert t.retry_after("f", "10.0.0.9") is not None
    assert t.retry_after("f", "10.0.0.8") is None


def test_success_clears_the_users_count_and_the_window_is_not_extended() -> None:
    t = throttle()
    t.failed("alice", "h")
    t.failed("alice", "h")
    t.succeeded("alice", "h")
    t.failed("alice", "h")
    t.failed("alice", "h")
    assert t.retry_after("alice", "h") is None
    t.client.expire(t._keys("bob", "h")[0], 60)
    ttl_before = t.client.ttl(t._keys("alice", "h")[1])
    t.failed("alice", "h")
    assert t.client.ttl(t._keys("alice", "h")[1]) <= ttl_before
