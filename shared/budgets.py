"""Budgets on the worker's hot path: which budgets apply to a step, whether one is spent,
and adding a step's cost to each.

A budget caps the spend (USD, kept as integer nano-dollars) of the whole instance, of one
provider key or of one workflow's runs, per calendar month (UTC) or over a custom window.
What a window has spent is one `budget_usage` row, added to in SQL (`spent = spent +
cost`) in the same transaction that records the step's success. Before a step calls its
provider, the worker reads those rows and stops the step if one says `spent >= limit`.
So however many workers run, the overshoot is at most the steps already in flight when
the limit was reached: each of them passed its check before the others' costs landed.

Budgets change rarely and every step asks which apply, so each process keeps the list
and reads it again at most every `CACHE_SECONDS` (a new or changed budget applies within
that time). A step that no budget applies to costs nothing here: no query before the
call, none after.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from functools import cache
from typing import Any, cast

from sqlalchemy import Connection, Table, and_, bindparam, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql.dml import Insert

from shared import webhooks
from shared.automation_models import Budget, BudgetScope, BudgetUsage
from shared.db import read_session
from shared.models import new_id, utcnow
from shared.pricing import NANOS_PER_USD

__all__ = [
    "CACHE_SECONDS",
    "BudgetRule",
    "BudgetSpent",
    "SoftLimitReached",
    "announce_soft_limits",
    "applicable",
    "describe",
    "forget_cached_budgets",
    "format_usd",
    "month_window",
    "period_of",
    "record_spend",
    "refresh",
    "soft_limit_nanos",
    "spent_budget",
]

log = logging.getLogger(__name__)

BUDGETS = cast(Table, Budget.__table__)  # type: ignore[attr-defined]
USAGE = cast(Table, BudgetUsage.__table__)  # type: ignore[attr-defined]

CACHE_SECONDS = 2.0


def month_window(now: datetime) -> tuple[datetime, datetime]:
    """The calendar month (UTC) that holds `now`: [first day 00:00, next first day)."""
    now = now.astimezone(UTC)
    start = datetime(now.year, now.month, 1, tzinfo=UTC)
    end = datetime(now.year + now.month // 12, now.month % 12 + 1, 1, tzinfo=UTC)
    return start, end


def period_of(
    window: str, window_start: datetime | None, window_end: datetime | None, now: datetime
) -> tuple[datetime, datetime]:
    """The window a budget counts spend in at `now`: this month, or its custom window
    (which may not have begun, or may be over)."""
    if window == "month" or window_start is None or window_end is None:
        return month_window(now)
    return window_start, window_end


def soft_limit_nanos(limit_nanos: int, percent: int | None) -> int | None:
    """The spend at which the soft-limit warning fires (None: the budget has none)."""
    return None if percent is None else limit_nanos * percent // 100


@dataclass(frozen=True, slots=True)
class BudgetRule:
    """A budget as the workers see it (cached per process)."""

    id: str
    name: str
    scope: str
    scope_id: str | None
    limit_nanos: int
    window: str
    window_start: datetime | None
    window_end: datetime | None
    soft_limit_percent: int | None

    def active_window(self, now: datetime) -> datetime | None:
        """The start of the window holding `now` (its `budget_usage` key), or None when
        a custom window has not begun or is over: the budget then does not apply."""
        start, end = period_of(self.window, self.window_start, self.window_end, now)
        return start if start <= now < end else None

    def soft_limit_nanos(self) -> int | None:
        return soft_limit_nanos(self.limit_nanos, self.soft_limit_percent)


def format_usd(nanos: int, *, places: int = 2, exact: bool = True) -> str:
    """$5.00, $0.0005: `places` decimals; more when needed to be exact, unless not
    `exact` (then rounded to `places`)."""
    amount = Decimal(nanos) / NANOS_PER_USD
    exponent = amount.normalize().as_tuple().exponent
    if exact and isinstance(exponent, int):
        places = max(places, -exponent)
    return f"${amount:,.{places}f}"


def describe(rule: BudgetRule) -> str:
    """'instance, $5.00 per month' or 'key, $5.00 from 2026-11-01 00:00 to ... UTC'."""
    limit = format_usd(rule.limit_nanos)
    if rule.window == "month" or rule.window_start is None or rule.window_end is None:
        return f"{rule.scope}, {limit} per month"
    start, end = (
        t.astimezone(UTC).strftime("%Y-%m-%d %H:%M") for t in (rule.window_start, rule.window_end)
    )
    return f"{rule.scope}, {limit} from {start} to {end} UTC"


@dataclass(frozen=True, slots=True)
class BudgetSpent:
    """A budget whose window is spent: the step must not call its provider."""

    budget: BudgetRule
    spent_nanos: int

    @property
    def message(self) -> str:
        limit = format_usd(self.budget.limit_nanos)
        places = max(4, len(limit.rsplit(".", 1)[-1]))
        spent = format_usd(self.spent_nanos, places=places, exact=False)
        return f"budget '{self.budget.name}' ({describe(self.budget)}) is spent: {spent} of {limit}"


@dataclass(frozen=True, slots=True)
class SoftLimitReached:
    """A window's spend crossed the budget's soft limit (announced once per window)."""

    budget_id: str
    name: str
    percent: int
    spent_nanos: int
    limit_nanos: int


# --- which budgets exist (per process) ----------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Index:
    instance: tuple[BudgetRule, ...]
    by_scope_id: dict[tuple[str, str], tuple[BudgetRule, ...]]

    @property
    def empty(self) -> bool:
        return not self.instance and not self.by_scope_id


_lock = threading.Lock()
_cache: tuple[float, _Index] | None = None


def _load_index() -> _Index:
    with read_session() as session:
        rows = session.execute(select(BUDGETS)).all()
    instance: list[BudgetRule] = []
    scoped: defaultdict[tuple[str, str], list[BudgetRule]] = defaultdict(list)
    for row in rows:
        rule = BudgetRule(
            id=row.id,
            name=row.name,
            scope=row.scope,
            scope_id=row.scope_id,
            limit_nanos=int(row.limit_nanos),
            window=row.window,
            window_start=row.window_start,
            window_end=row.window_end,
            soft_limit_percent=row.soft_limit_percent,
        )
        if rule.scope == BudgetScope.instance:
            instance.append(rule)
        elif rule.scope_id is not None:
            scoped[(rule.scope, rule.scope_id)].append(rule)
    return _Index(tuple(instance), {k: tuple(v) for k, v in scoped.items()})


def _index(max_age: float | None) -> _Index:
    """The cached list, read again when older than `max_age` (None: only if never read)."""
    global _cache
    now = time.monotonic()
    with _lock:
        if _cache is None or (max_age is not None and now - _cache[0] > max_age):
            _cache = (now, _load_index())
        return _cache[1]


def refresh() -> None:
    """Read the list of budgets again if it is older than CACHE_SECONDS. A worker calls
    this before a step's transactions, never inside one: a thread that holds a pooled
    connection must not wait for a second one while the other threads, holding theirs,
    wait for it (a deadlock once the pool is smaller than the thread count)."""
    _index(CACHE_SECONDS)


def forget_cached_budgets() -> None:
    global _cache
    with _lock:
        _cache = None


def applicable(
    *, key_id: str, workflow_id: str, now: datetime
) -> list[tuple[BudgetRule, datetime]]:
    """The budgets a step of this key and workflow counts against at `now`, each with its
    window's start; ordered by id, so that writers lock their rows in one order. Uses
    the list as last read (see `refresh`)."""
    index = _index(None)
    if index.empty:
        return []
    rules = (
        index.instance
        + index.by_scope_id.get((BudgetScope.key, key_id), ())
        + index.by_scope_id.get((BudgetScope.workflow, workflow_id), ())
    )
    active = [(rule, rule.active_window(now)) for rule in sorted(rules, key=lambda r: r.id)]
    return [(rule, start) for rule, start in active if start is not None]


# --- before the call ----------------------------------------------------------------------


def spent_budget(
    db: Connection, *, key_id: str, workflow_id: str, now: datetime | None = None
) -> BudgetSpent | None:
    """The first applicable budget whose window is spent, or None: one indexed read when
    budgets apply, none otherwise."""
    active = applicable(key_id=key_id, workflow_id=workflow_id, now=now or utcnow())
    if not active:
        return None
    query = select(USAGE.c.budget_id, USAGE.c.spent_nanos).where(
        or_(
            *(
                and_(USAGE.c.budget_id == rule.id, USAGE.c.window_start == start)
                for rule, start in active
            )
        )
    )
    spent = {row.budget_id: int(row.spent_nanos) for row in db.execute(query)}
    for rule, _start in active:
        if spent.get(rule.id, 0) >= rule.limit_nanos:
            return BudgetSpent(rule, spent[rule.id])
    return None


# --- after the call -----------------------------------------------------------------------


@cache
def _add_spend(dialect: str) -> Insert:
    """INSERT the window's row or add to it, in one statement (both databases have
    ON CONFLICT ... DO UPDATE); returns the new total and the marks already set."""
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert(USAGE).values(
        id=bindparam("usage_id", type_=USAGE.c.id.type),
        budget_id=bindparam("budget_id", type_=USAGE.c.budget_id.type),
        window_start=bindparam("start", type_=USAGE.c.window_start.type),
        spent_nanos=bindparam("add", type_=USAGE.c.spent_nanos.type),
    )
    return statement.on_conflict_do_update(
        index_elements=[USAGE.c.budget_id, USAGE.c.window_start],
        set_={"spent_nanos": USAGE.c.spent_nanos + statement.excluded.spent_nanos},
    ).returning(USAGE.c.id, USAGE.c.spent_nanos, USAGE.c.soft_warned_at, USAGE.c.exceeded_at)


MARK_SOFT_WARNED = (
    update(USAGE)
    .where(USAGE.c.id == bindparam("row_id"), USAGE.c.soft_warned_at.is_(None))
    .values(soft_warned_at=bindparam("now", type_=USAGE.c.soft_warned_at.type))
)
MARK_EXCEEDED = (
    update(USAGE)
    .where(USAGE.c.id == bindparam("row_id"), USAGE.c.exceeded_at.is_(None))
    .values(exceeded_at=bindparam("now", type_=USAGE.c.exceeded_at.type))
)


def _mark(db: Connection, statement: Any, row_id: str, now: datetime) -> bool:
    """Set a once-per-window mark; False if another transaction set it first."""
    return bool(db.execute(statement, {"row_id": row_id, "now": now}).rowcount == 1)


def record_spend(
    db: Connection, *, key_id: str, workflow_id: str, cost_nanos: int | None, now: datetime
) -> tuple[SoftLimitReached, ...]:
    """Add a step's cost to every budget it counts against, in the caller's transaction.
    Returns the soft limits this cost crossed first in their window, to announce after
    the commit (the row's mark makes it once per window, even with many workers)."""
    if not cost_nanos:
        return ()
    active = applicable(key_id=key_id, workflow_id=workflow_id, now=now)
    if not active:
        return ()
    statement = _add_spend(db.dialect.name)
    reached: list[SoftLimitReached] = []
    for rule, start in active:
        row = db.execute(
            statement,
            {"usage_id": new_id(), "budget_id": rule.id, "start": start, "add": cost_nanos},
        ).one()
        spent = int(row.spent_nanos)
        soft = rule.soft_limit_nanos()
        if (
            soft is not None
            and spent >= soft
            and row.soft_warned_at is None
            and _mark(db, MARK_SOFT_WARNED, row.id, now)
        ):
            reached.append(
                SoftLimitReached(
                    rule.id, rule.name, rule.soft_limit_percent or 0, spent, rule.limit_nanos
                )
            )
        if (
            spent >= rule.limit_nanos
            and row.exceeded_at is None
            and _mark(db, MARK_EXCEEDED, row.id, now)
        ):
            log.warning(
                "budget '%s' (%s) is spent: %s; no further calls until its window ends",
                rule.name,
                describe(rule),
                format_usd(spent, places=4, exact=False),
            )
    return tuple(reached)


def announce_soft_limits(reached: tuple[SoftLimitReached, ...]) -> None:
    """After the commit: log each crossing and hand it to the budget's webhooks. A webhook
    failure is logged, never raised: the step it rides on has succeeded."""
    for event in reached:
        log.warning(
            "budget '%s' reached its soft limit (%d%%): %s of %s spent",
            event.name,
            event.percent,
            format_usd(event.spent_nanos, places=4, exact=False),
            format_usd(event.limit_nanos),
        )
        try:
            webhooks.on_budget_soft_limit(
                event.budget_id, spent_nanos=event.spent_nanos, limit_nanos=event.limit_nanos
            )
        except Exception:
            log.exception("budget '%s': could not queue its soft-limit webhooks", event.name)
