"""The reconciler finds steps the broker lost, and only those."""

from __future__ import annotations

import json
from datetime import timedelta

import fakeredis
import pytest
from sqlmodel import select

from shared.config import get_settings
from shared.db import session_scope
from shared.models import StepRun, StepStatus, utcnow
from shared.queues import DEFAULT_QUEUE, QueuedStep
from shared.runs import create_run
from tests.factories import make_agent, make_key, make_workflow
from worker import reconcile as reconcile_module
from worker.celery_app import STEP_TASK
from worker.reconcile import stranded_steps, with_labels


def nothing(queue: str) -> set[str]:
    return set()


def test_only_stale_queued_and_expired_running_steps_are_stranded(sqlite_db: str) -> None:
    steps = [{"id": name, "agent": "w", "prompt": "x"} for name in "abcdef"]
    with session_scope() as session:
        key = make_key(session)
        make_agent(session, key, name="w")
        create_run(session, workflow=make_workflow(session, name="wf", steps=steps).id, input={})
    now = utcnow()
    old = now - timedelta(seconds=600)
    with session_scope() as session:
        rows = {s.step_key: s for s in session.exec(select(StepRun)).all()}
        rows["a"].queued_at = old  # queued long ago, message lost: stranded
        rows["b"].queued_at = now  # queued just now: its message is on its way
        rows["c"].queued_at, rows["c"].not_before = (
            old,
            now + timedelta(seconds=60),
        )  # retry not due
        rows["d"].status, rows["d"].lease_expires_at = (
            StepStatus.running,
            now - timedelta(seconds=1),
        )
        rows["e"].status, rows["e"].lease_expires_at = (
            StepStatus.running,
            now + timedelta(seconds=60),
        )
        rows["f"].status, rows["f"].queued_at = StepStatus.succeeded, old
        ids = {s.id: k for k, s in rows.items()}
    found = {ids[s.step_id] for s in stranded_steps(requeue_after_seconds=300, in_broker=nothing)}
    assert found == {"a", "d"}
    # A stale queued step whose message is still in the broker is left alone.
    in_broker = {s for s, k in ids.items() if k == "a"}
    found = {
        ids[s.step_id]
        for s in stranded_steps(requeue_after_seconds=300, in_broker=lambda queue: in_broker)
    }
    assert found == {"d"}
    # Re-sent steps keep the names Flower showed the first time.
    by_key = {k: s for s, k in ids.items()}
    plain = [QueuedStep(by_key["a"], DEFAULT_QUEUE), QueuedStep(by_key["d"], DEFAULT_QUEUE)]
    assert [s.label for s in with_labels(plain)] == ["wf/a (w)", "wf/d (w)"]
    assert with_labels([]) == []


def _message(step_id: str) -> str:
    """A step message as Celery's Redis transport keeps it in a queue's list."""
    return json.dumps({"headers": {"task": STEP_TASK, "argsrepr": f"('{step_id}',)"}})


def test_a_lost_message_is_sent_again_on_the_steps_own_queue(
    sqlite_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    steps = [
        {"id": name, "agent": agent, "prompt": "x"}
        for name, agent in [("lost", "gpu"), ("kept", "gpu"), ("plain", "cpu")]
    ]
    with session_scope() as session:
        key = make_key(session)
        make_agent(session, key, name="gpu", queue="local-gpu")
        make_agent(session, key, name="cpu")
        create_run(session, workflow=make_workflow(session, name="wf", steps=steps).id, input={})
    with session_scope() as session:
        rows = {s.step_key: s for s in session.exec(select(StepRun)).all()}
        for row in rows.values():
            row.queued_at = utcnow() - timedelta(seconds=600)
        ids = {k: s.id for k, s in rows.items()}
    broker = fakeredis.FakeRedis()
    broker.rpush("local-gpu", _message(ids["kept"]))  # still waiting for a GPU worker
    broker.rpush("ownkey", _message(ids["lost"]))  # on the wrong queue: does not count
    sent: list[QueuedStep] = []
    monkeypatch.setenv("OWNKEY_REDIS_URL", "redis://fake")
    get_settings.cache_clear()
    monkeypatch.setattr(reconcile_module.redis.Redis, "from_url", lambda url: broker)
    monkeypatch.setattr(
        reconcile_module, "enqueue_steps", lambda steps: sent.extend(steps) or len(sent)
    )
    assert reconcile_module.reconcile() == 2
    assert sorted(sent) == sorted(
        [QueuedStep(ids["lost"], "local-gpu"), QueuedStep(ids["plain"], DEFAULT_QUEUE)]
    )
