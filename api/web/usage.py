"""Usage & cost: a period, cost and tokens per day as charts, and tables by provider,
model, agent, workflow and key.

Every figure comes from the report `GET /api/v1/usage` answers with (`build_report`,
over the same `period`), so the page and the API cannot disagree.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from markupsafe import Markup

from api.errors import Unprocessable
from api.usage.router import GroupBy, UsageLine, UsageReport, build_report, period
from api.web.charts import bar_chart
from api.web.render import render, tokens, usd
from api.web.session import PageViewer
from shared.db import read_session

router = APIRouter(include_in_schema=False)

TABLES: tuple[tuple[GroupBy, str], ...] = (
    ("provider", "Provider"),
    ("model", "Model"),
    ("agent", "Agent"),
    ("workflow", "Workflow"),
    ("key", "Key"),
)
MAX_DAYS = 731  # one bar a day: two years is as many as a chart can show


def _day(text: str, name: str, errors: dict[str, str]) -> date | None:
    try:
        return date.fromisoformat(text) if text else None
    except ValueError:
        errors[name] = "not a date: use YYYY-MM-DD"
        return None


def _period(start: str, end: str, errors: dict[str, str]) -> tuple[datetime, datetime]:
    """The asked period, or the default one (last 30 days) next to what was wrong."""
    first_day, last_day = _day(start, "from", errors), _day(end, "to", errors)
    if errors:
        return period(None, None)
    try:
        first, after_last = period(first_day, last_day)
    except Unprocessable as exc:
        errors["from"] = exc.message
        return period(None, None)
    if (after_last - first).days > MAX_DAYS:
        errors["from"] = f"at most {MAX_DAYS} days at a time: pick a shorter period"
        return period(None, None)
    return first, after_last


def compact(value: float) -> str:
    """12k, 1.5M: token counts on a chart axis."""
    for size, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if value >= size:
            return f"{value / size:.3g}{suffix}"
    return f"{value:.3g}"


def _charts(days: UsageReport, first: datetime, after_last: datetime) -> tuple[Markup, Markup]:
    """Cost and tokens per day, a bar for every day of the period (zero when unused)."""
    by_day = {line.group: line for line in days.data}
    empty = UsageLine(
        group="",
        steps=0,
        input_tokens=0,
        output_tokens=0,
        cached_tokens=0,
        cost_usd=0.0,
        unpriced_steps=0,
    )
    labels = [
        (first.date() + timedelta(days=i)).isoformat() for i in range((after_last - first).days)
    ]
    lines = [(label, by_day.get(label, empty)) for label in labels]
    cost = bar_chart(
        [(label, (line.cost_usd,)) for label, line in lines],
        series=("cost",),
        title="Cost per day (USD)",
        value_text=usd,
    )
    used = bar_chart(
        [(label, (line.input_tokens, line.output_tokens)) for label, line in lines],
        series=("input", "output"),
        title="Tokens per day, input and output",
        value_text=lambda v: tokens(int(v)),
        axis_text=compact,
    )
    return cost, used


def _quick_links(today: date) -> list[tuple[str, date, date]]:
    return [
        ("This month", today.replace(day=1), today),
        ("Last 7 days", today - timedelta(days=6), today),
        ("Last 30 days", today - timedelta(days=29), today),
    ]


@router.get("/usage")
def usage_page(
    request: Request,
    who: PageViewer,
    start: Annotated[str, Query(alias="from", max_length=32)] = "",
    end: Annotated[str, Query(alias="to", max_length=32)] = "",
) -> Response:
    errors: dict[str, str] = {}
    first, after_last = _period(start.strip(), end.strip(), errors)
    with read_session() as session:
        days = build_report(session, first, after_last, "day")
        tables = [
            (title, build_report(session, first, after_last, group).data) for group, title in TABLES
        ]
    cost_chart, tokens_chart = _charts(days, first, after_last)
    last = (after_last - timedelta(days=1)).date()
    return render(
        request,
        "usage.html",
        who,
        first=first.date(),
        last=last,
        asked={"from": start, "to": end} if errors else {},
        errors=errors,
        total=days.total,
        days=days.data,
        tables=tables,
        cost_chart=cost_chart,
        tokens_chart=tokens_chart,
        quick_links=_quick_links(datetime.now(UTC).date()),
        status_code=422 if errors else 200,
    )
