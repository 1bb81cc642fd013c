"""Flower as `ownkey flower` runs it: behind basic auth and a URL prefix, switching task
events on by itself, and showing step tasks by readable names that carry no data.

Everything is checked through Flower's own HTTP API, as a person's browser would see it.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from celery import Celery

from shared.embedded_redis import free_port
from tests.integration.test_end_to_end import wait_for_run
from tests.processes import FakeLLM, Proc, Stack, ownkey, run_ownkey, wait_until
from worker.celery_app import DEFAULT_QUEUE, STEP_TASK

AUTH = ("watcher", f"flower-pw-{uuid.uuid4().hex}")
PREFIX = "flower"


def _broker(stack: Stack) -> Celery:
    return Celery(broker=stack.env["OWNKEY_REDIS_URL"])


@pytest.fixture
def flower(stack: Stack) -> Iterator[tuple[str, Proc]]:
    """`ownkey flower --url-prefix flower` on a free port; its base URL and process.

    The workers' task events are switched off first: whatever an earlier test left on,
    the tasks below reach Flower only if Flower switches events on itself."""
    broker = _broker(stack)
    broker.control.disable_events()
    broker.close()
    port = free_port()
    env = dict(stack.env, OWNKEY_FLOWER_BASIC_AUTH=":".join(AUTH))
    proc = ownkey(
        ["flower", "--port", str(port), "--url-prefix", PREFIX],
        env=env,
        log_dir=stack.log_dir,
        name=f"flower-prefixed-{port}",
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(
            lambda: httpx.get(f"{base}/{PREFIX}/healthcheck", timeout=2).status_code == 200,
            timeout=30,
            what="flower",
            proc=proc,
        )
        yield base, proc
    finally:
        proc.stop()


def _tasks(base: str) -> dict[str, dict[str, Any]]:
    response = httpx.get(f"{base}/{PREFIX}/api/tasks", auth=AUTH, timeout=10)
    response.raise_for_status()
    return dict(response.json())


def _wait_for_task_events(stack: Stack, base: str, proc: Proc) -> None:
    """Send harmless step messages (an id no step has: the worker claims nothing) until
    Flower shows one as succeeded, which proves the worker sends it task events."""
    broker = _broker(stack)
    probe = f"probe-{uuid.uuid4().hex}"

    def probe_seen() -> bool:
        broker.send_task(STEP_TASK, args=[probe], queue=DEFAULT_QUEUE)
        return any(
            t.get("args") == f"['{probe}']" and t.get("state") == "SUCCESS"
            for t in _tasks(base).values()
        )

    try:
        wait_until(probe_seen, timeout=30, what="flower to switch task events on", proc=proc)
    finally:
        broker.close()


def _run_two_steps(stack: Stack, fake_llm: FakeLLM, *, tag: str, marker: str, secret: str) -> Any:
    """A two-step run whose first call is rate limited once: the step is sent on
    submission, again after its retry wait, and its successor after it succeeds."""
    with stack.client() as api:
        key = api.post(
            "/keys",
            json={
                "provider": "openai",
                "name": f"key-{tag}",
                "api_key": secret,
                "base_url": f"{fake_llm.url}/v1",
            },
        ).json()
        api.post(
            "/agents", json={"name": f"agent-{tag}", "key_id": key["id"], "model": "gpt-4o-mini"}
        ).raise_for_status()
        api.post(
            "/workflows",
            json={
                "name": f"wf-{tag}",
                "steps": [
                    {
                        "id": "extract",
                        "agent": f"agent-{tag}",
                        "prompt": f"Find {marker} in {{{{ input.text }}}}",
                    },
                    {
                        "id": "summarise",
                        "agent": f"agent-{tag}",
                        "prompt": "Summarise {{ steps.extract.output }}",
                        "depends_on": ["extract"],
                    },
                ],
            },
        ).raise_for_status()
        httpx.post(
            f"{fake_llm.url}/_fake/faults", json={"status": 429, "count": 1, "retry_after": 1}
        ).raise_for_status()
        run_id = api.post(
            "/runs", json={"workflow": f"wf-{tag}", "input": {"text": f"input-{marker}"}}
        ).json()["id"]
        return wait_for_run(api, run_id)


@pytest.mark.parametrize("stack", ["sqlite"], indirect=True)  # Flower does not see the database
def test_flower_shows_readable_step_names_and_no_data(
    stack: Stack, fake_llm: FakeLLM, flower: tuple[str, Proc]
) -> None:
    base, proc = flower
    tag = uuid.uuid4().hex[:8]
    marker = f"PROMPT-MARKER-{uuid.uuid4().hex}"
    secret = f"sk-FLOWER-CANARY-{uuid.uuid4().hex}"

    _wait_for_task_events(stack, base, proc)
    run = _run_two_steps(stack, fake_llm, tag=tag, marker=marker, secret=secret)
    assert run["status"] == "succeeded", run
    extract, summarise = run["steps"]
    assert extract["attempts"] == 2  # the rate-limited call was sent again
    assert marker in summarise["output"]
    ids = {extract["step_run_id"]: "extract", summarise["step_run_id"]: "summarise"}

    tasks: dict[str, dict[str, Any]] = {}

    def flower_saw_every_message() -> bool:
        tasks.clear()
        tasks.update(
            {u: t for u, t in _tasks(base).items() if t.get("args", "").strip("[]'") in ids}
        )
        done = [t for t in tasks.values() if t.get("state") == "SUCCESS"]
        return len(done) >= 3

    wait_until(flower_saw_every_message, timeout=30, what="flower to show the run's steps")

    # Each message is named for what it runs: workflow/step (agent); the task that ran is
    # still ownkey.step, with the step id as its only argument.
    for task in tasks.values():
        step = ids[task["args"].strip("[]'")]
        assert task["name"] == f"{STEP_TASK} wf-{tag}/{step} (agent-{tag})"
        assert task["kwargs"] == "{}"
    names = sorted(t["name"] for t in tasks.values())
    assert names.count(f"{STEP_TASK} wf-{tag}/extract (agent-{tag})") >= 2  # the retry too
    # Flower heard the whole life of each message from the worker.
    for task in tasks.values():
        if task["state"] == "SUCCESS":
            assert task["received"] and task["started"] and task["succeeded"]
            assert task["worker"]

    # Nothing of the prompt, the output or the key anywhere in what Flower holds.
    details = [
        httpx.get(f"{base}/{PREFIX}/api/task/info/{u}", auth=AUTH, timeout=10).text for u in tasks
    ]
    shown = json.dumps(_tasks(base)) + "\n".join(details)
    for value in (marker, secret, secret[-12:], extract["output"], summarise["output"]):
        assert value not in shown
    assert secret not in proc.log() and secret not in stack.logs()
    # The worker's own log uses the same names.
    assert f"{STEP_TASK} wf-{tag}/summarise (agent-{tag})" in stack.logs()


@pytest.mark.parametrize("stack", ["sqlite"], indirect=True)
def test_flower_needs_its_login_and_lives_under_its_prefix(
    stack: Stack, flower: tuple[str, Proc]
) -> None:
    base, _ = flower
    api = f"{base}/{PREFIX}/api/tasks"
    assert httpx.get(api, timeout=10).status_code == 401
    assert httpx.get(api, auth=(AUTH[0], "wrong-password"), timeout=10).status_code == 401
    assert httpx.get(api, auth=("someone", AUTH[1]), timeout=10).status_code == 401
    assert httpx.get(f"{base}/{PREFIX}/", timeout=10).status_code == 401

    page = httpx.get(f"{base}/{PREFIX}/", auth=AUTH, timeout=10)
    assert page.status_code == 200 and f"/{PREFIX}/static/" in page.text
    for outside in ("/", "/api/tasks", "/workers"):
        assert httpx.get(f"{base}{outside}", auth=AUTH, timeout=10).status_code == 404

    workers = {w.name for w in stack.procs if w.name.startswith("worker")}

    def lists_the_workers() -> bool:
        found = httpx.get(f"{base}/{PREFIX}/api/workers?refresh=1", auth=AUTH, timeout=10).json()
        return {f"{name}@test" for name in workers} <= set(found)

    wait_until(lists_the_workers, timeout=30, what="flower to list the stack's workers")


@pytest.fixture
def env_without_flower_login(tmp_path: Path) -> dict[str, str]:
    """A broker address that nothing listens on: the refusal must come first."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OWNKEY_")}
    env.update(
        OWNKEY_DATA_DIR=str(tmp_path),
        OWNKEY_ENVIRONMENT="test",
        OWNKEY_REDIS_URL=f"redis://127.0.0.1:{free_port()}/0",
    )
    return env


def test_flower_refuses_to_start_without_a_login(env_without_flower_login: dict[str, str]) -> None:
    for auth in ("", "no-colon"):
        env = dict(env_without_flower_login, OWNKEY_FLOWER_BASIC_AUTH=auth)
        result = run_ownkey(["flower", "--port", str(free_port())], env=env)
        assert result.returncode == 2, result.stderr
        assert "set OWNKEY_FLOWER_BASIC_AUTH=user:password" in result.stderr
        assert "no-colon" not in result.stderr  # the value given is not echoed
