"""`Idempotency-Key` on POST /runs: one key, one run, even when the requests race."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, text
from sqlmodel import Session

from shared.migrate import upgrade_database
from shared.models import Agent, ProviderKey, Workflow, WorkflowVersion
from shared.runs import IdempotencyKeyReused, create_run
from tests.integration.conftest import postgres_url
from tests.integration.test_end_to_end import wait_for_run
from tests.processes import FakeLLM, Stack


def make_workflow(api: httpx.Client, fake_llm: FakeLLM) -> tuple[str, str]:
    """A one-step workflow on fake-llm; returns (workflow name, model name)."""
    tag = uuid.uuid4().hex[:8]
    model = f"idem-{tag}"
    key = api.post(
        "/keys", json={"provider": "ollama", "name": f"idem-{tag}", "base_url": fake_llm.url}
    )
    assert key.status_code == 201, key.text
    agent = api.post(
        "/agents", json={"name": f"idem-{tag}", "key_id": key.json()["id"], "model": model}
    )
    assert agent.status_code == 201, agent.text
    workflow = api.post(
        "/workflows",
        json={
            "name": f"idem-{tag}",
            "steps": [{"id": "only", "agent": f"idem-{tag}", "prompt": "{{ input.q }}"}],
        },
    )
    assert workflow.status_code == 201, workflow.text
    return f"idem-{tag}", model


def runs_with_key(stack: Stack, key: str) -> list[str]:
    engine = create_engine(stack.env["OWNKEY_DATABASE_URL"])
    try:
        with engine.connect() as db:
            rows = db.execute(
                text("SELECT id FROM runs WHERE idempotency_key = :k"), {"k": key}
            ).scalars()
            return list(rows)
    finally:
        engine.dispose()


def run_count(stack: Stack, workflow: str) -> int:
    engine = create_engine(stack.env["OWNKEY_DATABASE_URL"])
    try:
        with engine.connect() as db:
            return int(
                db.execute(
                    text(
                        "SELECT count(*) FROM runs r JOIN workflows w ON w.id = r.workflow_id"
                        " WHERE w.name = :n"
                    ),
                    {"n": workflow},
                ).scalar_one()
            )
    finally:
        engine.dispose()


def model_calls(fake_llm: FakeLLM, model: str) -> int:
    return sum(1 for call in fake_llm.calls() if call.get("model") == model)


def test_the_same_key_twice_returns_the_same_run_and_runs_it_once(
    stack: Stack, fake_llm: FakeLLM
) -> None:
    key = f"key-{uuid.uuid4()}"
    with stack.client() as api:
        workflow, model = make_workflow(api, fake_llm)
        body = {"workflow": workflow, "input": {"q": "hello"}}
        first = api.post("/runs", json=body, headers={"Idempotency-Key": key})
        assert first.status_code == 202, first.text
        assert "idempotent-replayed" not in first.headers
        run = wait_for_run(api, first.json()["id"])
        assert run["status"] == "succeeded"

        again = api.post("/runs", json=body, headers={"Idempotency-Key": key})
        assert again.status_code == 202, again.text
        assert again.json() == {"id": first.json()["id"], "status": "succeeded"}
        assert again.headers["idempotent-replayed"] == "true"
        time.sleep(0.5)  # a wrongly re-enqueued step would have reached fake-llm by now
    assert runs_with_key(stack, key) == [first.json()["id"]]
    assert run_count(stack, workflow) == 1
    assert model_calls(fake_llm, model) == 1


def test_ten_concurrent_requests_with_one_key_make_exactly_one_run(
    stack: Stack, fake_llm: FakeLLM
) -> None:
    key = f"race-{uuid.uuid4()}"
    with stack.client() as api:
        workflow, _ = make_workflow(api, fake_llm)
    body = {"workflow": workflow, "input": {"q": "race"}}
    start = threading.Barrier(10)
    answers: list[httpx.Response] = []
    lock = threading.Lock()

    def submit() -> None:
        with stack.client() as client:
            start.wait()
            response = client.post("/runs", json=body, headers={"Idempotency-Key": key})
        with lock:
            answers.append(response)

    threads = [threading.Thread(target=submit) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert [r.status_code for r in answers] == [202] * 10, [r.text for r in answers]
    ids = {r.json()["id"] for r in answers}
    assert len(ids) == 1
    assert runs_with_key(stack, key) == list(ids)
    assert run_count(stack, workflow) == 1
    replayed = [r for r in answers if r.headers.get("idempotent-replayed") == "true"]
    assert len(replayed) == 9


def test_the_same_key_with_a_different_body_is_422_and_creates_nothing(
    stack: Stack, fake_llm: FakeLLM
) -> None:
    key = f"reuse-{uuid.uuid4()}"
    with stack.client() as api:
        workflow, _ = make_workflow(api, fake_llm)
        first = api.post(
            "/runs",
            json={"workflow": workflow, "input": {"q": "a"}},
            headers={"Idempotency-Key": key},
        )
        assert first.status_code == 202, first.text
        other = api.post(
            "/runs",
            json={"workflow": workflow, "input": {"q": "b"}},
            headers={"Idempotency-Key": key},
        )
        assert other.status_code == 422, other.text
        detail = other.json()["detail"][0]
        assert detail["loc"] == ["header", "Idempotency-Key"]
        assert "different request" in detail["msg"] and first.json()["id"] in detail["msg"]
        # key order inside the input is not a different request
        same = api.post(
            "/runs",
            json={"input": {"q": "a"}, "workflow": workflow},
            headers={"Idempotency-Key": key},
        )
        assert same.status_code == 202 and same.json()["id"] == first.json()["id"]
    assert run_count(stack, workflow) == 1


def test_without_the_header_every_request_is_a_new_run(stack: Stack, fake_llm: FakeLLM) -> None:
    with stack.client() as api:
        workflow, _ = make_workflow(api, fake_llm)
        body = {"workflow": workflow, "input": {"q": "x"}}
        ids = {api.post("/runs", json=body).json()["id"] for _ in range(3)}
        # distinct keys are distinct runs too
        ids |= {
            api.post("/runs", json=body, headers={"Idempotency-Key": str(uuid.uuid4())}).json()[
                "id"
            ]
            for _ in range(2)
        }
    assert len(ids) == 5
    assert run_count(stack, workflow) == 5


@pytest.mark.parametrize("value", ["k" * 256, ""], ids=["too-long", "empty"])
def test_a_bad_key_is_422_naming_the_header_and_creates_nothing(
    stack: Stack, fake_llm: FakeLLM, value: str
) -> None:
    with stack.client() as api:
        workflow, _ = make_workflow(api, fake_llm)
        r = api.post("/runs", json={"workflow": workflow}, headers={"Idempotency-Key": value})
        assert r.status_code == 422, r.text
        assert r.json()["detail"][0]["loc"] == ["header", "Idempotency-Key"]
        longest = api.post(
            "/runs",
            json={"workflow": workflow},
            headers={"Idempotency-Key": uuid.uuid4().hex.ljust(255, "k")},
        )
        assert longest.status_code == 202, longest.text
    assert run_count(stack, workflow) == 1


# The race itself, made to happen for certain: PostgreSQL makes the second insert wait
# for the first transaction, then refuse it; the savepoint turns that into a replay.


@pytest.fixture
def pg_session_factory() -> Iterator[Any]:
    databases = postgres_url()
    url = next(databases)
    upgrade_database(url)
    engine = create_engine(url)
    try:
        yield lambda: Session(engine, expire_on_commit=False)
    finally:
        engine.dispose()
        from shared.db import engine_for

        engine_for(url).dispose()
        next(databases, None)


def test_a_racing_insert_with_the_same_key_becomes_a_replay(pg_session_factory: Any) -> None:
    with pg_session_factory() as session:
        key = ProviderKey(provider="ollama", name="k", base_url="http://localhost:11434")
        agent = Agent(name="a", key_id=key.id, model="m")
        workflow = Workflow(name="w")
        version = WorkflowVersion(
            workflow_id=workflow.id,
            version=1,
            definition={"steps": [{"id": "s", "agent": "a", "prompt": "p"}]},
        )
        session.add(key)
        session.flush()
        session.add_all([agent, workflow])
        session.flush()
        session.add(version)
        session.commit()

    first = pg_session_factory()
    first_run = create_run(first, workflow="w", input={"x": 1}, idempotency_key="race")
    assert not first_run.replayed  # inserted, not yet committed

    second_result: list[Any] = []

    def second() -> None:
        with pg_session_factory() as session:
            try:
                second_result.append(
                    create_run(session, workflow="w", input={"x": 1}, idempotency_key="race")
                )
                session.commit()
            except Exception as exc:  # pragma: no cover - reported below
                second_result.append(exc)

    thread = threading.Thread(target=second)
    thread.start()
    time.sleep(0.5)
    assert thread.is_alive(), "the second insert should wait on the unique index"
    first.commit()
    first.close()
    thread.join(timeout=10)
    (result,) = second_result
    assert not isinstance(result, Exception), result
    assert result.replayed and result.run_id == first_run.run_id and result.ready_steps == []

    with pg_session_factory() as session:
        with pytest.raises(IdempotencyKeyReused):
            create_run(session, workflow="w", input={"x": 2}, idempotency_key="race")
        count = session.execute(text("SELECT count(*) FROM runs")).scalar_one()
        steps = session.execute(text("SELECT count(*) FROM step_runs")).scalar_one()
    assert (count, steps) == (1, 1)
