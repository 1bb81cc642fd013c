"""What a tick does with a schedule that is due: which fire time runs now, which earlier
ones it covers, and when the schedule is due next. Pure: no database, no clock.

A tick runs at most one fire time per schedule: the latest one that has come. The ones
before it (beat was down, or every worker was busy) are handled by the schedule's
misfire policy:

- `skip`: they are not run. The latest one still runs if it is less than the grace
  late (an ordinary slow tick); later than that, it is dropped too.
- `catch_up`: the latest one runs, once, and records the earlier ones as `missed`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from scheduler.cron import CronSchedule
from shared.automation_models import MisfirePolicy

__all__ = ["MAX_MISSED_RECORDED", "FirePlan", "misfire_grace", "plan_fire"]

# A catch-up after a long outage of a frequent schedule records this many of the fire
# times it covers (the earliest ones), not an unbounded list.
MAX_MISSED_RECORDED = 1000
MIN_GRACE_SECONDS = 60.0


def misfire_grace(tick_seconds: float) -> timedelta:
    """How late a fire time may run and still count as on time. A tick comes every
    `tick_seconds` but may wait behind steps in the workers' queue; beyond this, beat
    (or every worker) was down."""
    return timedelta(seconds=max(MIN_GRACE_SECONDS, 3 * tick_seconds))


@dataclass(frozen=True, slots=True)
class FirePlan:
    fire_time: datetime | None  # None: nothing runs now
    next_fire_at: datetime | None  # None: the expression never fires again
    missed: list[datetime] = field(default_factory=list)  # catch_up: earlier fire times covered
    skipped: bool = False  # skip: at least one fire time was dropped


def plan_fire(
    cron: CronSchedule,
    *,
    due_since: datetime,
    now: datetime,
    policy: str,
    grace: timedelta,
) -> FirePlan:
    """Plan a tick at `now` for a schedule whose fire times from `due_since` on have not
    run."""
    next_fire_at = cron.next_after(now)
    latest = cron.latest_at_or_before(now)
    if latest is None or latest < due_since:
        # `due_since` was no fire time of this expression, and none came since.
        return FirePlan(fire_time=None, next_fire_at=next_fire_at)
    if policy == MisfirePolicy.catch_up:
        missed = cron.between(due_since, latest, limit=MAX_MISSED_RECORDED)
        return FirePlan(fire_time=latest, next_fire_at=next_fire_at, missed=missed)
    if now - latest > grace:
        return FirePlan(fire_time=None, next_fire_at=next_fire_at, skipped=True)
    first = cron.at_or_after(due_since)
    return FirePlan(
        fire_time=latest, next_fire_at=next_fire_at, skipped=first is not None and first < latest
    )
