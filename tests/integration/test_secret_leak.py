"""A provider secret never leaves the worker: not in an API response, a log line, the
broker, Flower, an error text or the database in plaintext. Proven by grepping for
known canary secrets after using them for real."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis
from celery import Celery
from sqlalchemy import create_engine, inspect, text

from shared.embedded_redis import free_port
from tests.integration.test_end_to_end import wait_for_run
from tests.processes import FakeLLM, Proc, Stack, ownkey, wait_until

FLOWER_AUTH = ("flower", "flower-test-password")


@pytest.fixture
def flower(stack: Stack) -> Iterator[str]:
    port = free_port()
    env = dict(stack.env, OWNKEY_FLOWER_BASIC_AUTH=":".join(FLOWER_AUTH))
    proc: Proc = ownkey(
        ["flower", "--port", str(port)], env=env, log_dir=stack.log_dir, name=f"flower-{port}"
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(
            lambda: httpx.get(f"{url}/healthcheck", timeout=2).status_code == 200,
            timeout=30,
            what="flower",
            proc=proc,
        )
        # Workers send task events only while someone watches: Flower switches them on
        # with a broadcast every 5 s. Send the same broadcast now rather than wait for it.
        wait_until(
            lambda: bool(
                httpx.get(f"{url}/api/workers?refresh=1", auth=FLOWER_AUTH, timeout=10).json()
            ),
            timeout=30,
            what="flower to see the worker",
            proc=proc,
        )
        broadcaster = Celery(broker=stack.env["OWNKEY_REDIS_URL"])
        broadcaster.control.enable_events()
        broadcaster.close()
        yield url
    finally:
        proc.stop()
        stack.procs.append(proc)  # its log is grepped with the others


def redis_dump(url: str) -> str:
    """Every key and value in the broker's Redis database, as text."""
    client = redis.Redis.from_url(url)
    parts: list[str] = []
    for key in client.scan_iter(count=1000):
        kind = client.type(key).decode()
        if kind == "string":
            value: Any = client.get(key)
        elif kind == "list":
            value = client.lrange(key, 0, -1)
        elif kind == "hash":
            value = client.hgetall(key)
        elif kind == "set":
            value = client.smembers(key)
        elif kind == "zset":
            value = client.zrange(key, 0, -1, withscores=True)
        else:
            value = kind
        parts.append(f"{key!r} {value!r}")
    client.close()
    return "\n".join(parts)


def database_dump(url: str) -> str:
    engine = create_engine(url)
    parts: list[str] = []
    with engine.connect() as db:
        for table in inspect(db).get_table_names():
            for row in db.execute(text(f'SELECT * FROM "{table}"')):
                parts.append(repr(tuple(row)))
    engine.dispose()
    return "\n".join(parts)


def test_secrets_appear_nowhere(stack: Stack, fake_llm: FakeLLM, flower: str) -> None:
    tag = uuid.uuid4().hex[:8]
    good_secret = f"sk-CANARY-GOOD-{uuid.uuid4().hex}"
    bad_secret = f"sk-CANARY-BAD-{uuid.uuid4().hex}"
    responses: list[str] = []
    fake_llm.configure(valid_keys=[good_secret])
    try:
        with stack.client() as api:

            def call(method: str, path: str, **kw: Any) -> httpx.Response:
                response = api.request(method, path, **kw)
                responses.append(response.text)
                return response

            good = call(
                "POST",
                "/keys",
                json={
                    "provider": "openai",
                    "name": f"good-{tag}",
                    "api_key": good_secret,
                    "base_url": f"{fake_llm.url}/v1",
                },
            ).json()
            bad = call(
                "POST",
                "/keys",
                json={
                    "provider": "anthropic",
                    "name": f"bad-{tag}",
                    "api_key": bad_secret,
                    "base_url": fake_llm.url,
                },
            ).json()
            # A wrong-typed secret is refused without echoing it back.
            assert (
                call(
                    "POST",
                    "/keys",
                    json={"provider": "openai", "name": f"x-{tag}", "api_key": [bad_secret]},
                ).status_code
                == 422
            )
            assert call("POST", f"/keys/{good['id']}/test").json()["ok"] is True
            tested = call("POST", f"/keys/{bad['id']}/test").json()
            assert tested["ok"] is False and tested["error"]
            assert call("GET", f"/keys/{bad['id']}/models").status_code == 502
            for name, key in (("ok", good), ("ko", bad)):
                call(
                    "POST",
                    "/agents",
                    json={"name": f"{name}-{tag}", "key_id": key["id"], "model": "gpt-4o-mini"},
                )
            call(
                "POST",
                "/workflows",
                json={
                    "name": f"leak-{tag}",
                    "steps": [
                        {"id": "first", "agent": f"ok-{tag}", "prompt": "hello {{ input.who }}"},
                        {
                            "id": "second",
                            "agent": f"ko-{tag}",
                            "prompt": "{{ steps.first.output }}",
                            "depends_on": ["first"],
                        },
                    ],
                },
            )
            run_id = call(
                "POST", "/runs", json={"workflow": f"leak-{tag}", "input": {"who": "you"}}
            ).json()["id"]
            run = wait_for_run(api, run_id)
            responses.append(json.dumps(run))
            call("GET", "/keys")
            call("GET", "/runs")
    finally:
        fake_llm.configure(valid_keys=[])

    # The run really used both keys: one call succeeded, the other was refused as unauthorised.
    assert run["status"] == "failed" and run["failed_step"] == "second"
    second = run["steps"][1]
    assert second["status"] == "failed" and second["attempts"] == 1
    assert f"bad-{tag}" in second["error"] and "anthropic" in second["error"]

    step_ids = {s["step_run_id"] for s in run["steps"]}
    tasks: dict[str, Any] = {}

    def flower_saw_both_steps() -> bool:
        tasks.clear()
        tasks.update(httpx.get(f"{flower}/api/tasks", auth=FLOWER_AUTH, timeout=10).json())
        seen = {i for t in tasks.values() for i in step_ids if i in (t.get("args") or "")}
        return seen == step_ids

    wait_until(flower_saw_both_steps, timeout=20, what="flower to show the run's tasks")
    mine = [t for t in tasks.values() if any(i in (t.get("args") or "") for i in step_ids)]
    # Named for what runs (workflow/step (agent)), identifiers the user chose, no data.
    assert {t["name"] for t in mine} == {
        f"ownkey.step leak-{tag}/first (ok-{tag})",
        f"ownkey.step leak-{tag}/second (ko-{tag})",
    }
    for task in mine:  # the message carries the step id and nothing else
        assert task["args"].strip("()[],' ") in step_ids and task["kwargs"] in ("{}", None)

    places = {
        "API responses": "\n".join(responses),
        "process logs": stack.logs(),
        "Redis": redis_dump(stack.env["OWNKEY_REDIS_URL"]),
        "Flower": json.dumps(tasks),
        "database": database_dump(stack.env["OWNKEY_DATABASE_URL"]),
    }
    assert all(f"step {step_id} of run" in places["process logs"] for step_id in step_ids)
    for where, content in places.items():
        for secret in (good_secret, bad_secret):
            assert secret not in content, f"a secret leaked into {where}"
            assert secret[-12:] not in content, f"part of a secret leaked into {where}"
