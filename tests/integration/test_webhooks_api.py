"""The webhooks API against the real API process: what is refused (422 naming the field,
nothing stored), who may do what, and the audit log."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, text

from shared.models import new_id
from tests.processes import Stack, run_ownkey
from tests.web_session import make_user

pytestmark = pytest.mark.parametrize("stack", ["sqlite"], indirect=True)

RECEIVER = "https://hooks.example.com/ownkey"


def token_for(stack: Stack, role: str) -> str:
    username = make_user(stack, role)
    done = run_ownkey(["token", "create", "--name", "t", "--user", username], env=stack.env)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


def workflow(api: httpx.Client) -> dict[str, Any]:
    """A valid workflow (its agent exists; nothing here runs it)."""
    name = f"wh-{uuid.uuid4().hex[:8]}"
    key = api.post("/keys", json={"provider": "ollama", "name": name}).json()
    agent = api.post("/agents", json={"name": name, "key_id": key["id"], "model": "m"})
    assert agent.status_code == 201, agent.text
    steps = [{"id": "s", "agent": name, "prompt": "p"}]
    created = api.post("/workflows", json={"name": name, "steps": steps})
    assert created.status_code == 201, created.text
    return dict(created.json())


def insert_row(stack: Stack, table: str, **values: Any) -> str:
    """A budget or batch row, as their own features would store it (their API is not
    this module's)."""
    values = {"id": new_id(), **values}
    engine = create_engine(stack.env["OWNKEY_DATABASE_URL"])
    try:
        with engine.begin() as db:
            columns = ", ".join(values)
            marks = ", ".join(f":{name}" for name in values)
            db.execute(text(f"INSERT INTO {table} ({columns}) VALUES ({marks})"), values)
    finally:
        engine.dispose()
    return str(values["id"])


def test_bad_webhooks_are_refused_naming_the_field_and_nothing_is_stored(stack: Stack) -> None:
    with stack.client() as api:
        wf = workflow(api)
        before = api.get("/webhooks").json()["count"]
        good = {"target_type": "workflow", "target": wf["name"], "url": RECEIVER}
        cases = [
            ({**good, "url": "ftp://hooks.example.com/x"}, ["body", "url"], "http"),
            (
                {**good, "url": "https://user:pw@hooks.example.com/x"},
                ["body", "url"],
                "credentials",
            ),
            ({**good, "url": "hooks.example.com/x"}, ["body", "url"], "http"),
            ({**good, "url": "https://hooks.example.com:99999/x"}, ["body", "url"], "port"),
            ({**good, "url": "https://hooks.example.com/a b"}, ["body", "url"], "spaces"),
            ({**good, "target_type": "run"}, ["body", "target_type"], "workflow"),
            ({**good, "target": "no-such-workflow"}, ["body", "target"], "no workflow"),
            ({**good, "target": ""}, ["body", "target"], "at least 1"),
            ({**good, "secret": "whsec_mine"}, ["body", "secret"], "not permitted"),
            ({"target_type": "workflow", "target": wf["name"]}, ["body", "url"], "required"),
        ]
        for body, loc, words in cases:
            refused = api.post("/webhooks", json=body)
            assert refused.status_code == 422, (body, refused.text)
            [error] = refused.json()["detail"]
            assert error["loc"] == loc and words in error["msg"], (body, error)
        assert api.get("/webhooks").json()["count"] == before
        assert api.get("/webhook-deliveries", params={"status": "lost"}).status_code == 422
        assert api.get("/webhooks/nope").status_code == 404
        assert api.get("/webhooks/nope/deliveries").status_code == 404
        assert api.get("/webhook-deliveries/nope").status_code == 404
        assert api.post("/webhook-deliveries/nope/redeliver").status_code == 404


def test_members_manage_workflow_webhooks_admins_budget_ones_viewers_read(stack: Stack) -> None:
    admin = stack.client()
    member = stack.client(token_for(stack, "member"))
    viewer = stack.client(token_for(stack, "viewer"))
    wf = workflow(admin)
    budget_id = insert_row(
        stack,
        "budgets",
        name=f"budget-{uuid.uuid4().hex[:8]}",
        scope="instance",
        limit_nanos=10**9,
        window="month",
        created_at="2026-01-01 00:00:00",
        updated_at="2026-01-01 00:00:00",
    )
    by_member = member.post(
        "/webhooks", json={"target_type": "workflow", "target": wf["id"], "url": RECEIVER}
    )
    assert by_member.status_code == 201, by_member.text
    assert by_member.json()["target_id"] == wf["id"]
    budget_hook = {"target_type": "budget", "target": budget_id, "url": RECEIVER}
    refused = member.post("/webhooks", json=budget_hook)
    assert refused.status_code == 403 and "admin" in refused.json()["detail"]
    by_admin = admin.post("/webhooks", json=budget_hook)
    assert by_admin.status_code == 201, by_admin.text
    hook_id, budget_hook_id = by_member.json()["id"], by_admin.json()["id"]

    assert viewer.post("/webhooks", json=budget_hook).status_code == 403
    assert viewer.delete(f"/webhooks/{hook_id}").status_code == 403
    listed = viewer.get("/webhooks", params={"target_type": "budget"}).json()
    assert budget_hook_id in {w["id"] for w in listed["data"]}
    assert all(w["target_type"] == "budget" for w in listed["data"])
    assert viewer.get(f"/webhooks/{hook_id}/deliveries").json() == {"data": [], "count": 0}
    assert member.delete(f"/webhooks/{budget_hook_id}").status_code == 403

    assert member.delete(f"/webhooks/{hook_id}").status_code == 204
    assert admin.get(f"/webhooks/{hook_id}").status_code == 404
    events = admin.get("/audit", params={"action": "webhook."}).json()["data"]
    mine = [(e["action"], e["username"]) for e in events if e["target_id"] == hook_id]
    assert {action for action, _ in mine} == {"webhook.created", "webhook.deleted"}
    created = next(e for e in events if e["target_id"] == budget_hook_id)
    assert created["detail"] == {"target_type": "budget", "target_id": budget_id, "url": RECEIVER}
    for client in (admin, member, viewer):
        client.close()


def test_a_batch_webhook_names_a_running_batch(stack: Stack) -> None:
    with stack.client() as api:
        wf = workflow(api)

        def batch(status: str, name: str) -> str:
            return insert_row(
                stack,
                "batches",
                name=name,
                workflow_id=wf["id"],
                status=status,
                max_in_flight=1,
                total=0,
                input_columns="[]",
                created_at="2026-01-01 00:00:00",
            )

        tag = uuid.uuid4().hex[:8]
        running = batch("running", f"nightly-{tag}")
        done = batch("succeeded", f"done-{tag}")
        batch("running", f"twice-{tag}")
        batch("running", f"twice-{tag}")

        def subscribe(target: str) -> httpx.Response:
            return api.post(
                "/webhooks", json={"target_type": "batch", "target": target, "url": RECEIVER}
            )

        by_name = subscribe(f"nightly-{tag}")
        assert by_name.status_code == 201 and by_name.json()["target_id"] == running
        finished = subscribe(done)
        assert finished.status_code == 409 and "already finished" in finished.json()["detail"]
        ambiguous = subscribe(f"twice-{tag}")
        assert ambiguous.status_code == 422
        assert ambiguous.json()["detail"][0]["loc"] == ["body", "target"]
