"""Cron fire times in a time zone: right across both DST changes, and clear refusals."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from scheduler.cron import CronSchedule, InvalidCron, UnknownTimezone, check_cron, check_timezone


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def hops(cron: CronSchedule, start: datetime, count: int) -> list[datetime]:
    """Fire times one after the other, each found from the previous one as the tick does
    (next_after of the last fire time)."""
    times, current = [], start
    for _ in range(count):
        found = cron.next_after(current)
        assert found is not None
        times.append(found)
        current = found
    return times


def test_a_daily_0230_in_berlin_fires_once_on_the_night_clocks_go_forward() -> None:
    """2026-03-29: 02:00 CET jumps to 03:00 CEST, so 02:30 does not exist that night.
    It fires once, when the clock jumps (03:00 CEST, 01:00 UTC), like cron does."""
    cron = CronSchedule("30 2 * * *", "Europe/Berlin")
    assert hops(cron, utc(2026, 3, 27, 12), 4) == [
        utc(2026, 3, 28, 1, 30),  # 02:30 CET
        utc(2026, 3, 29, 1, 0),  # 03:00 CEST: the jump
        utc(2026, 3, 30, 0, 30),  # 02:30 CEST
        utc(2026, 3, 31, 0, 30),
    ]


def test_a_daily_0230_in_berlin_fires_once_on_the_night_clocks_go_back() -> None:
    """2026-10-25: 03:00 CEST goes back to 02:00 CET, so 02:30 happens twice. A job
    pinned to 02:30 fires at the first one only (croniter alone fires at both)."""
    cron = CronSchedule("30 2 * * *", "Europe/Berlin")
    assert hops(cron, utc(2026, 10, 23, 12), 4) == [
        utc(2026, 10, 24, 0, 30),  # 02:30 CEST
        utc(2026, 10, 25, 0, 30),  # the first 02:30 (CEST); not 01:30 UTC as well
        utc(2026, 10, 26, 1, 30),  # 02:30 CET
        utc(2026, 10, 27, 1, 30),
    ]
    # Looking back finds the same single fire time that night.
    assert cron.latest_at_or_before(utc(2026, 10, 25, 2, 0)) == utc(2026, 10, 25, 0, 30)
    # And a tick between the two 02:30s sees nothing due until the next night.
    assert cron.next_after(utc(2026, 10, 25, 0, 45)) == utc(2026, 10, 26, 1, 30)


def test_an_hourly_job_follows_elapsed_time_through_both_changes() -> None:
    """A job on every hour fires every real hour: the repeated 02:30 twice in October,
    the missing 02:30 not at all in March, never two fires in one hour."""
    cron = CronSchedule("30 * * * *", "Europe/Berlin")
    assert hops(cron, utc(2026, 10, 24, 22, 0), 5) == [
        utc(2026, 10, 24, 22, 30),
        utc(2026, 10, 24, 23, 30),
        utc(2026, 10, 25, 0, 30),  # 02:30 CEST
        utc(2026, 10, 25, 1, 30),  # 02:30 CET
        utc(2026, 10, 25, 2, 30),  # 03:30 CET
    ]
    assert hops(cron, utc(2026, 3, 28, 23, 0), 3) == [
        utc(2026, 3, 28, 23, 30),  # 00:30 CET
        utc(2026, 3, 29, 0, 30),  # 01:30 CET
        utc(2026, 3, 29, 1, 30),  # 03:30 CEST
    ]


def test_times_are_read_in_the_schedules_zone() -> None:
    cron = CronSchedule("0 9 * * 1-5", "America/New_York")
    # Friday 2026-01-02 09:00 EST is 14:00 UTC; the next is Monday 2026-01-05.
    assert hops(cron, utc(2026, 1, 2, 0), 2) == [utc(2026, 1, 2, 14), utc(2026, 1, 5, 14)]


def test_a_sixth_field_is_seconds() -> None:
    cron = CronSchedule("* * * * * */20", "UTC")
    assert hops(cron, utc(2026, 1, 1, 0, 0, 50), 3) == [
        utc(2026, 1, 1, 0, 1, 0),
        utc(2026, 1, 1, 0, 1, 20),
        utc(2026, 1, 1, 0, 1, 40),
    ]


def test_looking_back_and_ranges_include_their_start() -> None:
    cron = CronSchedule("0 * * * *", "UTC")
    assert cron.latest_at_or_before(utc(2026, 1, 1, 5, 0)) == utc(2026, 1, 1, 5, 0)
    assert cron.latest_at_or_before(utc(2026, 1, 1, 5, 59, 59)) == utc(2026, 1, 1, 5, 0)
    assert cron.between(utc(2026, 1, 1, 1), utc(2026, 1, 1, 4), limit=10) == [
        utc(2026, 1, 1, 1),
        utc(2026, 1, 1, 2),
        utc(2026, 1, 1, 3),
    ]
    assert len(cron.between(utc(2026, 1, 1), utc(2027, 1, 1), limit=7)) == 7
    assert cron.upcoming(utc(2026, 1, 1, 1), 2) == [utc(2026, 1, 1, 1), utc(2026, 1, 1, 2)]
    assert cron.upcoming(utc(2026, 1, 1, 1, 0, 0, 1), 1) == [utc(2026, 1, 1, 2)]


def test_aliases_are_spelled_out_and_keep_their_hour_rule() -> None:
    assert check_cron("  @Daily ") == "0 0 * * *"
    assert check_cron("0   3 * *  *") == "0 3 * * *"
    hourly = CronSchedule("@hourly", "Europe/Berlin")
    # Both 02:00s of the autumn night, an hour apart.
    assert hops(hourly, utc(2026, 10, 24, 23, 30), 2) == [
        utc(2026, 10, 25, 0),
        utc(2026, 10, 25, 1),
    ]


@pytest.mark.parametrize(
    ("expression", "reason"),
    [
        ("61 * * * *", "out of range"),
        ("* * *", "5 fields"),
        ("every day", "5 fields"),
        ("0 0 1 1 * 0 2030", "not 7"),  # croniter's year field is not offered
        ("0 0 30 2 *", "never fires"),
        ("*/0 * * * *", "step"),
        ("H * * * *", "invalid cron"),
    ],
)
def test_a_bad_expression_is_refused_with_its_reason(expression: str, reason: str) -> None:
    with pytest.raises(InvalidCron, match=reason):
        check_cron(expression)


@pytest.mark.parametrize("name", ["Mars/Olympus", "../../etc/passwd", "", "utc "])
def test_an_unknown_time_zone_is_refused(name: str) -> None:
    with pytest.raises(UnknownTimezone, match="unknown time zone"):
        check_timezone(name)
