"""Schedules through the real API: create, read with the next fire times, change, pause,
resume, delete; bad input is a 422 naming the field and creates nothing; viewers read,
members change, and the audit log says who did what."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from tests.processes import Stack, run_ownkey
from tests.web_session import make_user

pytestmark = pytest.mark.parametrize("stack", ["sqlite"], indirect=True)


def tag() -> str:
    return uuid.uuid4().hex[:8]


@pytest.fixture(scope="module")
def workflow(stack: Stack) -> str:
    """A workflow to schedule (nothing runs: no beat in these tests)."""
    t = tag()
    with stack.client() as api:
        key = api.post(
            "/keys",
            json={
                "provider": "openai",
                "name": f"sched-api-{t}",
                "api_key": f"sk-sched-{t}",
                "base_url": "http://127.0.0.1:9/v1",
            },
        )
        assert key.status_code == 201, key.text
        agent = api.post(
            "/agents", json={"name": f"sched-api-{t}", "key_id": key.json()["id"], "model": "m"}
        )
        assert agent.status_code == 201, agent.text
        steps = [{"id": "a", "agent": f"sched-api-{t}", "prompt": "Hi {{ input.x }}"}]
        created = api.post("/workflows", json={"name": f"sched-api-{t}", "steps": steps})
        assert created.status_code == 201, created.text
    return str(created.json()["name"])


def token_for(stack: Stack, role: str) -> tuple[str, str]:
    username = make_user(stack, role)
    done = run_ownkey(["token", "create", "--name", "t", "--user", username], env=stack.env)
    assert done.returncode == 0, done.stderr
    return username, done.stdout.strip().splitlines()[-1]


def parse(value: str) -> datetime:
    return datetime.fromisoformat(value)


def test_a_schedule_lifecycle_with_its_next_fire_times(stack: Stack, workflow: str) -> None:
    api = stack.client()
    name = f"nightly-{tag()}"
    created = api.post(
        "/schedules",
        json={
            "name": name,
            "workflow": workflow,
            "cron": "30 2 * * *",
            "timezone": "Europe/Berlin",
            "input": {"x": "night"},
        },
    )
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["enabled"] and body["misfire_policy"] == "skip" and body["dataset"] is None
    assert body["workflow"] == workflow and body["input"] == {"x": "night"}
    times = [parse(t) for t in body["next_fire_times"]]
    berlin = ZoneInfo("Europe/Berlin")
    assert len(times) == 5 and times == sorted(times) and len(set(times)) == 5
    # Shown in the schedule's zone; each one a different night at 02:30 Berlin time
    # (or 03:00 on the night the clocks go forward).
    assert all(t.astimezone(berlin).strftime("%H:%M") in ("02:30", "03:00") for t in times)
    assert all(t.utcoffset() == t.astimezone(berlin).utcoffset() for t in times)
    assert len({t.astimezone(berlin).date() for t in times}) == 5
    assert parse(body["next_fire_at"]) == times[0] > datetime.now(berlin)
    assert body["recent_fires"] == []

    by_name = api.get(f"/schedules/{name}")
    assert by_name.status_code == 200 and by_name.json()["id"] == body["id"]
    listed = api.get("/schedules").json()
    assert listed["count"] == len(listed["data"])
    summary = next(s for s in listed["data"] if s["id"] == body["id"])
    assert summary["dataset_items"] is None and "dataset" not in summary

    # Changing the input leaves the timing alone; a new cron moves the next fire time.
    changed = api.patch(f"/schedules/{body['id']}", json={"input": {"x": "day"}}).json()
    assert changed["input"] == {"x": "day"} and changed["next_fire_at"] == body["next_fire_at"]
    hourly = api.patch(
        f"/schedules/{body['id']}", json={"cron": "15 * * * *", "timezone": "UTC"}
    ).json()
    first = parse(hourly["next_fire_at"])
    assert first.minute == 15 and first - datetime.now(first.tzinfo) <= timedelta(hours=1)
    assert [parse(t) for t in hourly["next_fire_times"]] == [
        first + timedelta(hours=h) for h in range(5)
    ]
    # Switching to a dataset drops the input.
    batch = api.patch(
        f"/schedules/{body['id']}", json={"dataset": [{"x": 1}, {"x": 2}], "max_in_flight": 1}
    ).json()
    assert batch["input"] is None and batch["dataset_items"] == 2 and batch["max_in_flight"] == 1

    paused = api.post(f"/schedules/{body['id']}/pause").json()
    assert not paused["enabled"] and paused["next_fire_at"] is None
    assert paused["next_fire_times"] == []
    resumed = api.post(f"/schedules/{body['id']}/resume").json()
    assert resumed["enabled"] and resumed["next_fire_at"] == hourly["next_fire_at"]
    assert api.get(f"/schedules/{body['id']}/fires").json() == {"data": [], "count": 0}

    assert api.delete(f"/schedules/{body['id']}").status_code == 204
    assert api.get(f"/schedules/{body['id']}").status_code == 404
    assert api.delete(f"/schedules/{body['id']}").status_code == 404


def test_a_schedule_created_paused_has_no_fire_time_and_names_are_unique(
    stack: Stack, workflow: str
) -> None:
    api = stack.client()
    body = {"workflow": workflow, "cron": "@daily", "input": {"x": 1}, "enabled": False}
    first = api.post("/schedules", json=body)
    assert first.status_code == 201, first.text
    assert first.json()["next_fire_at"] is None and first.json()["name"].startswith(workflow)
    assert first.json()["cron"] == "@daily"
    taken = api.post("/schedules", json=body | {"name": first.json()["name"]})
    assert taken.status_code == 409 and "already exists" in taken.json()["detail"]
    assert api.delete(f"/schedules/{first.json()['id']}").status_code == 204


BAD_CREATES: dict[str, tuple[dict[str, Any], str, str]] = {
    # case: (fields over a good body, the field named in `loc`, words in the message)
    "cron": ({"cron": "61 * * * *"}, "cron", "out of range"),
    "cron fields": ({"cron": "every day"}, "cron", "5 fields"),
    "cron never": ({"cron": "0 0 30 2 *"}, "cron", "never fires"),
    "timezone": ({"timezone": "Mars/Olympus"}, "timezone", "unknown time zone"),
    "workflow": ({"workflow": "no-such-workflow"}, "workflow", "no-such-workflow"),
    "both": ({"dataset": [{"x": 1}]}, "dataset", "not both"),
    "neither": ({"input": None}, "input", "dataset"),
    "empty dataset": ({"input": None, "dataset": []}, "dataset", "at least 1"),
    "dataset item": ({"input": None, "dataset": [{"x": 1}, 2]}, "dataset", "dictionary"),
    "policy": ({"misfire_policy": "sometimes"}, "misfire_policy", "catch_up"),
    "nul": ({"input": {"x": "a\x00b"}}, "input", "NUL"),
    "blank name": ({"name": "  "}, "name", "blank"),
    "max_in_flight": ({"max_in_flight": 0}, "max_in_flight", "greater than"),
    "unknown field": ({"every": "day"}, "every", "not permitted"),
    # The prompts read input.x: an input (or dataset item) without it would fail every fire.
    "input lacks a prompt field": ({"input": {"y": 1}}, "input", "'x'"),
    "dataset item lacks a prompt field": (
        {"input": None, "dataset": [{"x": 1}, {"y": 2}]},
        "dataset",
        "item 2: missing 'x'",
    ),
}


def said(response: httpx.Response) -> tuple[set[str], str]:
    errors = response.json()["detail"]
    return {str(e["loc"][1]) for e in errors}, " ".join(e["msg"] for e in errors)


@pytest.mark.parametrize("case", sorted(BAD_CREATES))
def test_bad_input_is_a_422_naming_the_field_and_creates_nothing(
    stack: Stack, workflow: str, case: str
) -> None:
    api = stack.client()
    before = api.get("/schedules").json()["count"]
    fields, field, words = BAD_CREATES[case]
    body = {"workflow": workflow, "cron": "0 * * * *", "input": {"x": 1}} | fields
    response = api.post("/schedules", json={k: v for k, v in body.items() if v is not None})
    assert response.status_code == 422, response.text
    locs, message = said(response)
    assert field in locs and words in message, response.text
    assert api.get("/schedules").json()["count"] == before


def test_a_bad_change_is_a_422_naming_the_field_and_changes_nothing(
    stack: Stack, workflow: str
) -> None:
    api = stack.client()
    created = api.post(
        "/schedules", json={"workflow": workflow, "cron": "0 * * * *", "input": {"x": 1}}
    ).json()
    url = f"/schedules/{created['id']}"
    for body, field in [
        ({"cron": "* * *"}, "cron"),
        ({"cron": None}, "cron"),
        ({"timezone": "Nowhere/Land", "cron": "0 1 * * *"}, "timezone"),
        ({"workflow": "gone-workflow", "cron": "0 1 * * *"}, "workflow"),
        ({"input": {"x": 2}, "dataset": [{"x": 3}]}, "dataset"),
        ({"input": None}, "input"),
    ]:
        response = api.patch(url, json=body)
        assert response.status_code == 422, (body, response.text)
        assert field in said(response)[0], (body, response.text)
    after = api.get(url).json()
    assert {k: after[k] for k in created if k != "recent_fires"} == {
        k: created[k] for k in created if k != "recent_fires"
    }
    assert api.delete(url).status_code == 204


def test_viewers_read_members_change_and_the_audit_log_says_who(
    stack: Stack, workflow: str
) -> None:
    _, viewer_token = token_for(stack, "viewer")
    member_name, member_token = token_for(stack, "member")
    viewer, member = stack.client(viewer_token), stack.client(member_token)
    body = {"workflow": workflow, "cron": "0 6 * * 1", "input": {"x": "monday"}}
    assert viewer.post("/schedules", json=body).status_code == 403
    created = member.post("/schedules", json=body)
    assert created.status_code == 201, created.text
    url = f"/schedules/{created.json()['id']}"
    assert viewer.get(url).status_code == 200 and viewer.get("/schedules").status_code == 200
    assert viewer.get(f"{url}/fires").status_code == 200
    refused = [
        viewer.patch(url, json={"cron": "0 7 * * 1"}),
        viewer.post(f"{url}/pause"),
        viewer.post(f"{url}/resume"),
        viewer.delete(url),
    ]
    assert [r.status_code for r in refused] == [403] * 4
    assert member.patch(url, json={"misfire_policy": "catch_up"}).status_code == 200
    assert member.post(f"{url}/pause").status_code == 200
    assert member.post(f"{url}/resume").status_code == 200
    assert member.delete(url).status_code == 204

    events = stack.client().get("/audit", params={"user": member_name}).json()["data"]
    actions = [(e["action"], e["target_id"]) for e in events]
    schedule_id = created.json()["id"]
    for action in ("created", "updated", "paused", "resumed", "deleted"):
        assert (f"schedule.{action}", schedule_id) in actions, actions
    updated = next(e for e in events if e["action"] == "schedule.updated")
    assert updated["detail"] == {"misfire_policy": "catch_up"}
    assert "monday" not in str(events)  # inputs stay out of the audit log
