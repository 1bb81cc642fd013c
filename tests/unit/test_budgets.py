"""shared/budgets.py: windows, which budgets apply, the check, adding spend, soft limits,
and what the hot path costs with and without budgets."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import event
from sqlmodel import select

from api.budgets import service as budgets_service
from api.budgets.schemas import BudgetUpdate
from shared import budgets, webhooks
from shared.audit import Actor
from shared.automation_models import Budget, BudgetUsage
from shared.db import get_engine, session_scope, transaction
from shared.models import utcnow
from tests.factories import make_key, make_workflow

NOV = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
NOV_START = datetime(2026, 11, 1, tzinfo=UTC)
DEC = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)
USD = 1_000_000_000


@pytest.fixture(autouse=True)
def _fresh_cache() -> Iterator[None]:
    budgets.forget_cached_budgets()
    yield
    budgets.forget_cached_budgets()


@pytest.fixture
def scope(sqlite_db: str) -> dict[str, str]:
    """Two keys and two workflows: budgets name one of each, steps use either."""
    with session_scope() as session:
        return {
            "key": make_key(session, name="k1").id,
            "other_key": make_key(session, name="k2").id,
            "workflow": make_workflow(session, name="w1", steps=[]).id,
            "other_workflow": make_workflow(session, name="w2", steps=[]).id,
        }


def add_budget(name: str, limit_usd: float, *, forget: bool = True, **fields: Any) -> str:
    with session_scope() as session:
        fields.setdefault("scope", "instance")
        budget = Budget(name=name, limit_nanos=int(limit_usd * USD), **fields)
        session.add(budget)
        session.flush()
    if forget:
        budgets.forget_cached_budgets()
    return budget.id


def spend(scope: dict[str, str], nanos: int | None, now: datetime = NOV, **over: str) -> Any:
    ids = {"key_id": scope["key"], "workflow_id": scope["workflow"], **over}
    with transaction() as db:
        return budgets.record_spend(db, cost_nanos=nanos, now=now, **ids)


def spent_in(budget_id: str, start: datetime = NOV_START) -> int:
    with session_scope() as session:
        row = session.exec(
            select(BudgetUsage).where(
                BudgetUsage.budget_id == budget_id, BudgetUsage.window_start == start
            )
        ).first()
        return 0 if row is None else row.spent_nanos


def check(scope: dict[str, str], now: datetime = NOV) -> budgets.BudgetSpent | None:
    with transaction() as db:
        return budgets.spent_budget(db, key_id=scope["key"], workflow_id=scope["workflow"], now=now)


class StatementCounter:
    def __init__(self) -> None:
        self.statements: list[str] = []

    def __call__(self, _conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        self.statements.append(statement)


@pytest.fixture
def statements(sqlite_db: str) -> Iterator[list[str]]:
    counter = StatementCounter()
    event.listen(get_engine(), "before_cursor_execute", counter)
    yield counter.statements
    event.remove(get_engine(), "before_cursor_execute", counter)


def test_month_windows_are_calendar_months_in_utc() -> None:
    assert budgets.month_window(NOV) == (NOV_START, datetime(2026, 12, 1, tzinfo=UTC))
    assert budgets.month_window(datetime(2026, 12, 31, 23, 59, tzinfo=UTC)) == (
        datetime(2026, 12, 1, tzinfo=UTC),
        datetime(2027, 1, 1, tzinfo=UTC),
    )
    # 00:30 on 1 December in Paris is still November in UTC.
    paris = timezone(timedelta(hours=1))
    assert budgets.month_window(datetime(2026, 12, 1, 0, 30, tzinfo=paris))[0] == NOV_START


def test_the_message_names_the_budget_its_scope_window_and_amounts() -> None:
    rule = budgets.BudgetRule(
        "b1", "november", "instance", None, 5 * USD, "month", None, None, None
    )
    spent = budgets.BudgetSpent(rule, 5_001_200_000)
    assert spent.message == (
        "budget 'november' (instance, $5.00 per month) is spent: $5.0012 of $5.00"
    )
    custom = budgets.BudgetRule("b2", "pilot", "key", "k", 500_000, "custom", NOV_START, NOV, None)
    assert budgets.BudgetSpent(custom, 512_345).message == (
        "budget 'pilot' (key, $0.0005 from 2026-11-01 00:00 to 2026-11-20 12:00 UTC) "
        "is spent: $0.0005 of $0.0005"
    )


def test_budgets_apply_by_instance_key_and_workflow(scope: dict[str, str]) -> None:
    every = add_budget("every", 100)
    by_key = add_budget("by-key", 100, scope="key", scope_id=scope["key"])
    by_flow = add_budget("by-flow", 100, scope="workflow", scope_id=scope["workflow"])
    later = add_budget(
        "later", 100, window="custom", window_start=DEC, window_end=DEC + timedelta(days=1)
    )

    def names(**ids: str) -> set[str]:
        found = budgets.applicable(now=NOV, **ids)
        return {rule.name for rule, start in found if start == NOV_START}

    assert names(key_id=scope["key"], workflow_id=scope["workflow"]) == {
        "every",
        "by-key",
        "by-flow",
    }
    assert names(key_id=scope["other_key"], workflow_id=scope["other_workflow"]) == {"every"}
    # Spend lands on each applicable budget, and on nothing else.
    assert spend(scope, 7) == ()
    assert [spent_in(b) for b in (every, by_key, by_flow)] == [7, 7, 7]
    spend(scope, 5, key_id=scope["other_key"])
    assert [spent_in(b) for b in (every, by_key, by_flow)] == [12, 7, 12]
    assert spent_in(later, DEC) == 0  # a custom window applies only inside itself
    spend(scope, 3, now=DEC + timedelta(hours=1))
    assert spent_in(later, DEC) == 3


def test_a_window_is_spent_at_its_limit_and_the_next_window_starts_afresh(
    scope: dict[str, str],
) -> None:
    add_budget("small", 1, scope="key", scope_id=scope["key"])
    spend(scope, USD - 1)
    assert check(scope) is None  # one nano-dollar left
    spend(scope, 1)
    refused = check(scope)
    assert refused is not None and refused.budget.name == "small"
    assert refused.spent_nanos == USD
    assert check(scope, now=DEC) is None  # December has its own window
    # Other keys are not held back by this key's budget.
    with transaction() as db:
        assert (
            budgets.spent_budget(
                db, key_id=scope["other_key"], workflow_id=scope["workflow"], now=NOV
            )
            is None
        )


def test_the_soft_limit_is_announced_once_per_window(
    scope: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    budget_id = add_budget("soft", 10, soft_limit_percent=80)
    calls: list[tuple[str, int, int]] = []

    def on_soft_limit(budget: str, *, spent_nanos: int, limit_nanos: int) -> None:
        calls.append((budget, spent_nanos, limit_nanos))

    monkeypatch.setattr(webhooks, "on_budget_soft_limit", on_soft_limit)
    for _ in range(3):  # 2, 4, 6: below 80% of 10
        budgets.announce_soft_limits(spend(scope, 2 * USD))
    assert calls == []
    budgets.announce_soft_limits(spend(scope, 3 * USD))  # 9 >= 8: crosses, once
    assert calls == [(budget_id, 9 * USD, 10 * USD)]
    budgets.announce_soft_limits(spend(scope, 3 * USD))  # 12: past the limit, no repeat
    assert len(calls) == 1
    budgets.announce_soft_limits(spend(scope, 9 * USD, now=DEC))  # December: again, once
    budgets.announce_soft_limits(spend(scope, USD // 2, now=DEC))
    assert calls[1:] == [(budget_id, 9 * USD, 10 * USD)]
    with session_scope() as session:
        rows = session.exec(select(BudgetUsage).order_by(BudgetUsage.window_start)).all()
        assert [r.soft_warned_at is not None for r in rows] == [True, True]
        assert [r.exceeded_at is not None for r in rows] == [True, False]


def test_a_failing_webhook_does_not_fail_the_step(
    scope: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    add_budget("soft", 1, soft_limit_percent=50)

    def broken(*_: Any, **__: Any) -> None:
        raise RuntimeError("webhooks down")

    monkeypatch.setattr(webhooks, "on_budget_soft_limit", broken)
    budgets.announce_soft_limits(spend(scope, USD))  # logged, not raised


def test_without_budgets_a_step_costs_no_query(
    scope: dict[str, str], statements: list[str]
) -> None:
    check(scope)  # loads the (empty) list of budgets once
    statements.clear()
    for _ in range(20):
        assert check(scope) is None
        assert spend(scope, 1000) == ()
    assert [s for s in statements if "budget" in s] == []


def test_with_budgets_a_step_costs_one_read_and_one_write_per_budget(
    scope: dict[str, str], statements: list[str]
) -> None:
    add_budget("a", 100)
    add_budget("b", 100, scope="key", scope_id=scope["key"])
    check(scope)
    statements.clear()
    assert check(scope) is None
    assert len([s for s in statements if "budget_usage" in s]) == 1
    statements.clear()
    spend(scope, 1000)
    assert len([s for s in statements if "budget_usage" in s]) == 2
    statements.clear()
    spend(scope, 0)  # a free call (a local model) writes nothing
    spend(scope, None)  # nor does one whose price is unknown
    assert statements == []


def test_a_budget_deleted_while_workers_still_know_it_does_not_fail_a_step(
    scope: dict[str, str],
) -> None:
    budget_id = add_budget("gone", 100)
    check(scope)  # this worker now knows the budget (for CACHE_SECONDS)
    with session_scope() as session:  # the API deletes it meanwhile
        session.delete(session.get_one(Budget, budget_id))
    spend(scope, 1000)  # still recorded, without error: nothing refers to it any more
    assert spent_in(budget_id) == 1000


def test_raising_the_limit_rearms_the_soft_limit_and_the_spent_mark(
    scope: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    budget_id = add_budget("rearm", 10, soft_limit_percent=50)
    calls: list[int] = []
    monkeypatch.setattr(
        webhooks,
        "on_budget_soft_limit",
        lambda _b, *, spent_nanos, limit_nanos: calls.append(spent_nanos),
    )
    now = utcnow()
    budgets.announce_soft_limits(spend(scope, 12 * USD, now=now))  # soft and hard limits

    def marks() -> tuple[bool, bool]:
        with session_scope() as session:
            row = session.exec(select(BudgetUsage).where(BudgetUsage.budget_id == budget_id)).one()
            return row.soft_warned_at is not None, row.exceeded_at is not None

    assert calls == [12 * USD] and marks() == (True, True)
    with session_scope() as session:
        update = BudgetUpdate(limit_usd=Decimal(100))
        budgets_service.update_budget(
            session=session, budget_id="rearm", body=update, actor=Actor(None, "t")
        )
    assert marks() == (False, False)  # $12 of $100: below both again
    budgets.forget_cached_budgets()
    budgets.announce_soft_limits(spend(scope, 40 * USD, now=now))  # $52: half of $100
    assert calls == [12 * USD, 52 * USD] and marks() == (True, False)


def test_the_list_of_budgets_is_read_again_by_refresh_never_inside_a_transaction(
    scope: dict[str, str], statements: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(budgets, "CACHE_SECONDS", 0.0)
    budgets.refresh()
    add_budget("new", 100, forget=False)

    def names() -> list[str]:
        found = budgets.applicable(key_id=scope["key"], workflow_id=scope["workflow"], now=NOV)
        return [rule.name for rule, _ in found]

    statements.clear()
    assert names() == []  # stale, and not read again here (callers hold a connection)
    assert statements == []
    budgets.refresh()
    assert names() == ["new"]
