"""Usage and cost reports: tokens and cost of the steps that finished in a period,
grouped by day, provider, model, agent, workflow or key.

Computed from the step rows in SQL, so the totals are exactly the sums of the steps'
own costs (integer nano-dollars; no float drift). Steps that used tokens of a model
with no known price count as `unpriced_steps`: their cost is unknown, not zero.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Connection, Table, and_, case, func, select
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import Session

from shared.models import ProviderKey, Run, StepRun, Workflow

__all__ = ["GROUPS", "UsageRow", "usage_report"]

STEPS = cast(Table, StepRun.__table__)  # type: ignore[attr-defined]
RUNS = cast(Table, Run.__table__)  # type: ignore[attr-defined]
WORKFLOWS = cast(Table, Workflow.__table__)  # type: ignore[attr-defined]
KEYS = cast(Table, ProviderKey.__table__)  # type: ignore[attr-defined]

GROUPS = ("day", "provider", "model", "agent", "workflow", "key")


@dataclass(frozen=True, slots=True)
class UsageRow:
    group: str  # the day (YYYY-MM-DD), provider, "provider/model", agent, workflow or key
    steps: int
    input_tokens: int
    output_tokens: int
    cached_tokens: int
    cost_nanos: int
    unpriced_steps: int


def _dialect_name(db: Session | Connection) -> str:
    return db.dialect.name if isinstance(db, Connection) else db.get_bind().dialect.name


def _day(db: Session | Connection) -> ColumnElement[Any]:
    if _dialect_name(db) == "postgresql":
        return func.to_char(func.timezone("UTC", STEPS.c.finished_at), "YYYY-MM-DD")
    return func.substr(func.datetime(STEPS.c.finished_at), 1, 10)


def _group_column(db: Session | Connection, group_by: str) -> ColumnElement[Any]:
    if group_by == "day":
        return _day(db)
    if group_by == "provider":
        return STEPS.c.provider
    if group_by == "model":
        return STEPS.c.provider + "/" + STEPS.c.model
    if group_by == "agent":
        return STEPS.c.agent_name
    if group_by == "workflow":
        return func.coalesce(WORKFLOWS.c.name, RUNS.c.workflow_id)
    if group_by == "key":
        return func.coalesce(KEYS.c.name, STEPS.c.key_id)
    raise ValueError(f"group_by must be one of {', '.join(GROUPS)}")


def usage_report(
    db: Session | Connection, *, start: datetime, end: datetime, group_by: str
) -> list[UsageRow]:
    """Steps that finished in [start, end), grouped; ordered by day, or by cost."""
    group = _group_column(db, group_by).label("grp")
    used_tokens = func.coalesce(STEPS.c.input_tokens, 0) + func.coalesce(STEPS.c.output_tokens, 0)
    query = (
        select(
            group,
            func.count(),
            func.coalesce(func.sum(STEPS.c.input_tokens), 0),
            func.coalesce(func.sum(STEPS.c.output_tokens), 0),
            func.coalesce(func.sum(STEPS.c.cached_tokens), 0),
            func.coalesce(func.sum(STEPS.c.cost_nanos), 0),
            func.coalesce(
                func.sum(case((and_(STEPS.c.cost_nanos.is_(None), used_tokens > 0), 1), else_=0)),
                0,
            ),
        )
        .select_from(
            STEPS.join(RUNS, RUNS.c.id == STEPS.c.run_id)
            .outerjoin(WORKFLOWS, WORKFLOWS.c.id == RUNS.c.workflow_id)
            .outerjoin(KEYS, KEYS.c.id == STEPS.c.key_id)
        )
        .where(STEPS.c.finished_at >= start, STEPS.c.finished_at < end)
        .group_by(group)
    )
    rows = [
        UsageRow(str(r[0]), int(r[1]), int(r[2]), int(r[3]), int(r[4]), int(r[5]), int(r[6]))
        for r in db.execute(query)
    ]
    if group_by == "day":
        return sorted(rows, key=lambda r: r.group)
    return sorted(rows, key=lambda r: (-r.cost_nanos, -r.input_tokens - r.output_tokens, r.group))
