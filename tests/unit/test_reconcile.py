"""The reconciler finds steps the broker lost, and only those."""

from __future__ import annotations

from datetime import timedelta

from sqlmodel import select

from shared.db import session_scope
from shared.models import StepRun, StepStatus, utcnow
from shared.runs import create_run
from tests.factories import make_agent, make_key, make_workflow
from worker.reconcile import step_labels, stranded_step_ids


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
    found = {ids[i] for i in stranded_step_ids(requeue_after_seconds=300, in_broker=set())}
    assert found == {"a", "d"}
    # A stale queued step whose message is still in the broker is left alone.
    in_broker = {s for s, k in ids.items() if k == "a"}
    found = {ids[i] for i in stranded_step_ids(requeue_after_seconds=300, in_broker=in_broker)}
    assert found == {"d"}
    # Re-sent steps keep the names Flower showed the first time.
    by_key = {k: s for s, k in ids.items()}
    assert step_labels([by_key["a"], by_key["d"]]) == {
        by_key["a"]: "wf/a (w)",
        by_key["d"]: "wf/d (w)",
    }
    assert step_labels([]) == {}
