"""The step state machine in SQL: claims, successors exactly once, failure, retry."""

from __future__ import annotations

import pytest
from sqlmodel import select

from shared.db import session_scope, transaction
from shared.models import Run, RunStatus, StepRun, StepStatus
from shared.queues import DEFAULT_QUEUE, QueuedStep
from shared.runs import create_run
from tests.factories import make_agent, make_key, make_workflow
from worker import lifecycle

DIAMOND = [
    {"id": "a", "agent": "writer", "prompt": "A {{ input.x }}"},
    {"id": "b", "agent": "writer", "prompt": "B"},
    {
        "id": "c",
        "agent": "writer",
        "prompt": "{{ steps.a.output }} {{ steps.b.output }}",
        "depends_on": ["a", "b"],
    },
]


def _result(text: str, cost: int | None = 100) -> lifecycle.StepResult:
    return lifecycle.StepResult(
        output=text,
        prompt="p",
        finish_reason="stop",
        request_id="r",
        input_tokens=10,
        output_tokens=5,
        cached_tokens=2,
        cache_write_tokens=0,
        cost_nanos=cost,
        latency_ms=3,
    )


def _submit(steps: list[dict[str, object]]) -> tuple[str, dict[str, str]]:
    with session_scope() as session:
        key = make_key(session)
        make_agent(session, key, name="writer")
        workflow = make_workflow(session, name="wf", steps=steps)
        created = create_run(session, workflow=workflow.id, input={"x": 1})
        ids = {s.step_key: s.id for s in session.exec(select(StepRun)).all()}
        return created.run_id, ids


def _claim(step_id: str) -> lifecycle.Claim | None:
    with transaction() as db:
        return lifecycle.claim_step(db, step_id, host="h", default_timeout=30, lease_margin=30)


def test_only_steps_without_dependencies_start_queued(sqlite_db: str) -> None:
    _, ids = _submit(DIAMOND)
    with session_scope() as session:
        statuses = {s.step_key: s.status for s in session.exec(select(StepRun)).all()}
    assert statuses == {"a": "queued", "b": "queued", "c": "pending"}


def test_a_step_is_claimed_once(sqlite_db: str) -> None:
    _, ids = _submit(DIAMOND)
    first = _claim(ids["a"])
    assert first is not None and first.attempt == 1 and first.run_input == {"x": 1}
    assert _claim(ids["a"]) is None  # a second delivery of the same message does nothing
    assert _claim(ids["c"]) is None  # pending: its dependencies have not finished


def test_join_step_is_enqueued_exactly_once_and_sees_both_outputs(sqlite_db: str) -> None:
    run_id, ids = _submit(DIAMOND)
    claim_a, claim_b = _claim(ids["a"]), _claim(ids["b"])
    assert claim_a and claim_b
    with transaction() as db:
        assert lifecycle.complete_step(db, claim_a, _result("out-a"), {}) == lifecycle.NOTHING
    with transaction() as db:
        assert lifecycle.complete_step(db, claim_b, _result("out-b"), {}).ready == [
            QueuedStep(ids["c"], DEFAULT_QUEUE)
        ]
    # Completing b again (a duplicate worker that lost its lease) changes nothing.
    with transaction() as db:
        assert lifecycle.complete_step(db, claim_b, _result("again"), {}).ready == []
    claim_c = _claim(ids["c"])
    assert claim_c is not None
    assert claim_c.upstream_outputs == {"a": "out-a", "b": "out-b"}
    with transaction() as db:
        last = lifecycle.complete_step(db, claim_c, _result("out-c", cost=None), {})
        assert last.ready == [] and last.closed  # the last step closes the run
    with session_scope() as session:
        run = session.get_one(Run, run_id)
        assert run.status == RunStatus.succeeded and run.finished_at is not None
        assert (run.input_tokens, run.output_tokens, run.cached_tokens) == (30, 15, 6)
        assert run.cost_nanos == 200 and run.cost_incomplete is True


def test_failure_fails_the_run_naming_the_step_and_skips_the_rest(sqlite_db: str) -> None:
    run_id, ids = _submit(DIAMOND)
    claim_a = _claim(ids["a"])
    assert claim_a
    with transaction() as db:
        lifecycle.fail_step(db, claim_a, error="bad key", error_kind="AuthFailed", attempt_entry={})
    with session_scope() as session:
        run = session.get_one(Run, run_id)
        steps = {s.step_key: s.status for s in session.exec(select(StepRun)).all()}
    assert run.status == RunStatus.failed and run.failed_step == "a"
    assert run.error == "step 'a' failed: bad key"
    assert steps == {"a": "failed", "b": "skipped", "c": "skipped"}
    assert run.finished_at is not None


def test_retry_hands_the_step_back_not_before_its_delay(sqlite_db: str) -> None:
    _, ids = _submit(DIAMOND)
    claim = _claim(ids["a"])
    assert claim
    with transaction() as db:
        assert lifecycle.retry_step_later(
            db, claim, delay_seconds=30, attempt_entry={"attempt": 1}
        ).ready == [QueuedStep(claim.step_id, DEFAULT_QUEUE)]
    assert _claim(ids["a"]) is None  # not due yet
    with session_scope() as session:
        step = session.get_one(StepRun, ids["a"])
        assert step.status == StepStatus.queued and step.attempt_log == [{"attempt": 1}]
        step.not_before = None
    again = _claim(ids["a"])
    assert again is not None and again.attempt == 2


def test_expired_lease_can_be_taken_over_and_the_old_holder_cannot_write(sqlite_db: str) -> None:
    _, ids = _submit(DIAMOND)
    with transaction() as db:
        old = lifecycle.claim_step(db, ids["a"], host="dead", default_timeout=0, lease_margin=-1)
    assert old is not None
    new = _claim(ids["a"])
    assert new is not None and new.token != old.token
    with transaction() as db:
        assert lifecycle.complete_step(db, old, _result("stale"), {}).ready == []
    with session_scope() as session:
        assert session.get_one(StepRun, ids["a"]).status == StepStatus.running


def test_cancel_skips_waiting_steps_and_discards_a_running_steps_output(sqlite_db: str) -> None:
    run_id, ids = _submit(DIAMOND)
    running = _claim(ids["a"])
    assert running
    with transaction() as db:
        assert lifecycle.cancel_run(db, run_id) == lifecycle.NOTHING  # a step still runs
    assert _claim(ids["b"]) is None  # a queued step never reaches the provider
    with session_scope() as session:
        run = session.get_one(Run, run_id)
        assert run.status == RunStatus.cancelled and run.finished_at is None  # a is running
    with transaction() as db:
        assert lifecycle.complete_step(db, running, _result("late"), {}).ready == []
    with session_scope() as session:
        run = session.get_one(Run, run_id)
        steps = {s.step_key: s for s in session.exec(select(StepRun)).all()}
    assert run.status == RunStatus.cancelled and run.finished_at is not None
    assert {k: s.status for k, s in steps.items()} == {
        "a": "cancelled",
        "b": "skipped",
        "c": "skipped",
    }
    assert steps["a"].output is None and steps["a"].input_tokens == 10  # paid: usage kept
    assert run.cost_nanos == 100
    with transaction() as db, pytest.raises(lifecycle.RunAlreadyFinished):
        lifecycle.cancel_run(db, run_id)


def test_a_retry_of_a_cancelled_run_is_skipped_not_requeued(sqlite_db: str) -> None:
    run_id, ids = _submit(DIAMOND)
    claim = _claim(ids["a"])
    assert claim
    with transaction() as db:
        lifecycle.cancel_run(db, run_id)
    with transaction() as db:
        assert not lifecycle.retry_step_later(db, claim, delay_seconds=1, attempt_entry={}).ready
    with session_scope() as session:
        assert session.get_one(StepRun, ids["a"]).status == StepStatus.skipped
        assert session.get_one(Run, run_id).finished_at is not None


def test_steps_are_labelled_for_flower_from_names_already_at_hand(sqlite_db: str) -> None:
    with session_scope() as session:
        key = make_key(session)
        make_agent(session, key, name="writer")
        workflow = make_workflow(session, name="wf", steps=DIAMOND)
        created = create_run(session, workflow=workflow.id, input={"x": 1})
        ids = {s.step_key: s.id for s in session.exec(select(StepRun)).all()}
    assert {(s.step_id, s.label) for s in created.ready_steps} == {
        (ids["a"], "wf/a (writer)"),
        (ids["b"], "wf/b (writer)"),
    }
    claim_a, claim_b = _claim(ids["a"]), _claim(ids["b"])
    assert claim_a and claim_b and claim_a.queued.label == "wf/a (writer)"
    with transaction() as db:
        assert lifecycle.complete_step(db, claim_a, _result("out-a"), {}).ready == []
    with transaction() as db:
        advance = lifecycle.complete_step(db, claim_b, _result("out-b"), {})
    assert [(s.step_id, s.label) for s in advance.ready] == [(ids["c"], "wf/c (writer)")]
