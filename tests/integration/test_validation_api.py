"""Bad input at the API boundary: a 422 naming the step and field, and nothing changed.
Plus run listing, agent edits and workflow versions, through the real stack."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.processes import FakeLLM, Stack


def tag() -> str:
    return uuid.uuid4().hex[:8]


@dataclass
class Agent:
    name: str
    id: str
    key_id: str


def make_agent(api: httpx.Client, base_url: str, model: str = "val-model") -> Agent:
    t = tag()
    key = api.post(
        "/keys",
        json={
            "provider": "openai",
            "name": f"val-{t}",
            "api_key": f"sk-val-{t}",
            "base_url": base_url,
        },
    )
    assert key.status_code == 201, key.text
    agent = api.post(
        "/agents", json={"name": f"val-agent-{t}", "key_id": key.json()["id"], "model": model}
    )
    assert agent.status_code == 201, agent.text
    return Agent(name=agent.json()["name"], id=agent.json()["id"], key_id=key.json()["id"])


def workflow_count(api: httpx.Client) -> int:
    body = api.get("/workflows").json()
    assert body["count"] == len(body["data"])
    return int(body["count"])


def wait_for_run(api: httpx.Client, run_id: str, timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    run: dict[str, Any] = {}
    while time.monotonic() < deadline:
        run = api.get(f"/runs/{run_id}").json()
        if run["status"] in ("succeeded", "failed", "cancelled") and run["finished_at"]:
            return run
        time.sleep(0.05)
    raise AssertionError(f"run {run_id} did not finish: {run}")


# --- workflows ----------------------------------------------------------------------------


def step(step_id: str, agent: str, prompt: str = "Say hi", **extra: Any) -> dict[str, Any]:
    return {"id": step_id, "agent": agent, "prompt": prompt, **extra}


@dataclass
class Case:
    """A bad workflow, and the error it must get: step None means workflow level."""

    build: Callable[[str, str], dict[str, Any] | str | bytes]  # (name, agent) -> body
    step: str | None
    field: str
    words: tuple[str, ...]
    content_type: str = "application/json"


CASES: dict[str, Case] = {
    "unknown-agent": Case(
        lambda n, a: {"name": n, "steps": [step("a", a), step("b", "no-such-agent")]},
        "b",
        "agent",
        ("no-such-agent",),
    ),
    "unknown-dependency": Case(
        lambda n, a: {"name": n, "steps": [step("a", a), step("b", a, depends_on=["nope"])]},
        "b",
        "depends_on",
        ("nope",),
    ),
    "self-dependency": Case(
        lambda n, a: {"name": n, "steps": [step("a", a, depends_on=["a"])]},
        "a",
        "depends_on",
        ("itself",),
    ),
    "unknown-step-in-template": Case(
        lambda n, a: {"name": n, "steps": [step("a", a, "Use {{ steps.nope.output }}")]},
        "a",
        "prompt",
        ("steps.nope", "no step"),
    ),
    "non-ancestor-output": Case(
        lambda n, a: {
            "name": n,
            "steps": [
                step("a", a),
                step("b", a),
                step("c", a, "{{ steps.b.output }}", depends_on=["a"]),
            ],
        },
        "c",
        "prompt",
        ("steps.b", "depends_on"),
    ),
    "duplicate-step-id": Case(
        lambda n, a: {"name": n, "steps": [step("a", a), step("b", a), step("a", a, "again")]},
        "a",
        "id",
        ("duplicate",),
    ),
    "cycle": Case(
        lambda n, a: {
            "name": n,
            "steps": [
                step("start", a),
                step("x", a, depends_on=["start", "z"]),
                step("y", a, depends_on=["x"]),
                step("z", a, depends_on=["y"]),
            ],
        },
        "x",
        "depends_on",
        ("cycle", "x -> z -> y -> x"),
    ),
    "empty-steps": Case(lambda n, a: {"name": n, "steps": []}, None, "steps", ("at least one",)),
    "missing-steps": Case(lambda n, a: {"name": n}, None, "steps", ("required",)),
    "template-syntax-error": Case(
        lambda n, a: {"name": n, "steps": [step("a", a), step("b", a, "Hello {{ input.name ")]},
        "b",
        "prompt",
        (),
    ),
    "unknown-workflow-field": Case(
        lambda n, a: {"name": n, "owner": "me", "steps": [step("a", a)]},
        None,
        "owner",
        ("not permitted",),
    ),
    "unknown-step-field": Case(
        lambda n, a: {"name": n, "steps": [step("a", a), step("b", a, retries=3)]},
        "b",
        "retries",
        ("not permitted",),
    ),
    "bad-step-id": Case(
        lambda n, a: {"name": n, "steps": [step("1 bad id", a)]},
        "1 bad id",
        "id",
        ("step id",),
    ),
    "yaml-syntax-error": Case(
        lambda n, a: f"name: {n}\nsteps:\n  - id: a\n    agent: {a}\n    prompt: [unclosed\n",
        None,
        "body",
        ("invalid YAML", "line"),
        content_type="application/yaml",
    ),
    "json-syntax-error": Case(
        lambda n, a: b'{"name": "x", "steps": [',
        None,
        "body",
        ("invalid JSON", "line"),
    ),
    "non-object-json": Case(lambda n, a: [{"name": n}], None, "body", ("object",)),
    "non-object-yaml": Case(
        lambda n, a: "- just\n- a list\n",
        None,
        "body",
        ("object",),
        content_type="application/yaml",
    ),
    "unsupported-content-type": Case(
        lambda n, a: f"name={n}",
        None,
        "body",
        ("content type",),
        content_type="text/plain",
    ),
}


@pytest.mark.parametrize("case_id", list(CASES))
def test_a_bad_workflow_is_422_naming_step_and_field(stack: Stack, case_id: str) -> None:
    case = CASES[case_id]
    with stack.client() as api:
        agent = make_agent(api, "http://127.0.0.1:9/v1")
        name = f"bad-{case_id}-{tag()}"
        body = case.build(name, agent.name)
        if isinstance(body, str):
            body = body.encode()
        elif not isinstance(body, bytes):
            body = json.dumps(body).encode()
        before = workflow_count(api)
        r = api.post("/workflows", content=body, headers={"Content-Type": case.content_type})
        assert r.status_code == 422, r.text
        detail = r.json()["detail"]
        assert isinstance(detail, list) and detail, detail
        matching = [e for e in detail if e["step"] == case.step and e["field"] == case.field]
        assert matching, detail
        error = matching[0]
        expected_loc = ["body", *(["steps", case.step] if case.step else []), case.field]
        assert error["loc"] == expected_loc
        for word in case.words:
            assert word in error["msg"], error
        assert workflow_count(api) == before
        assert api.get(f"/workflows/{name}").status_code == 404
        # A PUT of the same bad definition over a good workflow changes nothing either.
        good = {"name": f"good-{tag()}", "steps": [step("a", agent.name)]}
        created = api.post("/workflows", json=good)
        assert created.status_code == 201, created.text
        r = api.put(
            f"/workflows/{created.json()['id']}",
            content=body,
            headers={"Content-Type": case.content_type},
        )
        assert r.status_code == 422, r.text
        assert api.get(f"/workflows/{created.json()['id']}").json() == created.json()


def test_every_problem_is_reported_at_once(stack: Stack) -> None:
    with stack.client() as api:
        agent = make_agent(api, "http://127.0.0.1:9/v1")
        body = {
            "name": f"many-{tag()}",
            "steps": [
                step("a", "ghost"),
                step("b", agent.name, "{{ steps.zz.output }}", depends_on=["missing"]),
            ],
        }
        r = api.post("/workflows", json=body)
    assert r.status_code == 422
    found = {(e["step"], e["field"]) for e in r.json()["detail"]}
    assert {("a", "agent"), ("b", "depends_on"), ("b", "prompt")} <= found


def test_a_valid_yaml_workflow_is_stored(stack: Stack) -> None:
    with stack.client() as api:
        agent = make_agent(api, "http://127.0.0.1:9/v1")
        name = f"yaml-ok-{tag()}"
        doc = (
            f"name: {name}\ndescription: two steps\nsteps:\n"
            f"  - id: first\n    agent: {agent.name}\n    prompt: 'Hi {{{{ input.who }}}}'\n"
            f"  - id: second\n    agent: {agent.name}\n    depends_on: [first]\n"
            f"    prompt: 'Again: {{{{ steps.first.output }}}}'\n"
        )
        before = workflow_count(api)
        r = api.post("/workflows", content=doc, headers={"Content-Type": "application/yaml"})
        assert r.status_code == 201, r.text
        assert r.json()["version"] == 1 and r.json()["description"] == "two steps"
        assert [s["id"] for s in r.json()["steps"]] == ["first", "second"]
        assert workflow_count(api) == before + 1
        dup = api.post("/workflows", content=doc, headers={"Content-Type": "application/yaml"})
        assert dup.status_code == 409, dup.text
        assert workflow_count(api) == before + 1


# --- runs ---------------------------------------------------------------------------------


def run_count(api: httpx.Client) -> int:
    return int(api.get("/runs", params={"limit": 1}).json()["count"])


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"workflow": "no-such-workflow-x"}, ["body", "workflow"]),
        ({"workflow": ""}, ["body", "workflow"]),
        ({"workflow": "w", "input": [1, 2]}, ["body", "input"]),
        ({"workflow": "w", "input": "text"}, ["body", "input"]),
        ({"workflow": "w", "priority": 1}, ["body", "priority"]),
        ({}, ["body", "workflow"]),
    ],
    ids=["unknown-workflow", "empty-workflow", "list-input", "string-input", "extra", "missing"],
)
def test_a_bad_run_is_422_and_creates_nothing(
    stack: Stack, body: dict[str, Any], loc: list[str]
) -> None:
    with stack.client() as api:
        before = run_count(api)
        r = api.post("/runs", json=body)
        assert r.status_code == 422, r.text
        assert loc in [e["loc"] for e in r.json()["detail"]], r.json()
        assert run_count(api) == before


def test_unknown_run_is_404_and_a_bogus_status_filter_422(stack: Stack) -> None:
    missing = uuid.uuid4().hex
    with stack.client() as api:
        r = api.get(f"/runs/{missing}")
        assert r.status_code == 404 and missing in str(r.json()["detail"])
        r = api.get("/runs", params={"status": "bogus"})
        assert r.status_code == 422
        assert ["query", "status"] in [e["loc"] for e in r.json()["detail"]]
        for params in ({"limit": 0}, {"limit": 201}, {"offset": -1}):
            assert api.get("/runs", params=params).status_code == 422, params
        r = api.get("/runs", params={"workflow": f"no-such-{tag()}"})
        assert r.status_code == 200 and r.json() == {"data": [], "count": 0}


def test_runs_page_and_filter(stack: Stack, fake_llm: FakeLLM) -> None:
    with stack.client() as api:
        agent = make_agent(api, f"{fake_llm.url}/v1", model="page-model")
        name = f"tiny-{tag()}"
        wf = {"name": name, "steps": [step("only", agent.name, "n={{ input.n }}")]}
        assert api.post("/workflows", json=wf).status_code == 201
        ids = []
        for n in range(3):
            r = api.post("/runs", json={"workflow": name, "input": {"n": n}})
            assert r.status_code == 202, r.text
            ids.append(r.json()["id"])

        first = api.get("/runs", params={"workflow": name, "limit": 2}).json()
        assert first["count"] == 3 and len(first["data"]) == 2
        rest = api.get("/runs", params={"workflow": name, "limit": 2, "offset": 2}).json()
        assert rest["count"] == 3 and len(rest["data"]) == 1
        seen = [r["id"] for r in first["data"] + rest["data"]]
        assert sorted(seen) == sorted(ids)  # pages neither overlap nor skip
        assert all(r["workflow"] == name for r in first["data"] + rest["data"])
        # Newest first.
        created = [r["created_at"] for r in first["data"] + rest["data"]]
        assert created == sorted(created, reverse=True)

        runs = [wait_for_run(api, run_id) for run_id in ids]
        assert [r["status"] for r in runs] == ["succeeded"] * 3
        assert [r["steps"][0]["output"] for r in runs] == [f"[page-model] n={n}" for n in range(3)]
        done = api.get("/runs", params={"workflow": name, "status": "succeeded"}).json()
        assert done["count"] == 3 and sorted(r["id"] for r in done["data"]) == sorted(ids)
        failed = api.get("/runs", params={"workflow": name, "status": "failed"}).json()
        assert failed == {"data": [], "count": 0}
        queued = api.get("/runs", params={"workflow": name, "status": "queued"}).json()
        assert queued["count"] == 0


# --- agents and versions ------------------------------------------------------------------


def agent_count(api: httpx.Client) -> int:
    return int(api.get("/agents").json()["count"])


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"key_id": "0" * 32}, "key_id"),
        ({"temperature": 5}, "temperature"),
        ({"temperature": -0.1}, "temperature"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"model": "   "}, "model"),
        ({"name": "has/slash"}, "name"),
        ({"api_key": "sk-nope"}, "api_key"),
    ],
    ids=["unknown-key", "hot", "negative-temp", "zero-tokens", "blank-model", "bad-name", "extra"],
)
def test_a_bad_agent_is_422_naming_the_field(
    stack: Stack, change: dict[str, Any], field: str
) -> None:
    with stack.client() as api:
        good = make_agent(api, "http://127.0.0.1:9/v1")
        before = agent_count(api)
        body = {"name": f"bad-agent-{tag()}", "key_id": good.key_id, "model": "m", **change}
        r = api.post("/agents", json=body)
        assert r.status_code == 422, r.text
        assert any(e["loc"][-1] == field for e in r.json()["detail"]), r.json()
        if field == "key_id":
            assert change["key_id"] in str(r.json()["detail"])
        assert agent_count(api) == before
        if field in ("key_id", "temperature", "max_tokens", "model"):
            patched = api.patch(f"/agents/{good.id}", json=change)
            assert patched.status_code == 422, patched.text
            assert api.get(f"/agents/{good.id}").json()["model"] == "val-model"


def test_patching_an_agent_and_bumping_a_workflow_version(stack: Stack, fake_llm: FakeLLM) -> None:
    with stack.client() as api:
        agent = make_agent(api, f"{fake_llm.url}/v1", model="old-model")
        name = f"versions-{tag()}"
        v1 = {"name": name, "steps": [step("s", agent.name, "v1 {{ input.x }}")]}
        created = api.post("/workflows", json=v1)
        assert created.status_code == 201 and created.json()["version"] == 1
        first = api.post("/runs", json={"workflow": name, "input": {"x": "one"}}).json()
        first_run = wait_for_run(api, first["id"])

        r = api.patch(f"/agents/{agent.id}", json={"model": "new-model", "temperature": 0.5})
        assert r.status_code == 200, r.text
        assert r.json()["model"] == "new-model" and r.json()["temperature"] == 0.5
        assert r.json()["updated_at"] >= r.json()["created_at"]
        fetched = api.get(f"/agents/{agent.name}").json()
        assert fetched["model"] == "new-model" and fetched["provider"] == "openai"

        v2 = {"name": name, "steps": [step("s", agent.name, "v2 {{ input.x }}")]}
        r = api.put(f"/workflows/{created.json()['id']}", json=v2)
        assert r.status_code == 200, r.text
        assert r.json()["version"] == 2 and r.json()["id"] == created.json()["id"]
        assert api.get(f"/workflows/{name}").json()["version"] == 2
        second = api.post("/runs", json={"workflow": name, "input": {"x": "two"}}).json()
        second_run = wait_for_run(api, second["id"])

        first_again = api.get(f"/runs/{first['id']}").json()
    assert first_again["workflow_version"] == 1 and first_run["workflow_version"] == 1
    assert second_run["workflow_version"] == 2
    assert first_again["steps"][0]["output"] == "[old-model] v1 one"
    assert first_again["steps"][0]["model"] == "old-model"
    assert second_run["steps"][0]["output"] == "[new-model] v2 two"
    assert second_run["steps"][0]["model"] == "new-model"
    assert [c["model"] for c in fake_llm.calls() if c["path"].endswith("/chat/completions")] == [
        "old-model",
        "new-model",
    ]


def test_deleting_an_agent_a_workflow_uses_is_409(stack: Stack) -> None:
    with stack.client() as api:
        agent = make_agent(api, "http://127.0.0.1:9/v1")
        name = f"orphan-{tag()}"
        wf = {"name": name, "steps": [step("s", agent.name)]}
        assert api.post("/workflows", json=wf).status_code == 201
        r = api.delete(f"/agents/{agent.id}")
        assert r.status_code == 409 and name in str(r.json()["detail"])
