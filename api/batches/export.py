"""A batch's results as JSONL or CSV: each item's input, then its run's outcome and each
step's output, tokens, cost and error.

Streamed a page of items at a time, each page read in its own short read transaction,
so a 10,000-item export neither holds the whole batch in memory nor keeps a SQLite
snapshot open while the client downloads.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, cast

from sqlalchemy import Table, func, select

from api.errors import NotFound
from api.workflows.service import current_version
from shared.automation_models import Batch, BatchItem
from shared.db import read_session
from shared.models import Run, StepRun, Workflow
from shared.pricing import NANOS_PER_USD

ITEMS = cast(Table, BatchItem.__table__)  # type: ignore[attr-defined]
RUNS = cast(Table, Run.__table__)  # type: ignore[attr-defined]
STEPS = cast(Table, StepRun.__table__)  # type: ignore[attr-defined]

PAGE = 500
RUN_COLUMNS = ("line", "run_id", "status", "error", "input_tokens", "output_tokens", "cost_usd")
STEP_FIELDS = ("output", "input_tokens", "output_tokens", "cost_usd", "error")
MEDIA_TYPES = {"jsonl": "application/x-ndjson", "csv": "text/csv; charset=utf-8"}


@dataclass(frozen=True, slots=True)
class _Layout:
    batch_id: str
    input_columns: list[str]
    step_keys: list[str]


def _usd(nanos: int | None) -> str | None:
    """Exact decimal text: a CSV of costs must add up to the cent."""
    return None if nanos is None else format(Decimal(nanos) / NANOS_PER_USD, "f")


def layout(batch_id: str) -> _Layout:
    """The export's columns; 404 for an unknown batch (before any byte is streamed)."""
    with read_session() as session:
        batch = session.get(Batch, batch_id)
        if batch is None:
            raise NotFound(f"no batch with id '{batch_id}'")
        workflow = session.get(Workflow, batch.workflow_id)
        keys: list[str] = []
        if workflow is not None:
            keys = [s["id"] for s in current_version(session, workflow).definition["steps"]]
        # Steps of the runs (an earlier version of the workflow may have had others).
        ran = session.execute(
            select(STEPS.c.step_key, func.min(STEPS.c.position))
            .select_from(STEPS.join(RUNS, RUNS.c.id == STEPS.c.run_id))
            .where(RUNS.c.batch_id == batch_id)
            .group_by(STEPS.c.step_key)
            .order_by(func.min(STEPS.c.position))
        ).all()
        keys += [key for key, _ in ran if key not in keys]
        return _Layout(batch_id, list(batch.input_columns), keys)


def _page(batch_id: str, after: int) -> list[dict[str, Any]]:
    """Up to PAGE items after line `after`, each with its run and the run's steps."""
    with read_session() as session:
        items = session.execute(
            select(ITEMS.c.position, ITEMS.c.input, ITEMS.c.run_id, ITEMS.c.previous_run_ids)
            .where(ITEMS.c.batch_id == batch_id, ITEMS.c.position > after)
            .order_by(ITEMS.c.position)
            .limit(PAGE)
        ).all()
        run_ids = [item.run_id for item in items if item.run_id is not None]
        runs = {
            row.id: row for row in session.execute(select(RUNS).where(RUNS.c.id.in_(run_ids))).all()
        }
        steps: dict[str, dict[str, Any]] = {}
        for step in session.execute(select(STEPS).where(STEPS.c.run_id.in_(run_ids))).all():
            steps.setdefault(step.run_id, {})[step.step_key] = step
    page = []
    for item in items:
        run = runs.get(item.run_id) if item.run_id else None
        page.append(
            {
                "line": item.position,
                "input": item.input,
                "run_id": item.run_id,
                "previous_run_ids": item.previous_run_ids,
                "status": "waiting" if run is None else run.status,
                "error": None if run is None else run.error,
                "input_tokens": None if run is None else run.input_tokens,
                "output_tokens": None if run is None else run.output_tokens,
                "cost_usd": None if run is None else _usd(run.cost_nanos),
                "steps": {
                    key: {
                        "status": step.status,
                        "output": step.output,
                        "input_tokens": step.input_tokens,
                        "output_tokens": step.output_tokens,
                        "cost_usd": _usd(step.cost_nanos),
                        "error": step.error,
                    }
                    for key, step in steps.get(item.run_id or "", {}).items()
                },
            }
        )
    return page


def _pages(batch_id: str) -> Iterator[list[dict[str, Any]]]:
    after = 0
    while page := _page(batch_id, after):
        yield page
        after = page[-1]["line"]


def jsonl_lines(found: _Layout) -> Iterator[str]:
    for page in _pages(found.batch_id):
        yield "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in page)


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, dict | list | bool):
        return json.dumps(value, ensure_ascii=False)
    return value


def _input_header(name: str) -> str:
    # An input column named like a result column keeps its data under "input.<name>".
    return f"input.{name}" if name in RUN_COLUMNS else name


def csv_lines(found: _Layout) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(
        [
            RUN_COLUMNS[0],
            *(_input_header(name) for name in found.input_columns),
            *RUN_COLUMNS[1:],
            *(f"{key}.{name}" for key in found.step_keys for name in STEP_FIELDS),
        ]
    )
    for page in _pages(found.batch_id):
        for row in page:
            steps = row["steps"]
            writer.writerow(
                [
                    row["line"],
                    *(_cell(row["input"].get(name)) for name in found.input_columns),
                    *(_cell(row[name]) for name in RUN_COLUMNS[1:]),
                    *(
                        _cell(steps.get(key, {}).get(name))
                        for key in found.step_keys
                        for name in STEP_FIELDS
                    ),
                ]
            )
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
    if buffer.tell():
        yield buffer.getvalue()
