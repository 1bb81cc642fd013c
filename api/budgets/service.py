"""Budgets: created and changed by admins, read by everyone, enforced by the workers
(shared/budgets.py).

A budget created (or moved to a new window) part-way through its window starts from
what its scope has already spent in that window, read from the steps' own costs, so "this
month" means the whole month. Workers pick up a new or changed budget within
`shared.budgets.CACHE_SECONDS`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, delete, func
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from api.budgets.schemas import BudgetCreate, BudgetPublic, BudgetUpdate
from api.errors import Conflict, NotFound, Unprocessable, field_error
from api.workflows import service as workflows_service
from shared import audit
from shared.audit import Actor
from shared.automation_models import Budget, BudgetScope, BudgetUsage
from shared.budgets import period_of, soft_limit_nanos
from shared.models import ProviderKey, Run, StepRun, Workflow, utcnow
from shared.pricing import nanos_to_usd, usd_to_nanos

STEPS = cast(Table, StepRun.__table__)  # type: ignore[attr-defined]
RUNS = cast(Table, Run.__table__)  # type: ignore[attr-defined]


def _find_key(session: Session, id_or_name: str) -> ProviderKey | None:
    key = session.get(ProviderKey, id_or_name)
    if key is None:
        key = session.exec(select(ProviderKey).where(ProviderKey.name == id_or_name)).first()
    return key


def _scope_target(
    session: Session, scope: str, scope_id: str | None
) -> tuple[str | None, list[dict[str, Any]]]:
    """The id a scope_id (an id or a name) stands for, or what is wrong with it."""
    if scope == BudgetScope.instance:
        if scope_id is not None:
            return None, [field_error("scope_id", "scope_id must be left out for scope instance")]
        return None, []
    if scope_id is None:
        message = f"scope_id is required for scope {scope}: its id or name"
        return None, [field_error("scope_id", message)]
    target: ProviderKey | Workflow | None = (
        _find_key(session, scope_id)
        if scope == BudgetScope.key
        else workflows_service.find_workflow(session, scope_id)
    )
    if target is None:
        return None, [field_error("scope_id", f"no {scope} with id or name '{scope_id}'")]
    return target.id, []


def _check_window(
    window: str, start: datetime | None, end: datetime | None, *, sent: set[str]
) -> list[dict[str, Any]]:
    if window == "month":
        return [
            field_error(name, f"{name} is only for custom windows (window: custom)")
            for name in ("window_start", "window_end")
            if name in sent
        ]
    errors = [
        field_error(name, f"{name} is required for a custom window")
        for name, value in (("window_start", start), ("window_end", end))
        if value is None
    ]
    if start is not None and end is not None and end <= start:
        errors.append(field_error("window_end", "window_end must be after window_start"))
    return errors


def _spent_in(session: Session, budget: Budget, start: datetime, end: datetime) -> int:
    """What the budget's scope spent in [start, end), from the steps' recorded costs."""
    query = select(func.coalesce(func.sum(STEPS.c.cost_nanos), 0)).where(
        STEPS.c.finished_at >= start, STEPS.c.finished_at < end
    )
    if budget.scope == BudgetScope.key:
        query = query.where(STEPS.c.key_id == budget.scope_id)
    elif budget.scope == BudgetScope.workflow:
        query = query.select_from(STEPS.join(RUNS, RUNS.c.id == STEPS.c.run_id)).where(
            RUNS.c.workflow_id == budget.scope_id
        )
    return int(session.exec(query).one())


def _open_window(session: Session, budget: Budget) -> None:
    """Give the budget's current window its row, holding what the scope already spent
    in it (nothing to do before a custom window begins, or if the row exists)."""
    now = utcnow()
    start, end = period_of(budget.window, budget.window_start, budget.window_end, now)
    if start > now:
        return
    exists = session.exec(
        select(BudgetUsage.id).where(
            BudgetUsage.budget_id == budget.id, BudgetUsage.window_start == start
        )
    ).first()
    if exists is None:
        spent = _spent_in(session, budget, start, min(end, now))
        session.add(BudgetUsage(budget_id=budget.id, window_start=start, spent_nanos=spent))


def _rearm_marks(session: Session, budget: Budget) -> None:
    """After a new limit: a mark the window's spend no longer reaches is cleared, so the
    soft-limit warning (and the "spent" log) come again when it does."""
    start, _end = period_of(budget.window, budget.window_start, budget.window_end, utcnow())
    row = session.exec(
        select(BudgetUsage).where(
            BudgetUsage.budget_id == budget.id, BudgetUsage.window_start == start
        )
    ).first()
    if row is None:
        return
    soft = soft_limit_nanos(budget.limit_nanos, budget.soft_limit_percent)
    if soft is None or row.spent_nanos < soft:
        row.soft_warned_at = None
    if row.spent_nanos < budget.limit_nanos:
        row.exceeded_at = None
    session.add(row)


def create_budget(*, session: Session, body: BudgetCreate, actor: Actor) -> Budget:
    scope_id, errors = _scope_target(session, body.scope, body.scope_id)
    errors += _check_window(
        body.window, body.window_start, body.window_end, sent=body.model_fields_set
    )
    if errors:
        raise Unprocessable(errors)
    if session.exec(select(Budget.id).where(Budget.name == body.name)).first():
        raise Conflict(f"a budget named '{body.name}' already exists")
    budget = Budget(
        name=body.name,
        scope=body.scope,
        scope_id=scope_id,
        limit_nanos=usd_to_nanos(body.limit_usd),
        window=body.window,
        window_start=body.window_start,
        window_end=body.window_end,
        soft_limit_percent=body.soft_limit_percent,
    )
    session.add(budget)
    try:
        session.flush()
    except IntegrityError as exc:
        raise Conflict(f"a budget named '{body.name}' already exists") from exc
    _open_window(session, budget)
    audit.record(
        session,
        actor,
        "budget.created",
        target_type="budget",
        target_id=budget.id,
        target_name=budget.name,
        detail=body.model_dump(mode="json", exclude={"name"}),
    )
    return budget


def get_budget(*, session: Session, budget_id: str) -> Budget:
    budget = session.get(Budget, budget_id)
    if budget is None:
        budget = session.exec(select(Budget).where(Budget.name == budget_id)).first()
    if budget is None:
        raise NotFound(f"no budget with id or name '{budget_id}'")
    return budget


def list_budgets(*, session: Session) -> list[Budget]:
    return list(session.exec(select(Budget).order_by(col(Budget.name))).all())


def update_budget(*, session: Session, budget_id: str, body: BudgetUpdate, actor: Actor) -> Budget:
    """Change what was sent. A new window starts from its scope's spend so far in it;
    workers apply the change within a few seconds."""
    budget = get_budget(session=session, budget_id=budget_id)
    changes = body.model_dump(exclude_unset=True)
    window = changes.get("window", budget.window)
    if window == "month":
        start = end = None
    else:
        start = changes.get("window_start", budget.window_start)
        end = changes.get("window_end", budget.window_end)
    errors = _check_window(window, start, end, sent=set(changes))
    if errors:
        raise Unprocessable(errors)
    new_name = changes.get("name")
    taken = select(Budget.id).where(Budget.name == new_name, Budget.id != budget.id)
    if new_name is not None and session.exec(taken).first():
        raise Conflict(f"a budget named '{new_name}' already exists")
    if "name" in changes:
        budget.name = changes["name"]
    if "limit_usd" in changes:
        budget.limit_nanos = usd_to_nanos(changes["limit_usd"])
    if "soft_limit_percent" in changes:
        budget.soft_limit_percent = changes["soft_limit_percent"]
    new_window = (window, start, end) != (budget.window, budget.window_start, budget.window_end)
    budget.window, budget.window_start, budget.window_end = window, start, end
    budget.updated_at = utcnow()
    session.add(budget)
    try:
        session.flush()
    except IntegrityError as exc:
        raise Conflict(f"a budget named '{new_name}' already exists") from exc
    if new_window:
        _open_window(session, budget)
    if "limit_usd" in changes or "soft_limit_percent" in changes:
        _rearm_marks(session, budget)
    audit.record(
        session,
        actor,
        "budget.updated",
        target_type="budget",
        target_id=budget.id,
        target_name=budget.name,
        detail=body.model_dump(mode="json", exclude_unset=True),
    )
    return budget


def delete_budget(*, session: Session, budget_id: str, actor: Actor) -> None:
    budget = get_budget(session=session, budget_id=budget_id)
    session.execute(delete(BudgetUsage).where(col(BudgetUsage.budget_id) == budget.id))
    session.delete(budget)
    audit.record(
        session,
        actor,
        "budget.deleted",
        target_type="budget",
        target_id=budget.id,
        target_name=budget.name,
    )


def _scope_names(session: Session, budgets: list[Budget]) -> dict[str, str]:
    ids = {b.scope_id for b in budgets if b.scope_id is not None}
    if not ids:
        return {}
    keys = session.exec(
        select(ProviderKey.id, ProviderKey.name).where(col(ProviderKey.id).in_(ids))
    )
    flows = session.exec(select(Workflow.id, Workflow.name).where(col(Workflow.id).in_(ids)))
    return {**dict(keys.all()), **dict(flows.all())}


def to_public(session: Session, budgets: list[Budget]) -> list[BudgetPublic]:
    """The budgets with their current window's spend: one query for all of them."""
    now = utcnow()
    rows = session.exec(
        select(BudgetUsage).where(col(BudgetUsage.budget_id).in_([b.id for b in budgets]))
    ).all()
    usage = {(row.budget_id, row.window_start): row for row in rows}
    names = _scope_names(session, budgets)
    public = []
    for budget in budgets:
        start, end = period_of(budget.window, budget.window_start, budget.window_end, now)
        row = usage.get((budget.id, start))
        spent = row.spent_nanos if row is not None else 0
        public.append(
            BudgetPublic(
                id=budget.id,
                name=budget.name,
                scope=budget.scope,
                scope_id=budget.scope_id,
                scope_name=names.get(budget.scope_id) if budget.scope_id else None,
                limit_usd=nanos_to_usd(budget.limit_nanos) or 0.0,
                window=budget.window,
                window_start=budget.window_start,
                window_end=budget.window_end,
                period_start=start,
                period_end=end,
                active=start <= now < end,
                soft_limit_percent=budget.soft_limit_percent,
                spent_usd=nanos_to_usd(spent) or 0.0,
                remaining_usd=nanos_to_usd(max(0, budget.limit_nanos - spent)) or 0.0,
                exceeded=spent >= budget.limit_nanos,
                soft_warned_at=row.soft_warned_at if row is not None else None,
                exceeded_at=row.exceeded_at if row is not None else None,
                created_at=budget.created_at,
                updated_at=budget.updated_at,
            )
        )
    return public
