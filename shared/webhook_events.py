"""What a webhook says about a run, a batch or a budget, read from SQL.

A payload holds ids, names, statuses, timestamps, token counts and costs: never a
prompt, an output or a run's input. Webhooks may point at third-party services, and
customer data leaves ownkey only through the API, to someone holding a token; a
receiver that needs a run's outputs fetches `GET /api/v1/runs/{id}` with its own token.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Connection, Table, func, select
from sqlmodel import Session

from shared.automation_models import Batch, BatchItem, BatchStatus, Budget, BudgetUsage
from shared.models import Run, Workflow, utcnow
from shared.pricing import nanos_to_usd

__all__ = [
    "BATCH_FINISHED",
    "BUDGET_SOFT_LIMIT",
    "RUN_FINISHED",
    "WebhookEvent",
    "batch_finished",
    "budget_soft_limit",
    "run_finished",
]

RUN_FINISHED = "run.finished"
BATCH_FINISHED = "batch.finished"
BUDGET_SOFT_LIMIT = "budget.soft_limit"

RUNS = cast(Table, Run.__table__)  # type: ignore[attr-defined]
WORKFLOWS = cast(Table, Workflow.__table__)  # type: ignore[attr-defined]
BATCHES = cast(Table, Batch.__table__)  # type: ignore[attr-defined]
ITEMS = cast(Table, BatchItem.__table__)  # type: ignore[attr-defined]
BUDGETS = cast(Table, Budget.__table__)  # type: ignore[attr-defined]
USAGE = cast(Table, BudgetUsage.__table__)  # type: ignore[attr-defined]

Db = Connection | Session


@dataclass(frozen=True, slots=True)
class WebhookEvent:
    """An event and who hears it: the subscriptions to any of `targets` created by
    `occurred_at`, each once per `subject_id`."""

    name: str
    subject_id: str
    occurred_at: datetime
    targets: tuple[tuple[str, str], ...]
    data: dict[str, Any]


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def run_finished(db: Db, run_id: str) -> WebhookEvent | None:
    """A closed run, heard by its workflow's webhooks; None while it is open."""
    run = db.execute(
        select(RUNS, WORKFLOWS.c.name.label("workflow_name"))
        .join(WORKFLOWS, WORKFLOWS.c.id == RUNS.c.workflow_id)
        .where(RUNS.c.id == run_id)
    ).first()
    if run is None or run.finished_at is None:
        return None
    data = {
        "run": {
            "id": run.id,
            "status": run.status,
            "workflow": {"id": run.workflow_id, "name": run.workflow_name},
            "batch_id": run.batch_id,
            "created_at": _iso(run.created_at),
            "started_at": _iso(run.started_at),
            "finished_at": _iso(run.finished_at),
            "input_tokens": run.input_tokens,
            "output_tokens": run.output_tokens,
            "cached_tokens": run.cached_tokens,
            "cost_usd": nanos_to_usd(run.cost_nanos),
            "cost_incomplete": run.cost_incomplete,
            "failed_step": run.failed_step,
            "error": run.error,
        }
    }
    return WebhookEvent(
        RUN_FINISHED, run.id, run.finished_at, (("workflow", run.workflow_id),), data
    )


def batch_finished(db: Db, batch_id: str) -> WebhookEvent | None:
    """A finished batch, heard by its own webhooks and by its workflow's (the only way
    to hear of the batches a schedule starts); None while it runs."""
    batch = db.execute(
        select(BATCHES, WORKFLOWS.c.name.label("workflow_name"))
        .join(WORKFLOWS, WORKFLOWS.c.id == BATCHES.c.workflow_id)
        .where(BATCHES.c.id == batch_id)
    ).first()
    if batch is None or batch.finished_at is None or batch.status == BatchStatus.running:
        return None
    by_status = db.execute(
        select(RUNS.c.status, func.count())
        .select_from(ITEMS.outerjoin(RUNS, RUNS.c.id == ITEMS.c.run_id))
        .where(ITEMS.c.batch_id == batch_id)
        .group_by(RUNS.c.status)
    ).all()
    counts: dict[str, int] = {"total": batch.total}
    for status, count in by_status:
        counts[status or "not_run"] = count
    # Every run the batch started, retried items' earlier runs included: what it cost.
    spent = db.execute(
        select(
            func.coalesce(func.sum(RUNS.c.input_tokens), 0),
            func.coalesce(func.sum(RUNS.c.output_tokens), 0),
            func.coalesce(func.sum(RUNS.c.cached_tokens), 0),
            func.coalesce(func.sum(RUNS.c.cost_nanos), 0),
            func.count().filter(RUNS.c.cost_incomplete.is_(True)),
        ).where(RUNS.c.batch_id == batch_id)
    ).one()
    data = {
        "batch": {
            "id": batch.id,
            "name": batch.name,
            "status": batch.status,
            "workflow": {"id": batch.workflow_id, "name": batch.workflow_name},
            "schedule_id": batch.schedule_id,
            "created_at": _iso(batch.created_at),
            "started_at": _iso(batch.started_at),
            "finished_at": _iso(batch.finished_at),
            "counts": counts,
            "input_tokens": int(spent[0]),
            "output_tokens": int(spent[1]),
            "cached_tokens": int(spent[2]),
            "cost_usd": nanos_to_usd(int(spent[3])),
            "cost_incomplete": bool(spent[4]),
        }
    }
    targets = (("batch", batch.id), ("workflow", batch.workflow_id))
    return WebhookEvent(BATCH_FINISHED, batch.id, batch.finished_at, targets, data)


def budget_soft_limit(
    db: Db,
    budget_id: str,
    *,
    spent_nanos: int,
    limit_nanos: int,
    usage_id: str | None = None,
) -> WebhookEvent | None:
    """A budget that reached its soft limit, once per window: the subject is the
    window's usage row (`usage_id`, or the budget's latest)."""
    budget = db.execute(select(BUDGETS).where(BUDGETS.c.id == budget_id)).first()
    if budget is None:
        return None
    usage_query = select(USAGE.c.id, USAGE.c.window_start, USAGE.c.soft_warned_at)
    if usage_id is None:
        usage_query = usage_query.where(USAGE.c.budget_id == budget_id)
    else:
        usage_query = usage_query.where(USAGE.c.id == usage_id)
    usage = db.execute(usage_query.order_by(USAGE.c.window_start.desc()).limit(1)).first()
    now = utcnow()
    subject = usage.id if usage is not None else f"{budget_id}:{now:%Y-%m}"
    occurred_at = (usage.soft_warned_at if usage is not None else None) or now
    data = {
        "budget": {
            "id": budget.id,
            "name": budget.name,
            "scope": budget.scope,
            "scope_id": budget.scope_id,
            "window": budget.window,
            "window_start": _iso(usage.window_start if usage is not None else None),
            "soft_limit_percent": budget.soft_limit_percent,
            "spent_usd": nanos_to_usd(spent_nanos),
            "limit_usd": nanos_to_usd(limit_nanos),
            "percent_used": round(100 * spent_nanos / limit_nanos, 2) if limit_nanos else None,
        }
    }
    return WebhookEvent(BUDGET_SOFT_LIMIT, subject, occurred_at, (("budget", budget_id),), data)
