"""The usage page against the real API process: after a real run, the same totals as
GET /api/v1/usage, a bar for every day of the period, and the period picker's errors."""

from __future__ import annotations

import html
import re
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest

from api.web.render import tokens, usd
from tests.processes import FakeLLM, Stack
from tests.web_session import make_user, sign_in

pytestmark = pytest.mark.parametrize("stack", ["sqlite"], indirect=True)


def tag() -> str:
    return uuid.uuid4().hex[:8]


def wait_for_run(api: httpx.Client, run_id: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = api.get(f"/runs/{run_id}").json()
        if run["status"] in ("succeeded", "failed", "cancelled") and run["finished_at"]:
            return dict(run)
        time.sleep(0.1)
    raise AssertionError(f"run {run_id} did not finish: {run}")


def stat(page: str, testid: str) -> tuple[str, str]:
    """(data-value, shown text) of one of the totals."""
    found = re.search(rf'data-testid="{testid}" data-value="([^"]*)">([^<]*)<', page)
    assert found, f"no {testid}"
    return found.group(1), html.unescape(found.group(2))


def bars(page: str, chart: str) -> dict[str, str]:
    """{day: value} of every bar of one chart."""
    found = re.search(rf'data-testid="{chart}">(.*?)</svg>', page, re.S)
    assert found, f"no {chart}"
    return dict(re.findall(r'<g class="bar" data-label="([^"]+)" data-value="([^"]+)">', found[1]))


def days(first: date, last: date) -> list[str]:
    return [(first + timedelta(days=i)).isoformat() for i in range((last - first).days + 1)]


@pytest.fixture
def run_with_usage(stack: Stack, fake_llm: FakeLLM) -> dict[str, Any]:
    """One finished run: two steps of 1000 input (200 cached) and 50 output tokens each,
    on a model with a price set for the test."""
    t = tag()
    model = f"web-usage-{t}"
    fake_llm.configure(input_tokens=1000, output_tokens=50, cached_tokens=200)
    try:
        with stack.client() as api:
            price = {"input_per_mtok": "2", "output_per_mtok": "8", "cached_input_per_mtok": "0.5"}
            assert api.put(f"/prices/openai/{model}", json=price).status_code == 200
            key = api.post(
                "/keys",
                json={
                    "provider": "openai",
                    "name": f"usage-{t}",
                    "api_key": "sk-web-usage-1234",
                    "base_url": f"{fake_llm.url}/v1",
                },
            ).json()
            agent = {"name": f"usage-{t}", "key_id": key["id"], "model": model}
            assert api.post("/agents", json=agent).status_code == 201
            workflow = f"""
name: usage-{t}
steps:
  - id: first
    agent: usage-{t}
    prompt: "Say {{{{ input.word }}}}"
  - id: second
    agent: usage-{t}
    depends_on: [first]
    prompt: "Repeat {{{{ steps.first.output }}}}"
"""
            r = api.post(
                "/workflows", content=workflow, headers={"Content-Type": "application/yaml"}
            )
            assert r.status_code == 201, r.text
            r = api.post("/runs", json={"workflow": f"usage-{t}", "input": {"word": "hi"}})
            assert r.status_code == 202, r.text
            run = wait_for_run(api, r.json()["id"])
    finally:
        fake_llm.configure(input_tokens=None, output_tokens=None, cached_tokens=0)
    assert run["status"] == "succeeded", run
    return {"run": run, "workflow": f"usage-{t}", "key": f"usage-{t}", "model": model}


def test_the_usage_page_shows_the_apis_figures_after_a_run(
    stack: Stack, run_with_usage: dict[str, Any]
) -> None:
    # (800 uncached x $2 + 200 cached x $0.5 + 50 output x $8) per million, two steps.
    run_cost = 2 * (800 * 2 + 200 * Decimal("0.5") + 50 * 8) / Decimal(1_000_000)
    client = sign_in(stack, make_user(stack, "viewer"))
    with stack.client() as api:
        report = api.get("/usage").json()
        by_day = api.get("/usage", params={"group_by": "day"}).json()
        by_workflow = api.get("/usage", params={"group_by": "workflow"}).json()
    page = client.get("/usage")
    assert page.status_code == 200
    text = page.text

    total = report["total"]
    assert total["cost_usd"] >= float(run_cost) > 0
    assert stat(text, "total-cost") == (repr(total["cost_usd"]), usd(total["cost_usd"]))
    for testid, field in [
        ("total-input-tokens", "input_tokens"),
        ("total-output-tokens", "output_tokens"),
        ("total-cached-tokens", "cached_tokens"),
        ("total-steps", "steps"),
    ]:
        assert stat(text, testid) == (str(total[field]), tokens(total[field]))

    # A bar for each of the last 30 days; the run's day (and every day the API reports)
    # has the API's figures, the others are zero.
    today = datetime.now(UTC).date()
    run_day = run_with_usage["run"]["finished_at"][:10]
    expected_days = days(today - timedelta(days=29), today)
    cost_bars, token_bars = bars(text, "cost-chart"), bars(text, "tokens-chart")
    assert list(cost_bars) == expected_days == list(token_bars)
    reported = {line["group"]: line for line in by_day["data"]}
    assert run_day in reported and float(cost_bars[run_day]) >= float(run_cost)
    for day in expected_days:
        line = reported.get(day)
        assert float(cost_bars[day]) == (line["cost_usd"] if line else 0)
        assert int(token_bars[day]) == (line["input_tokens"] + line["output_tokens"] if line else 0)

    # The by-workflow table has the run's workflow with the API's cost for it.
    line = next(x for x in by_workflow["data"] if x["group"] == run_with_usage["workflow"])
    assert line["cost_usd"] == float(run_cost) and line["steps"] == 2
    table = re.search(r'data-testid="usage-table-workflow">(.*?)</table>', text, re.S)
    assert table
    found = re.search(
        rf'<tr data-group="{run_with_usage["workflow"]}">.*?data-value="([^"]+)">([^<]+)',
        table[1],
        re.S,
    )
    assert found and float(found[1]) == line["cost_usd"]
    assert found[2].strip() == usd(line["cost_usd"])

    # Settings → API keys shows the month's cost per key, the same as the API's.
    keys_page = client.get("/settings/keys").text
    key_row = re.search(
        rf'data-key-name="{run_with_usage["key"]}".*?data-testid="key-cost">([^<]+)',
        keys_page,
        re.S,
    )
    assert key_row and key_row[1].strip() == usd(float(run_cost))


def test_the_period_picker_shows_every_day_and_refuses_bad_periods(stack: Stack) -> None:
    client = sign_in(stack, make_user(stack, "viewer"))
    with stack.client() as api:
        report = api.get("/usage", params={"from": "2020-02-27", "to": "2020-03-02"}).json()
    page = client.get("/usage", params={"from": "2020-02-27", "to": "2020-03-02"})
    assert page.status_code == 200
    leap = ["2020-02-27", "2020-02-28", "2020-02-29", "2020-03-01", "2020-03-02"]
    assert bars(page.text, "cost-chart") == dict.fromkeys(leap, "0.0")
    assert bars(page.text, "tokens-chart") == dict.fromkeys(leap, "0")
    assert report["total"]["cost_usd"] == 0
    assert stat(page.text, "total-cost") == ("0.0", "$0")
    assert "from 2020-02-27 to 2020-03-02" in page.text

    today = datetime.now(UTC).date()
    month = f'href="/usage?from={today.replace(day=1)}&amp;to={today}"'
    week = f'href="/usage?from={today - timedelta(days=6)}&amp;to={today}"'
    assert month in page.text and week in page.text

    for params, field, message in [
        ({"from": "2020-03-02", "to": "2020-02-27"}, "from", "'from' is after 'to'"),
        ({"from": "yesterday"}, "from", "not a date: use YYYY-MM-DD"),
        ({"to": "2020-13-01"}, "to", "not a date: use YYYY-MM-DD"),
        ({"from": "2000-01-01", "to": "2020-01-01"}, "from", "at most 731 days"),
    ]:
        refused = client.get("/usage", params=params)
        assert refused.status_code == 422, params
        error = re.search(rf'id="e-{field}" role="alert">([^<]+)<', refused.text)
        assert error and message in html.unescape(error[1]), (params, refused.text[:2000])
        # What was typed stays in the field; the page falls back to the last 30 days.
        assert f'value="{html.escape(params[field])}"' in refused.text
        assert len(bars(refused.text, "cost-chart")) == 30

    with httpx.Client(base_url=stack.api_url, follow_redirects=False) as anonymous:
        redirect = anonymous.get("/usage")
    assert redirect.status_code == 303 and redirect.headers["location"] == "/login?next=/usage"
