"""Queue names, which queue a step resolves to, and that every enqueue uses the step's
own queue: at submission, for successors, for retries."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis
from pydantic import ValidationError
from sqlmodel import select

from api.agents.schemas import AgentCreate, AgentUpdate
from api.keys.schemas import KeyCreate, KeyUpdate
from shared.config import get_settings
from shared.db import session_scope, transaction
from shared.embedded_redis import start_redis
from shared.models import Agent, StepRun
from shared.providers import ChatRequest, Completion, Overloaded
from shared.queues import (
    CONTROL_QUEUE,
    DEFAULT_QUEUE,
    QueuedStep,
    check_queue_name,
    resolve_queue,
)
from shared.runs import create_run
from tests.factories import make_agent, make_key, make_workflow
from worker import execute, lifecycle, limits
from worker.broker_scan import step_ids_in_broker
from worker.celery_app import reset_celery, worker_queues
from worker.dispatch import enqueue_steps


@pytest.mark.parametrize("name", ["local-gpu", "gpu.eu_1", "a", "0", "x" * 64, " spaced "])
def test_good_queue_names_are_kept_trimmed(name: str) -> None:
    assert check_queue_name(name) == name.strip()


@pytest.mark.parametrize(
    "name", ["", "  ", "Local-GPU", "local gpu", "a,b", "-gpu", ".gpu", "x" * 65, "gpu\x00"]
)
def test_bad_queue_names_are_refused_with_the_rule(name: str) -> None:
    with pytest.raises(ValueError, match="lower-case letters, digits"):
        check_queue_name(name)


def test_the_control_queue_is_reserved() -> None:
    with pytest.raises(ValueError, match="reserved for ownkey's periodic tasks"):
        check_queue_name(CONTROL_QUEUE)


def test_schemas_check_the_queue_and_null_clears_it() -> None:
    agent = AgentCreate(name="a", key_id="k", model="m", queue=" local-gpu ")
    assert agent.queue == "local-gpu"
    assert AgentUpdate.model_validate({"queue": None}).model_dump(exclude_unset=True) == {
        "queue": None
    }
    with pytest.raises(ValidationError) as refused:
        KeyCreate(provider="ollama", name="k", queue="ownkey.control")
    assert refused.value.errors()[0]["loc"] == ("queue",)
    with pytest.raises(ValidationError):
        KeyUpdate.model_validate({"queue": "GPU"})


def test_the_agents_queue_wins_over_its_keys() -> None:
    assert resolve_queue("agent-q", "key-q") == "agent-q"
    assert resolve_queue(None, "key-q") == "key-q"
    assert resolve_queue(None, None) == DEFAULT_QUEUE


def test_a_worker_always_consumes_the_control_queue() -> None:
    assert worker_queues("local-gpu") == f"local-gpu,{CONTROL_QUEUE}"
    assert worker_queues(DEFAULT_QUEUE) == f"{DEFAULT_QUEUE},{CONTROL_QUEUE}"
    assert worker_queues(f"a,{CONTROL_QUEUE}") == f"a,{CONTROL_QUEUE}"


CHAIN = [
    {"id": "plain", "agent": "plain", "prompt": "x"},
    {"id": "by-key", "agent": "by-key", "prompt": "x", "depends_on": ["plain"]},
    {"id": "own", "agent": "own", "prompt": "x", "depends_on": ["plain"]},
]


def _submit() -> tuple[str, dict[str, StepRun]]:
    with session_scope() as session:
        plain = make_key(session, name="plain")
        gpu = make_key(session, name="gpu", queue="key-q")
        make_agent(session, plain, name="plain")
        make_agent(session, gpu, name="by-key")
        make_agent(session, gpu, name="own", queue="agent-q")
        workflow = make_workflow(session, name="wf", steps=CHAIN)
        created = create_run(session, workflow=workflow.id, input={})
    with session_scope() as session:
        steps = {s.step_key: s for s in session.exec(select(StepRun)).all()}
        for step in steps.values():
            session.expunge(step)
    assert created.ready_steps == [QueuedStep(steps["plain"].id, DEFAULT_QUEUE)]
    return created.run_id, steps


def test_each_step_keeps_the_queue_resolved_when_its_run_was_planned(sqlite_db: str) -> None:
    _, steps = _submit()
    assert {k: s.queue for k, s in steps.items()} == {
        "plain": DEFAULT_QUEUE,
        "by-key": "key-q",
        "own": "agent-q",
    }
    # A later change to the agent moves later runs, not the steps already planned.
    with session_scope() as session:
        own = session.exec(select(Agent).where(Agent.name == "own")).one()
        own.queue = "moved"
        session.add(own)
    with transaction() as db:
        claim = lifecycle.claim_step(
            db, steps["plain"].id, host="h", default_timeout=10, lease_margin=5
        )
        assert claim is not None and claim.queue == DEFAULT_QUEUE
        result = lifecycle.StepResult("out", "p", None, None, 1, 1, 0, 0, 0, 1)
        advance = lifecycle.complete_step(db, claim, result, {})
    # Successors come back with their own queues, ready to be enqueued there.
    assert sorted(advance.ready) == sorted(
        [QueuedStep(steps["by-key"].id, "key-q"), QueuedStep(steps["own"].id, "agent-q")]
    )


def test_a_retry_goes_back_to_the_steps_queue(sqlite_db: str) -> None:
    _, steps = _submit()
    with session_scope() as session:
        step = session.get_one(StepRun, steps["plain"].id)
        step.queue = "retry-q"  # as if planned for another queue
        session.add(step)
    with transaction() as db:
        claim = lifecycle.claim_step(
            db, steps["plain"].id, host="h", default_timeout=10, lease_margin=5
        )
        assert claim is not None
        advance = lifecycle.retry_step_later(db, claim, delay_seconds=5, attempt_entry=None)
    assert advance.ready == [QueuedStep(steps["plain"].id, "retry-q")]


def test_enqueue_sends_each_step_to_its_own_queue(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = start_redis(tmp_path)
    monkeypatch.setenv("OWNKEY_REDIS_URL", server.url)
    get_settings.cache_clear()
    reset_celery()
    client = redis.Redis.from_url(server.url)
    try:
        sent = enqueue_steps([QueuedStep("a" * 32, DEFAULT_QUEUE), QueuedStep("b" * 32, "gpu")])
        assert sent == 2
        assert step_ids_in_broker(client, [DEFAULT_QUEUE]) == {"a" * 32}
        assert step_ids_in_broker(client, ["gpu"]) == {"b" * 32}
    finally:
        client.close()
        reset_celery()
        get_settings.cache_clear()
        server.stop()


class FlakyProvider:
    """Overloaded on the first call, then an answer."""

    def __init__(self) -> None:
        self.calls = 0

    def complete(self, request: ChatRequest) -> Completion:
        self.calls += 1
        if self.calls == 1:
            raise Overloaded("busy", status_code=529)
        return Completion(
            text="ok",
            finish_reason="stop",
            input_tokens=1,
            output_tokens=1,
            cached_input_tokens=0,
            cache_write_tokens=0,
            request_id="r",
            latency_ms=1,
            usage_reported=True,
        )


def test_the_worker_enqueues_retries_waits_and_successors_on_their_queues(
    sqlite_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """execute_step with the provider, rate limiter and broker faked (SQL is real)."""
    provider = FlakyProvider()
    later: list[tuple[QueuedStep, float]] = []
    now: list[QueuedStep] = []
    slot_waits = [2.5]  # the first admission must wait for its rate-limit slot
    monkeypatch.setattr(execute, "make_provider", lambda *a, **k: provider)
    monkeypatch.setattr(execute, "price_lookup", lambda *_: None)
    monkeypatch.setattr(limits, "wait_for_slot", lambda *_: slot_waits.pop() if slot_waits else 0)
    monkeypatch.setattr(limits, "settle", lambda *_: None)
    monkeypatch.setattr(
        execute, "enqueue_step_later", lambda s, countdown: later.append((s, countdown))
    )
    monkeypatch.setattr(execute, "enqueue_steps", lambda steps: now.extend(steps))
    _, steps = _submit()
    with session_scope() as session:
        first = session.get_one(StepRun, steps["plain"].id)
        first.queue = "first-q"
        session.add(first)

    def run_again() -> None:
        with session_scope() as session:  # the countdown is over
            step = session.get_one(StepRun, steps["plain"].id)
            step.not_before = None
            session.add(step)
        execute.execute_step(steps["plain"].id, node="gpu@box")

    execute.execute_step(steps["plain"].id, node="gpu@box")  # waits for its slot
    run_again()  # the provider is overloaded: a retry
    assert [(s, c > 0) for s, c in later] == [(QueuedStep(steps["plain"].id, "first-q"), True)] * 2
    run_again()  # succeeds: its successors go to their own queues
    assert sorted(now) == sorted(
        [QueuedStep(steps["by-key"].id, "key-q"), QueuedStep(steps["own"].id, "agent-q")]
    )
    with session_scope() as session:
        done = session.get_one(StepRun, steps["plain"].id)
        assert (done.status, done.worker_host) == ("succeeded", "gpu@box")
