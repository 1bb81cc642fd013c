"""Cron expressions in a time zone, with fire times in UTC that stay right across DST.

croniter does the calendar arithmetic. It already handles spring forward the way cron
does (a wall time that does not exist that night fires at the moment the clock jumps:
a daily 02:30 in Europe/Berlin fires at 03:00 CEST on the last Sunday of March), but on
the autumn night it matches a repeated wall time twice. This module decides between the
two readings the way Vixie cron and cronie do:

- a job pinned to particular hours ("30 2 * * *") is about the wall clock: it fires at
  the first of the two 02:30s only;
- a job on every hour ("30 * * * *", "15 */2 * * *": the hour field starts with "*")
  is about elapsed time: it fires at both, an hour apart.

An expression has the five standard fields, or six where the sixth is seconds
(croniter's order: "*/10 * * * * */15" fires every 15 seconds of every tenth minute).
Fire times are whole seconds.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Literal
from zoneinfo import ZoneInfo, available_timezones

from croniter import CroniterBadDateError, croniter

__all__ = ["CronSchedule", "InvalidCron", "UnknownTimezone", "check_cron", "check_timezone"]

# croniter's aliases, spelled out so the hour-field rule above sees their hours.
ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
ONE_SECOND = timedelta(seconds=1)


class InvalidCron(ValueError):
    pass


class UnknownTimezone(ValueError):
    pass


@lru_cache(maxsize=1)
def _zone_names() -> frozenset[str]:
    return frozenset(available_timezones())


def check_timezone(name: str) -> ZoneInfo:
    """An IANA zone ("Europe/Berlin", "UTC"). Checked against the zone list rather than
    opened directly, so a path-like or odd name is refused instead of read from disk."""
    if name not in _zone_names():
        raise UnknownTimezone(
            f"unknown time zone '{name}'; use an IANA name such as UTC or Europe/Berlin"
        )
    return ZoneInfo(name)


def check_cron(expression: str) -> str:
    """The expression, normalized (aliases spelled out, single spaces); InvalidCron with a
    readable reason otherwise."""
    text = " ".join(expression.split())
    text = ALIASES.get(text.lower(), text)
    fields = text.split(" ")
    if len(fields) not in (5, 6):
        raise InvalidCron(
            f"cron must have 5 fields (minute hour day month weekday) or 6 (plus seconds "
            f"last), not {len(fields)}: '{expression}'"
        )
    try:
        croniter(text, datetime(2000, 1, 1, tzinfo=UTC)).get_next(datetime)
    except CroniterBadDateError:
        raise InvalidCron(f"invalid cron expression '{expression}': it never fires") from None
    except Exception as exc:  # croniter raises several types for one bad expression
        raise InvalidCron(f"invalid cron expression '{expression}': {exc}") from None
    return text


class CronSchedule:
    """Fire times of one expression in one zone. Every datetime in and out is aware;
    the ones out are UTC."""

    def __init__(self, expression: str, timezone: str) -> None:
        self.expression = check_cron(expression)
        self.zone = check_timezone(timezone)
        self._wall_clock = not self.expression.split(" ")[1].startswith("*")

    def next_after(self, moment: datetime) -> datetime | None:
        """The first fire time strictly after `moment`; None if there is none."""
        return self._step(moment, "next")

    def latest_at_or_before(self, moment: datetime) -> datetime | None:
        """The last fire time at or before `moment`; None if there is none."""
        # Fire times are whole seconds and croniter's get_prev is strict.
        return self._step(moment.replace(microsecond=0) + ONE_SECOND, "prev")

    def at_or_after(self, moment: datetime) -> datetime | None:
        """The first fire time at or after `moment`; None if there is none."""
        whole = moment.replace(microsecond=0)
        return self.next_after(whole - ONE_SECOND if whole == moment else whole)

    def upcoming(self, first: datetime, count: int) -> list[datetime]:
        """`count` fire times from `first` on (`first` itself if it is one)."""
        times: list[datetime] = []
        current = self.at_or_after(first)
        while current is not None and len(times) < count:
            times.append(current)
            current = self.next_after(current)
        return times

    def between(self, start: datetime, end: datetime, *, limit: int) -> list[datetime]:
        """Fire times in [start, end), at most `limit` of them (the earliest)."""
        times: list[datetime] = []
        current = self.at_or_after(start)
        while current is not None and current < end and len(times) < limit:
            times.append(current)
            current = self.next_after(current)
        return times

    def _step(self, moment: datetime, direction: Literal["next", "prev"]) -> datetime | None:
        iterator = croniter(self.expression, moment.astimezone(self.zone))
        advance = iterator.get_next if direction == "next" else iterator.get_prev
        while True:
            try:
                found: datetime = advance(datetime)
            except CroniterBadDateError:  # no such date within croniter's search range
                return None
            if not (self._wall_clock and self._is_repeat(found)):
                return found.astimezone(UTC)

    def _is_repeat(self, found: datetime) -> bool:
        """True for the second occurrence of a wall time that autumn's clock change
        repeats (the first one has already fired)."""
        wall = found.replace(tzinfo=None)
        first = wall.replace(tzinfo=self.zone, fold=0)
        second = wall.replace(tzinfo=self.zone, fold=1)
        return first.utcoffset() != second.utcoffset() and found.astimezone(UTC) == (
            second.astimezone(UTC)
        )
