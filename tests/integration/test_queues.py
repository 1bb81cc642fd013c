"""Routing steps to queues, with real workers: each step runs on a worker consuming its
queue; a step on a queue nobody consumes says so (API and run page) until a worker for
that queue starts; live workers are listed; bad queue names are refused, changing
nothing; the agent and key forms set queues."""

from __future__ import annotations

import html
import re
import uuid
from typing import Any

import httpx
import pytest

from tests.processes import FakeLLM, Proc, Stack, wait_until
from tests.web_session import csrf_token, make_user, sign_in

pytestmark = pytest.mark.parametrize("stack", ["sqlite"], indirect=True)


def tag() -> str:
    return uuid.uuid4().hex[:8]


def make_key(api: httpx.Client, fake_llm: FakeLLM, **extra: Any) -> dict[str, Any]:
    body = {"provider": "ollama", "name": f"q-key-{tag()}", "base_url": fake_llm.url, **extra}
    r = api.post("/keys", json=body)
    assert r.status_code == 201, r.text
    return dict(r.json())


def make_agent(api: httpx.Client, key_id: str, **extra: Any) -> dict[str, Any]:
    body = {"name": f"q-agent-{tag()}", "key_id": key_id, "model": "llama3.2", **extra}
    r = api.post("/agents", json=body)
    assert r.status_code == 201, r.text
    return dict(r.json())


def submit(api: httpx.Client, steps: list[dict[str, Any]]) -> str:
    name = f"q-wf-{tag()}"
    r = api.post("/workflows", json={"name": name, "steps": steps})
    assert r.status_code == 201, r.text
    r = api.post("/runs", json={"workflow": name, "input": {}})
    assert r.status_code == 202, r.text
    return str(r.json()["id"])


def finished(api: httpx.Client, run_id: str, timeout: float = 60) -> dict[str, Any]:
    run: dict[str, Any] = {}

    def done() -> bool:
        nonlocal run
        run = api.get(f"/runs/{run_id}").json()
        return run["status"] in ("succeeded", "failed") and bool(run["finished_at"])

    wait_until(done, timeout=timeout, what=f"run {run_id} to finish")
    return run


def live_nodes(api: httpx.Client) -> dict[str, list[str]]:
    r = api.get("/workers")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["count"] == len(body["data"])
    return {w["node"]: w["queues"] for w in body["data"]}


def gpu_worker(stack: Stack, queue: str) -> tuple[Proc, str]:
    name = f"gpu-{tag()}"
    proc = stack.start_ready_worker(name, "--queues", queue, "--concurrency", "4")
    return proc, f"{name}@test"


def test_each_step_runs_on_a_worker_consuming_its_queue(stack: Stack, fake_llm: FakeLLM) -> None:
    queue = f"local-gpu-{tag()}"
    gpu, gpu_node = gpu_worker(stack, queue)
    try:
        with stack.client() as api:
            # The GPU worker consumes its queue and the control queue; it is listed live.
            wait_until(lambda: gpu_node in live_nodes(api), timeout=15, what="the GPU worker")
            assert sorted(live_nodes(api)[gpu_node]) == sorted([queue, "ownkey.control"])
            default_nodes = [n for n, qs in live_nodes(api).items() if "ownkey" in qs]
            assert default_nodes and gpu_node not in default_nodes

            key = make_key(api, fake_llm)
            general = make_agent(api, key["id"])
            local = make_agent(api, key["id"], queue=queue)
            assert api.get(f"/agents/{local['id']}").json()["queue"] == queue
            run_id = submit(
                api,
                [
                    {"id": "draft", "agent": general["name"], "prompt": "Draft it"},
                    {
                        "id": "polish",
                        "agent": local["name"],
                        "prompt": "Polish {{ steps.draft.output }}",
                        "depends_on": ["draft"],
                    },
                ],
            )
            run = finished(api, run_id)
        assert run["status"] == "succeeded", run
        steps = {s["id"]: s for s in run["steps"]}
        assert (steps["draft"]["queue"], steps["polish"]["queue"]) == ("ownkey", queue)
        assert steps["draft"]["worker_host"] in default_nodes
        assert steps["polish"]["worker_host"] == gpu_node
        assert all(s["waiting_for"] is None for s in steps.values())
    finally:
        gpu.stop()
    # A worker that stops cleanly leaves the registry (the API caches for a few seconds).
    with stack.client() as api:
        wait_until(lambda: gpu_node not in live_nodes(api), timeout=15, what="the worker to go")


def test_a_step_on_a_queue_nobody_consumes_says_so_until_a_worker_comes(
    stack: Stack, fake_llm: FakeLLM
) -> None:
    queue = f"nobody-{tag()}"
    with stack.client() as api:
        # The key names the queue; the agent names none: the key's queue is used.
        key = make_key(api, fake_llm, queue=queue)
        agent = make_agent(api, key["id"])
        run_id = submit(api, [{"id": "only", "agent": agent["name"], "prompt": "Hi"}])
        step: dict[str, Any] = {}

        def waiting() -> bool:
            nonlocal step
            step = api.get(f"/runs/{run_id}").json()["steps"][0]
            return step["waiting_for"] is not None

        wait_until(waiting, timeout=15, what="the step to report its missing worker")
        assert step["status"] == "queued" and step["queue"] == queue
        assert step["waiting_for"].startswith(f"no live worker consumes queue '{queue}'")

    viewer = sign_in(stack, make_user(stack, "viewer"))
    page = viewer.get(f"/runs/{run_id}").text
    note = re.search(r'<p class="flash info"[^>]*data-testid="step-waiting"[^>]*>(.*?)</p>', page)
    assert note and "hidden" not in note.group(0), page[:3000]
    assert html.unescape(note.group(1)).startswith(f"no live worker consumes queue '{queue}'")
    assert f'data-testid="step-queue">{queue}</code>' in page

    worker, node = gpu_worker(stack, queue)
    try:
        with stack.client() as api:
            run = finished(api, run_id)
        assert run["status"] == "succeeded", run
        (done,) = run["steps"]
        assert done["worker_host"] == node and done["waiting_for"] is None
    finally:
        worker.stop()


@pytest.mark.parametrize(
    ("queue", "words"),
    [
        ("Local GPU", "lower-case letters, digits"),
        ("ownkey.control", "reserved for ownkey's periodic tasks"),
        ("a,b", "lower-case letters, digits"),
        ("x" * 65, "lower-case letters, digits"),
        ("", "lower-case letters, digits"),
    ],
)
def test_bad_queue_names_are_refused_and_change_nothing(
    stack: Stack, fake_llm: FakeLLM, queue: str, words: str
) -> None:
    with stack.client() as api:
        agents_before = api.get("/agents").json()["count"]
        keys_before = api.get("/keys").json()["count"]
        key = make_key(api, fake_llm, queue="kept-q")
        agent = make_agent(api, key["id"], queue="kept-q")
        checks = [
            api.post(
                "/agents",
                json={"name": f"bad-{tag()}", "key_id": key["id"], "model": "m", "queue": queue},
            ),
            api.post(
                "/keys",
                json={"provider": "ollama", "name": f"bad-{tag()}", "queue": queue},
            ),
            api.patch(f"/agents/{agent['id']}", json={"queue": queue}),
            api.patch(f"/keys/{key['id']}", json={"queue": queue}),
        ]
        for r in checks:
            assert r.status_code == 422, r.text
            (error,) = r.json()["detail"]
            assert error["loc"][-1] == "queue" and words in error["msg"], error
        assert api.get("/agents").json()["count"] == agents_before + 1
        assert api.get("/keys").json()["count"] == keys_before + 1
        assert api.get(f"/agents/{agent['id']}").json()["queue"] == "kept-q"
        assert api.get(f"/keys/{key['id']}").json()["queue"] == "kept-q"
        # null clears a queue.
        assert api.patch(f"/agents/{agent['id']}", json={"queue": None}).json()["queue"] is None
        assert api.patch(f"/keys/{key['id']}", json={"queue": None}).json()["queue"] is None


def field_error(page: str, name: str) -> str | None:
    found = re.search(rf'<span class="error" id="e-{name}" role="alert">(.*?)</span>', page, re.S)
    return None if found is None else html.unescape(found.group(1))


def agent_form(token: str, key_id: str, **fields: str) -> dict[str, str]:
    return {
        "csrf_token": token,
        "key_id": key_id,
        "model_choice": "__other__",
        "model_other": "llama3.2",
        "max_attempts": "3",
        **fields,
    }


def test_the_agent_form_sets_and_clears_a_queue(stack: Stack, fake_llm: FakeLLM) -> None:
    with stack.client() as api:
        key = make_key(api, fake_llm)
    client = sign_in(stack, make_user(stack, "member"))
    token = csrf_token(client)
    name = f"form-q-{tag()}"
    refused = client.post(
        "/agents/new", data=agent_form(token, key["id"], name=name, queue="GPU box")
    )
    assert refused.status_code == 422
    assert "lower-case letters, digits" in (field_error(refused.text, "queue") or "")
    with stack.client() as api:
        assert api.get(f"/agents/{name}").status_code == 404  # nothing was created
    created = client.post(
        "/agents/new", data=agent_form(token, key["id"], name=name, queue="local-gpu")
    )
    assert created.status_code == 303, created.text
    with stack.client() as api:
        agent = api.get(f"/agents/{name}").json()
    assert agent["queue"] == "local-gpu"
    assert 'value="local-gpu"' in client.get(f"/agents/{agent['id']}").text
    cleared = client.post(f"/agents/{agent['id']}", data=agent_form(token, key["id"], queue=""))
    assert cleared.status_code == 303, cleared.text
    with stack.client() as api:
        assert api.get(f"/agents/{name}").json()["queue"] is None


def test_the_keys_page_adds_and_sets_a_keys_queue(stack: Stack) -> None:
    client = sign_in(stack, make_user(stack, "admin"))
    token = csrf_token(client)
    name = f"page-q-{tag()}"
    form = {"csrf_token": token, "provider": "ollama", "name": name, "base_url": ""}
    refused = client.post("/settings/keys", data={**form, "queue": "ownkey.control"})
    assert refused.status_code == 422
    assert "reserved" in (field_error(refused.text, "queue") or "")
    added = client.post("/settings/keys", data={**form, "queue": "edge"})
    assert added.status_code == 303, added.text
    with stack.client() as api:
        (key,) = [k for k in api.get("/keys").json()["data"] if k["name"] == name]
    assert key["queue"] == "edge"
    bad = client.post(
        f"/settings/keys/{key['id']}/queue", data={"csrf_token": token, "queue": "No Way"}
    )
    assert bad.status_code == 422 and "lower-case letters, digits" in html.unescape(bad.text)
    moved = client.post(
        f"/settings/keys/{key['id']}/queue", data={"csrf_token": token, "queue": "edge-2"}
    )
    assert moved.status_code == 303
    with stack.client() as api:
        assert api.get(f"/keys/{key['id']}").json()["queue"] == "edge-2"
    # A viewer sees the queue but gets no form to change it.
    viewer = sign_in(stack, make_user(stack, "viewer"))
    page = viewer.get("/settings/keys").text
    assert "<code>edge-2</code>" in page and "key-queue-input" not in page
