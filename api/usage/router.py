from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel
from sqlmodel import Session

from api.deps import ReadSessionDep, Viewer
from api.errors import Unprocessable
from shared.pricing import nanos_to_usd
from shared.usage import UsageRow, usage_report

router = APIRouter(prefix="/usage", tags=["usage"])

GroupBy = Literal["day", "provider", "model", "agent", "workflow", "key"]
DEFAULT_DAYS = 30


class UsageLine(BaseModel):
    group: str
    steps: int
    input_tokens: int
    output_tokens: int
    cached_tokens: int
    cost_usd: float
    unpriced_steps: int


class UsageReport(BaseModel):
    start: datetime
    end: datetime
    group_by: GroupBy
    data: list[UsageLine]
    total: UsageLine


def _line(row: UsageRow) -> UsageLine:
    return UsageLine(
        group=row.group,
        steps=row.steps,
        input_tokens=row.input_tokens,
        output_tokens=row.output_tokens,
        cached_tokens=row.cached_tokens,
        cost_usd=nanos_to_usd(row.cost_nanos) or 0.0,
        unpriced_steps=row.unpriced_steps,
    )


def _total(rows: list[UsageRow]) -> UsageRow:
    return UsageRow(
        group="total",
        steps=sum(r.steps for r in rows),
        input_tokens=sum(r.input_tokens for r in rows),
        output_tokens=sum(r.output_tokens for r in rows),
        cached_tokens=sum(r.cached_tokens for r in rows),
        cost_nanos=sum(r.cost_nanos for r in rows),
        unpriced_steps=sum(r.unpriced_steps for r in rows),
    )


def period(start: date | None, end: date | None) -> tuple[datetime, datetime]:
    """[start 00:00 UTC, the day after `end` 00:00 UTC); default the last 30 days."""
    today = datetime.now(UTC).date()
    last = end or today
    first = start or last - timedelta(days=DEFAULT_DAYS - 1)
    if first > last:
        raise Unprocessable(
            [{"loc": ["query", "from"], "msg": "'from' is after 'to'", "type": "value_error"}]
        )
    return (
        datetime.combine(first, time.min, UTC),
        datetime.combine(last + timedelta(days=1), time.min, UTC),
    )


@router.get("", response_model=UsageReport)
def usage(
    session: ReadSessionDep,
    _: Viewer,
    start: Annotated[date | None, Query(alias="from", description="first day (UTC)")] = None,
    end: Annotated[date | None, Query(alias="to", description="last day, included")] = None,
    group_by: GroupBy = "day",
) -> UsageReport:
    """Tokens and cost of the steps that finished in the period, grouped. The cost is
    the exact sum of the steps' costs; `unpriced_steps` used a model with no price."""
    first, after_last = period(start, end)
    return build_report(session, first, after_last, group_by)


def build_report(
    session: Session, first: datetime, after_last: datetime, group_by: GroupBy
) -> UsageReport:
    """The report for [first, after_last): the API's answer, and the web UI's figures."""
    rows = usage_report(session, start=first, end=after_last, group_by=group_by)
    return UsageReport(
        start=first,
        end=after_last,
        group_by=group_by,
        data=[_line(r) for r in rows],
        total=_line(_total(rows)),
    )
