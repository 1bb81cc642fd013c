"""Webhooks end to end: real API, worker and beat, fake-llm, and a receiver on loopback.

This module runs its own stack (SQLite) with short retry delays
(`OWNKEY_WEBHOOK_RETRY_BASE_SECONDS=0.3`, a sweep every 0.5 s, 3 attempts), because
workers and beat read their settings when they start; the shared `stack` keeps the
defaults, which would make each retry wait 10 s or more.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from celery import Celery

from shared.embedded_redis import EmbeddedRedis, free_port
from shared.webhook_signing import verify
from tests.integration.conftest import _base_env
from tests.integration.test_end_to_end import wait_for_run
from tests.integration.test_secret_leak import FLOWER_AUTH, database_dump, redis_dump
from tests.integration.webhook_receiver import Receiver, running_receiver
from tests.processes import FakeLLM, Proc, Stack, ownkey, start_stack, wait_until
from worker.celery_app import DEFAULT_QUEUE

MAX_ATTEMPTS = 3


@pytest.fixture(scope="module")
def hook_stack(session_dir: Path, redis_server: EmbeddedRedis) -> Iterator[Stack]:
    data_dir = session_dir / "webhooks"
    data_dir.mkdir(parents=True, exist_ok=True)
    env = _base_env(data_dir)
    env.update(
        OWNKEY_REDIS_URL=f"redis://127.0.0.1:{redis_server.port}/3",
        OWNKEY_DATABASE_URL=f"sqlite:///{data_dir / 'ownkey.db'}",
        OWNKEY_WEBHOOK_SWEEP_SECONDS="0.5",
        OWNKEY_WEBHOOK_RETRY_BASE_SECONDS="0.3",
        OWNKEY_WEBHOOK_MAX_ATTEMPTS=str(MAX_ATTEMPTS),
        OWNKEY_WEBHOOK_TIMEOUT_SECONDS="3",
    )
    stack = start_stack(env, data_dir)
    stack.procs.append(ownkey(["beat"], env=env, log_dir=data_dir, name="beat-webhooks"))
    yield stack
    stack.stop()


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    with running_receiver() as running:
        yield running


def make_workflow(api: httpx.Client, fake_llm: FakeLLM) -> str:
    """A one-step workflow on fake-llm; returns its name."""
    tag = uuid.uuid4().hex[:8]
    key = api.post(
        "/keys",
        json={
            "provider": "openai",
            "name": f"hook-{tag}",
            "api_key": "sk-hooks-0000",
            "base_url": f"{fake_llm.url}/v1",
        },
    )
    assert key.status_code == 201, key.text
    agent = {"name": f"hook-{tag}", "key_id": key.json()["id"], "model": "gpt-4o-mini"}
    assert api.post("/agents", json=agent).status_code == 201
    steps = [{"id": "only", "agent": f"hook-{tag}", "prompt": "say {{ input.word }}"}]
    created = api.post("/workflows", json={"name": f"hooked-{tag}", "steps": steps})
    assert created.status_code == 201, created.text
    return f"hooked-{tag}"


def subscribe(api: httpx.Client, workflow: str, url: str) -> dict[str, Any]:
    body = {"target_type": "workflow", "target": workflow, "url": url}
    created = api.post("/webhooks", json=body)
    assert created.status_code == 201, created.text
    return dict(created.json())


def run(api: httpx.Client, workflow: str) -> dict[str, Any]:
    submitted = api.post("/runs", json={"workflow": workflow, "input": {"word": "CONFIDENTIAL"}})
    assert submitted.status_code == 202, submitted.text
    return wait_for_run(api, submitted.json()["id"])


def wait_for_delivery(
    api: httpx.Client, webhook_id: str, status: str, timeout: float = 30
) -> dict[str, Any]:
    found: list[dict[str, Any]] = []

    def reached() -> bool:
        found[:] = api.get(f"/webhooks/{webhook_id}/deliveries").json()["data"]
        return bool(found) and found[0]["status"] == status

    wait_until(reached, timeout=timeout, what=f"a {status} delivery of webhook {webhook_id}")
    return found[0]


def signed_by(secret: str, call: Any) -> bool:
    return verify(
        secret,
        timestamp=call.headers["x-ownkey-timestamp"],
        body=call.body,
        signature=call.headers["x-ownkey-signature"],
    )


def test_a_finished_run_delivers_one_request_signed_with_the_secret_shown_once(
    hook_stack: Stack, fake_llm: FakeLLM, receiver: Receiver
) -> None:
    with hook_stack.client() as api:
        workflow = make_workflow(api, fake_llm)
        webhook = subscribe(api, workflow, receiver.url("/signed"))
        secret = webhook["secret"]
        assert secret.startswith("whsec_") and len(secret) > 40
        shown_later = [api.get(f"/webhooks/{webhook['id']}"), api.get("/webhooks")]
        finished = run(api, workflow)
        delivery = wait_for_delivery(api, webhook["id"], "delivered")

    for response in shown_later:
        assert response.status_code == 200 and secret not in response.text
        assert "secret" not in response.text
    [call] = receiver.calls("/signed")
    assert signed_by(secret, call)
    assert call.headers["content-type"] == "application/json"
    assert call.headers["x-ownkey-event"] == "run.finished"
    assert call.headers["x-ownkey-delivery"] == delivery["id"]
    body = json.loads(call.body)
    assert body["id"] == delivery["id"] and body["event"] == "run.finished"
    data = body["data"]["run"]
    assert data["id"] == finished["id"] and data["status"] == "succeeded"
    assert data["workflow"]["name"] == workflow
    assert data["input_tokens"] == finished["input_tokens"] > 0
    assert data["cost_usd"] == finished["cost_usd"]
    assert b"CONFIDENTIAL" not in call.body  # neither the input nor the output
    assert (delivery["attempts"], delivery["last_status_code"]) == (1, 200)
    assert delivery["delivered_at"] and delivery["last_error"] is None


def test_a_receiver_failing_twice_gets_the_delivery_on_the_third_attempt(
    hook_stack: Stack, fake_llm: FakeLLM, receiver: Receiver
) -> None:
    receiver.refuse("/flaky", times=2)
    with hook_stack.client() as api:
        workflow = make_workflow(api, fake_llm)
        webhook = subscribe(api, workflow, receiver.url("/flaky"))
        run(api, workflow)
        delivery = wait_for_delivery(api, webhook["id"], "delivered")

    assert delivery["attempts"] == 3 and delivery["last_status_code"] == 200
    calls = receiver.calls("/flaky")
    assert [c.status for c in calls] == [503, 503, 200]
    assert {c.headers["x-ownkey-delivery"] for c in calls} == {delivery["id"]}
    assert all(signed_by(webhook["secret"], c) for c in calls)


def test_a_receiver_always_failing_ends_failed_and_can_be_redelivered(
    hook_stack: Stack, fake_llm: FakeLLM, receiver: Receiver
) -> None:
    receiver.refuse("/down")
    with hook_stack.client() as api:
        workflow = make_workflow(api, fake_llm)
        webhook = subscribe(api, workflow, receiver.url("/down"))
        run(api, workflow)
        failed = wait_for_delivery(api, webhook["id"], "failed")
        listed = api.get("/webhook-deliveries", params={"status": "failed"}).json()["data"]

        assert failed["attempts"] == MAX_ATTEMPTS and failed["last_status_code"] == 503
        assert failed["last_error"] == "HTTP 503: receiver is down for maintenance"
        assert failed["next_attempt_at"] is None
        assert len(receiver.calls("/down")) == MAX_ATTEMPTS
        assert failed["id"] in {d["id"] for d in listed}

        receiver.refuse("/down", times=0)
        again = api.post(f"/webhook-deliveries/{failed['id']}/redeliver")
        assert again.status_code == 202, again.text
        assert (again.json()["status"], again.json()["attempts"]) == ("pending", 1)
        delivered = wait_for_delivery(api, webhook["id"], "delivered")

    assert delivered["id"] == failed["id"] and delivered["attempts"] == 1
    assert [c.status for c in receiver.calls("/down")] == [503] * MAX_ATTEMPTS + [200]


def test_duplicate_run_closed_messages_make_one_delivery(
    hook_stack: Stack, fake_llm: FakeLLM, receiver: Receiver
) -> None:
    with hook_stack.client() as api:
        workflow = make_workflow(api, fake_llm)
        webhook = subscribe(api, workflow, receiver.url("/once"))
        finished = run(api, workflow)
        wait_for_delivery(api, webhook["id"], "delivered")

        broker = Celery(broker=hook_stack.env["OWNKEY_REDIS_URL"])
        try:
            sent = [
                broker.send_task("ownkey.run_closed", args=[finished["id"]], queue=DEFAULT_QUEUE)
                for _ in range(2)
            ]
        finally:
            broker.close()
        wait_until(
            lambda: all(f"ownkey.run_closed[{s.id}] succeeded" in hook_stack.logs() for s in sent),
            timeout=30,
            what="the worker to handle both duplicate messages",
        )
        deliveries = api.get(f"/webhooks/{webhook['id']}/deliveries").json()

    assert deliveries["count"] == 1 and len(receiver.calls("/once")) == 1


@pytest.fixture
def flower(hook_stack: Stack) -> Iterator[str]:
    """Flower watching this module's stack (it sees only tasks run while it watches)."""
    port = free_port()
    env = dict(hook_stack.env, OWNKEY_FLOWER_BASIC_AUTH=":".join(FLOWER_AUTH))
    proc: Proc = ownkey(
        ["flower", "--port", str(port)], env=env, log_dir=hook_stack.log_dir, name="flower-hooks"
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(
            lambda: bool(
                httpx.get(f"{url}/api/workers?refresh=1", auth=FLOWER_AUTH, timeout=10).json()
            ),
            timeout=30,
            what="flower to see the worker",
            proc=proc,
        )
        broadcaster = Celery(broker=hook_stack.env["OWNKEY_REDIS_URL"])
        broadcaster.control.enable_events()
        broadcaster.close()
        yield url
    finally:
        proc.stop()
        hook_stack.procs.append(proc)  # its log is searched with the others


def test_the_secret_appears_nowhere_after_creation(
    hook_stack: Stack, fake_llm: FakeLLM, receiver: Receiver, flower: str
) -> None:
    hook_path = "/leak?token=receiver-token"
    receiver.refuse(hook_path, times=1)
    responses: list[str] = []
    with hook_stack.client() as api:
        workflow = make_workflow(api, fake_llm)
        webhook = subscribe(api, workflow, receiver.url(hook_path))
        secret = webhook["secret"]
        run(api, workflow)
        delivery = wait_for_delivery(api, webhook["id"], "delivered")
        for path in (
            f"/webhooks/{webhook['id']}",
            "/webhooks",
            f"/webhooks/{webhook['id']}/deliveries",
            "/webhook-deliveries",
            f"/webhook-deliveries/{delivery['id']}",
            "/audit",
        ):
            response = api.get(path)
            assert response.status_code == 200, path
            responses.append(response.text)
        responses.append(api.post(f"/webhook-deliveries/{delivery['id']}/redeliver").text)
        wait_for_delivery(api, webhook["id"], "delivered")

    calls = receiver.calls(hook_path)
    assert [c.status for c in calls] == [503, 200, 200]
    assert all(signed_by(secret, c) for c in calls)
    tasks: dict[str, Any] = {}

    def flower_saw_the_attempts() -> bool:
        tasks.clear()
        tasks.update(httpx.get(f"{flower}/api/tasks", auth=FLOWER_AUTH, timeout=10).json())
        mine = [t for t in tasks.values() if delivery["id"] in (t.get("args") or "")]
        return len(mine) >= 3

    wait_until(flower_saw_the_attempts, timeout=30, what="flower to show the delivery's tasks")
    mine = [t for t in tasks.values() if delivery["id"] in (t.get("args") or "")]
    assert {t["name"] for t in mine} == {"ownkey.webhook_deliver"}
    # The message names the delivery and the attempt, nothing else.
    assert {t["args"] for t in mine} >= {f"['{delivery['id']}', 1]", f"['{delivery['id']}', 2]"}

    places = {
        "API responses": "\n".join(responses),
        "process logs": hook_stack.logs(),
        "Redis": redis_dump(hook_stack.env["OWNKEY_REDIS_URL"]),
        "Flower": json.dumps(tasks),
        "database": database_dump(hook_stack.env["OWNKEY_DATABASE_URL"]),
    }
    assert "ownkey.webhook_deliver" in places["process logs"]
    for where, content in places.items():
        assert secret not in content, f"the webhook secret leaked into {where}"
        assert secret[-12:] not in content, f"part of the webhook secret leaked into {where}"
    # The URL's query may hold the receiver's own token: shown to readers of the webhook,
    # but kept out of the logs and the audit log.
    audit = responses[5]
    assert "webhook.created" in audit and "/leak" in audit
    assert "receiver-token" not in places["process logs"] + audit
