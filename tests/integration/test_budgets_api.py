"""Budgets through the real API: admins manage them, viewers read them, bad input is a
422 naming the field; a budget counts its window's spend (from before it existed too)
and every step recorded after it."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from shared.budgets import CACHE_SECONDS
from tests.integration.test_end_to_end import wait_for_run
from tests.processes import FakeLLM, Stack, run_ownkey
from tests.web_session import make_user

pytestmark = pytest.mark.parametrize("stack", ["sqlite"], indirect=True)

# 1000 input and 1000 output tokens at $1 and $2 per million: $0.003 a step.
STEP_COST = 0.003


def tag() -> str:
    return uuid.uuid4().hex[:8]


def let_workers_see_budgets() -> None:
    """Workers re-read the list of budgets every CACHE_SECONDS; nothing to poll for."""
    time.sleep(CACHE_SECONDS + 0.5)


@pytest.fixture
def fixed_usage(fake_llm: FakeLLM) -> Iterator[None]:
    fake_llm.configure(input_tokens=1000, output_tokens=1000)
    yield
    fake_llm.configure(input_tokens=None, output_tokens=None)


def one_step_workflow(api: httpx.Client, fake_llm: FakeLLM, name: str) -> dict[str, Any]:
    """A key at fake-llm, a priced model, an agent and a one-step workflow, all `name`."""
    model = f"model-{name}"
    api.put(
        f"/prices/openai/{model}", json={"input_per_mtok": "1", "output_per_mtok": "2"}
    ).raise_for_status()
    key = api.post(
        "/keys",
        json={
            "provider": "openai",
            "name": name,
            "api_key": "sk-budget-0000",
            "base_url": f"{fake_llm.url}/v1",
        },
    ).json()
    api.post("/agents", json={"name": name, "key_id": key["id"], "model": model}).raise_for_status()
    workflow = api.post(
        "/workflows",
        json={"name": name, "steps": [{"id": "only", "agent": name, "prompt": "hi {{ input.n }}"}]},
    ).json()
    return {"key": key, "workflow": workflow, "model": model}


def count_budgets(api: httpx.Client) -> int:
    body = api.get("/budgets").json()
    assert body["count"] == len(body["data"])
    return int(body["count"])


def test_admins_manage_budgets_and_viewers_only_read_them(stack: Stack, fake_llm: FakeLLM) -> None:
    name = f"b-{tag()}"
    with stack.client() as api:
        made = one_step_workflow(api, fake_llm, name)
        created = api.post(
            "/budgets",
            json={
                "name": name,
                "scope": "workflow",
                "scope_id": name,  # a name works, the id is stored
                "limit_usd": "12.5",
                "soft_limit_percent": 80,
            },
        )
        assert created.status_code == 201, created.text
        budget = created.json()
        now = datetime.now(UTC)
        assert budget["scope_id"] == made["workflow"]["id"] and budget["scope_name"] == name
        amounts = (budget["limit_usd"], budget["spent_usd"], budget["remaining_usd"])
        assert amounts == (12.5, 0, 12.5)
        assert budget["window"] == "month" and budget["window_start"] is None
        assert budget["period_start"] == f"{now:%Y-%m}-01T00:00:00Z"
        assert budget["active"] and not budget["exceeded"]
        duplicate = api.post("/budgets", json={"name": name, "scope": "instance", "limit_usd": 1})
        assert duplicate.status_code == 409 and name in duplicate.json()["detail"]

        viewer_token = (
            run_ownkey(
                ["token", "create", "--name", "v", "--user", make_user(stack, "viewer")],
                env=stack.env,
            )
            .stdout.strip()
            .splitlines()[-1]
        )
        with stack.client(viewer_token) as viewer:
            assert viewer.get(f"/budgets/{name}").json()["id"] == budget["id"]
            assert any(b["id"] == budget["id"] for b in viewer.get("/budgets").json()["data"])
            refused = [
                viewer.post("/budgets", json={"name": "v", "scope": "instance", "limit_usd": 1}),
                viewer.patch(f"/budgets/{budget['id']}", json={"limit_usd": 1}),
                viewer.delete(f"/budgets/{budget['id']}"),
            ]
            assert [r.status_code for r in refused] == [403, 403, 403]

        changed = api.patch(
            f"/budgets/{budget['id']}",
            json={"limit_usd": 20, "soft_limit_percent": None, "name": f"{name}-x"},
        )
        assert changed.status_code == 200, changed.text
        assert changed.json()["limit_usd"] == 20 and changed.json()["soft_limit_percent"] is None
        moved = api.patch(
            f"/budgets/{name}-x",
            json={
                "window": "custom",
                "window_start": "2026-01-01T01:00:00+01:00",
                "window_end": "2026-02-01",
            },
        ).json()
        assert (moved["window_start"], moved["window_end"]) == (
            "2026-01-01T00:00:00Z",
            "2026-02-01T00:00:00Z",
        )
        assert moved["period_start"] == moved["window_start"] and not moved["active"]
        no_scope_change = api.patch(f"/budgets/{name}-x", json={"scope": "instance"})
        assert no_scope_change.status_code == 422
        assert "scope and scope_id cannot be changed" in str(no_scope_change.json()["detail"])

        assert api.delete(f"/budgets/{budget['id']}").status_code == 204
        assert api.get(f"/budgets/{budget['id']}").status_code == 404
        actions = [
            e["action"]
            for e in api.get("/audit", params={"limit": 200}).json()["data"]
            if e["target_id"] == budget["id"]
        ]
        assert sorted(actions) == [
            "budget.created",
            "budget.deleted",
            "budget.updated",
            "budget.updated",
        ]


BAD_BUDGETS: list[tuple[dict[str, Any], str]] = [
    ({"scope": "instance"}, "limit_usd"),
    ({"scope": "instance", "limit_usd": 0}, "limit_usd"),
    ({"scope": "instance", "limit_usd": -5}, "limit_usd"),
    ({"scope": "instance", "limit_usd": "0.0000000001"}, "limit_usd"),
    ({"scope": "instance", "limit_usd": "NaN"}, "limit_usd"),
    ({"scope": "instance", "limit_usd": 10**10}, "limit_usd"),
    ({"scope": "team", "limit_usd": 1}, "scope"),
    ({"scope": "instance", "scope_id": "x", "limit_usd": 1}, "scope_id"),
    ({"scope": "key", "limit_usd": 1}, "scope_id"),
    ({"scope": "workflow", "scope_id": "no-such-workflow", "limit_usd": 1}, "scope_id"),
    ({"scope": "instance", "limit_usd": 1, "window": "week"}, "window"),
    ({"scope": "instance", "limit_usd": 1, "window_start": "2026-01-01"}, "window_start"),
    ({"scope": "instance", "limit_usd": 1, "window": "custom"}, "window_end"),
    (
        {
            "scope": "instance",
            "limit_usd": 1,
            "window": "custom",
            "window_start": "2026-02-01",
            "window_end": "2026-01-01",
        },
        "window_end",
    ),
    ({"scope": "instance", "limit_usd": 1, "window_end": "not a time"}, "window_end"),
    ({"scope": "instance", "limit_usd": 1, "soft_limit_percent": 0}, "soft_limit_percent"),
    ({"scope": "instance", "limit_usd": 1, "soft_limit_percent": 101}, "soft_limit_percent"),
    ({"scope": "instance", "limit_usd": 1, "name": " "}, "name"),
    ({"scope": "instance", "limit_usd": 1, "spent_usd": 0}, "spent_usd"),
]


@pytest.mark.parametrize(("body", "field"), BAD_BUDGETS)
def test_a_bad_budget_is_a_422_naming_the_field_and_stores_nothing(
    stack: Stack, body: dict[str, Any], field: str
) -> None:
    with stack.client() as api:
        before = count_budgets(api)
        response = api.post("/budgets", json={"name": f"bad-{tag()}", **body})
        assert response.status_code == 422, response.text
        assert field in {str(part) for e in response.json()["detail"] for part in e["loc"]}
        assert count_budgets(api) == before


def test_a_bad_change_is_a_422_naming_the_field_and_changes_nothing(stack: Stack) -> None:
    name = f"patch-{tag()}"
    with stack.client() as api:
        budget = api.post(
            "/budgets", json={"name": name, "scope": "instance", "limit_usd": 10**6}
        ).json()
        try:
            for body, field in [
                ({"limit_usd": None}, "limit_usd"),
                ({"limit_usd": "abc"}, "limit_usd"),
                ({"window": "custom", "window_start": "2026-01-01"}, "window_end"),
                ({"window_end": "2026-01-01"}, "window_end"),
                ({"soft_limit_percent": 500}, "soft_limit_percent"),
            ]:
                response = api.patch(f"/budgets/{name}", json=body)
                assert response.status_code == 422, (body, response.text)
                locs = {str(part) for e in response.json()["detail"] for part in e["loc"]}
                assert field in locs, (body, response.text)
            assert api.get(f"/budgets/{name}").json() == budget
        finally:
            api.delete(f"/budgets/{name}")


def test_a_budget_counts_its_windows_spend_before_and_after_it_was_made(
    stack: Stack, fake_llm: FakeLLM, fixed_usage: None
) -> None:
    name = f"spend-{tag()}"
    with stack.client() as api:
        made = one_step_workflow(api, fake_llm, name)
        first = api.post("/runs", json={"workflow": name, "input": {"n": 1}}).json()
        assert wait_for_run(api, first["id"])["cost_usd"] == pytest.approx(STEP_COST, abs=1e-12)
        budget = api.post(
            "/budgets",
            json={"name": name, "scope": "key", "scope_id": made["key"]["id"], "limit_usd": 1},
        ).json()
        assert budget["spent_usd"] == pytest.approx(STEP_COST, abs=1e-12)  # this month's run
        assert budget["remaining_usd"] == pytest.approx(1 - STEP_COST, abs=1e-12)
        let_workers_see_budgets()
        second = api.post("/runs", json={"workflow": name, "input": {"n": 2}}).json()
        assert wait_for_run(api, second["id"])["status"] == "succeeded"
        after = api.get(f"/budgets/{budget['id']}").json()
        assert after["spent_usd"] == pytest.approx(2 * STEP_COST, abs=1e-12)
        assert after["remaining_usd"] == pytest.approx(1 - 2 * STEP_COST, abs=1e-12)
        # A lower limit than the spend: the next run ends budget_exceeded without a call.
        lowered = api.patch(f"/budgets/{budget['id']}", json={"limit_usd": "0.005"}).json()
        assert lowered["exceeded"] and lowered["remaining_usd"] == 0
        let_workers_see_budgets()
        fake_llm.reset()
        third = api.post("/runs", json={"workflow": name, "input": {"n": 3}}).json()
        run = wait_for_budget_exceeded(api, third["id"])
        assert run["error"] == (
            f"step 'only' failed: budget '{name}' (key, $0.005 per month) is spent: "
            "$0.0060 of $0.005"
        )
        assert run["steps"][0]["status"] == "failed"
        assert run["steps"][0]["attempt_log"][-1]["kind"] == "BudgetExceeded"
        assert fake_llm.calls() == []
        listed = api.get("/runs", params={"status": "budget_exceeded", "workflow": name}).json()
        assert [r["id"] for r in listed["data"]] == [third["id"]]
        api.delete(f"/budgets/{budget['id']}").raise_for_status()


def wait_for_budget_exceeded(api: httpx.Client, run_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        run = api.get(f"/runs/{run_id}").json()
        if run["finished_at"]:
            assert run["status"] == "budget_exceeded", run
            return dict(run)
        time.sleep(0.1)
    raise AssertionError(f"run {run_id} did not finish: {run}")
