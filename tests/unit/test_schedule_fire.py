"""The schedules tick on SQLite, called directly: each fire time once, the misfire
policies after downtime, a broken workflow recorded without stopping the others, and the
dataset path up to the batch."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import delete, func
from sqlmodel import Session, col, select

from scheduler import fire as fire_module
from scheduler.cron import CronSchedule
from scheduler.fire import fire_due_schedules
from scheduler.misfire import misfire_grace, plan_fire
from shared import batches
from shared.automation_models import Batch, MisfirePolicy, Schedule, ScheduleFire
from shared.db import read_session, session_scope
from shared.models import Agent, Run, StepRun
from shared.queues import QueuedStep
from tests.factories import make_agent, make_key, make_workflow

TEN = datetime(2030, 1, 7, 10, 0, tzinfo=UTC)  # a fire time of every hourly cron


@pytest.fixture
def enqueued(monkeypatch: pytest.MonkeyPatch) -> list[list[QueuedStep]]:
    """What the tick sends to the broker, and proof that it sends only committed steps."""
    sent: list[list[QueuedStep]] = []

    def enqueue_steps(steps: list[QueuedStep]) -> int:
        step_ids = [s.step_id for s in steps]
        with read_session() as session:
            visible = session.exec(select(StepRun.id).where(col(StepRun.id).in_(step_ids))).all()
        assert sorted(visible) == sorted(step_ids)
        assert all(s.label for s in steps)  # each step is named for Flower
        sent.append(list(steps))
        return len(steps)

    monkeypatch.setattr(fire_module, "enqueue_steps", enqueue_steps)
    return sent


def make_schedule(
    session: Session,
    *,
    name: str,
    workflow_id: str,
    next_fire_at: datetime | None = TEN,
    cron: str = "0 * * * *",
    **fields: Any,
) -> Schedule:
    schedule = Schedule(
        name=name,
        workflow_id=workflow_id,
        cron=cron,
        next_fire_at=next_fire_at,
        **({"input": {"topic": name}} | fields),
    )
    session.add(schedule)
    session.flush()
    return schedule


def workflow_id(session: Session, name: str = "wf", agent: str = "a") -> str:
    key = make_key(session, name=f"key-{name}")
    make_agent(session, key, name=agent)
    steps = [{"id": "s", "agent": agent, "prompt": "Hi {{ input.topic }}"}]
    return make_workflow(session, name=name, steps=steps).id


def fires_of(schedule_id: str) -> list[ScheduleFire]:
    with read_session() as session:
        return list(
            session.exec(
                select(ScheduleFire)
                .where(ScheduleFire.schedule_id == schedule_id)
                .order_by(ScheduleFire.fire_time)
            ).all()
        )


def reload(schedule_id: str) -> Schedule:
    with read_session() as session:
        schedule = session.get(Schedule, schedule_id)
        assert schedule is not None
        return schedule


def run_count() -> int:
    with read_session() as session:
        return int(session.execute(select(func.count()).select_from(Run)).scalar_one())


def test_a_due_schedule_fires_once_and_its_steps_go_out_after_the_commit(
    sqlite_db: str, enqueued: list[list[QueuedStep]]
) -> None:
    with session_scope() as session:
        schedule = make_schedule(session, name="daily", workflow_id=workflow_id(session))
    fired = fire_due_schedules(now=TEN + timedelta(seconds=20))
    assert [(f.schedule_id, f.fire_time, f.error) for f in fired] == [(schedule.id, TEN, None)]
    [fire] = fires_of(schedule.id)
    assert fire.run_id == fired[0].run_id and fire.missed == [] and fire.error is None
    with read_session() as session:
        run = session.get(Run, fire.run_id)
        assert run is not None and run.input == {"topic": "daily"}
    assert enqueued == [fired[0].ready_steps] and len(enqueued[0]) == 1
    after = reload(schedule.id)
    assert after.next_fire_at == TEN + timedelta(hours=1) and after.last_fire_at == TEN
    # The same tick again, or a late one from a second beat: nothing more is due.
    assert fire_due_schedules(now=TEN + timedelta(seconds=25)) == []
    assert run_count() == 1 and len(fires_of(schedule.id)) == 1


def test_a_fire_time_another_tick_recorded_starts_nothing(
    sqlite_db: str, enqueued: list[list[QueuedStep]]
) -> None:
    """The unique (schedule, fire time) is the guarantee, even if the schedule row still
    says the time is due (as a tick that read it before the other's commit would see)."""
    with session_scope() as session:
        schedule = make_schedule(session, name="dup", workflow_id=workflow_id(session))
        session.add(ScheduleFire(schedule_id=schedule.id, fire_time=TEN))
    assert fire_due_schedules(now=TEN + timedelta(seconds=1)) == []
    assert run_count() == 0 and enqueued == []
    assert len(fires_of(schedule.id)) == 1
    assert reload(schedule.id).next_fire_at == TEN  # rolled back: the other tick moves it


def test_concurrent_ticks_fire_each_schedule_once(
    sqlite_db: str, enqueued: list[list[QueuedStep]]
) -> None:
    with session_scope() as session:
        wf = workflow_id(session)
        ids = [make_schedule(session, name=f"s{i}", workflow_id=wf).id for i in range(12)]
    barrier = threading.Barrier(4)
    results: list[int] = []

    def tick() -> None:
        barrier.wait()
        results.append(len(fire_due_schedules(now=TEN + timedelta(seconds=3))))

    threads = [threading.Thread(target=tick) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(results) == 12 and run_count() == 12
    assert all(len(fires_of(i)) == 1 for i in ids)
    assert sum(len(batch) for batch in enqueued) == 12


def test_skip_drops_the_fire_times_of_a_downtime(
    sqlite_db: str, enqueued: list[list[QueuedStep]]
) -> None:
    with session_scope() as session:
        schedule = make_schedule(
            session, name="skipper", workflow_id=workflow_id(session), misfire_policy="skip"
        )
    # Beat was down from 09:59 to 15:20: five fire times passed, the last 20 minutes ago.
    assert fire_due_schedules(now=TEN + timedelta(hours=5, minutes=20)) == []
    assert fires_of(schedule.id) == [] and run_count() == 0
    assert reload(schedule.id).next_fire_at == TEN + timedelta(hours=6)


def test_catch_up_runs_once_and_records_the_missed_times(
    sqlite_db: str, enqueued: list[list[QueuedStep]]
) -> None:
    with session_scope() as session:
        schedule = make_schedule(
            session,
            name="catcher",
            workflow_id=workflow_id(session),
            misfire_policy=MisfirePolicy.catch_up,
        )
    [fired] = fire_due_schedules(now=TEN + timedelta(hours=5, minutes=20))
    assert fired.fire_time == TEN + timedelta(hours=5) and fired.run_id is not None
    [fire] = fires_of(schedule.id)
    assert fire.missed == [(TEN + timedelta(hours=h)).isoformat() for h in range(5)]
    assert run_count() == 1
    assert reload(schedule.id).next_fire_at == TEN + timedelta(hours=6)


def test_a_fire_whose_run_cannot_start_is_recorded_and_the_others_still_fire(
    sqlite_db: str, enqueued: list[list[QueuedStep]]
) -> None:
    with session_scope() as session:
        broken = make_schedule(
            session, name="broken", workflow_id=workflow_id(session, "wf-gone", "gone")
        )
        fine = make_schedule(session, name="fine", workflow_id=workflow_id(session))
    with session_scope() as session:
        session.execute(delete(Agent).where(Agent.name == "gone"))
    fired = {f.schedule_id: f for f in fire_due_schedules(now=TEN + timedelta(seconds=5))}
    assert fired[fine.id].run_id is not None and fired[fine.id].error is None
    [fire] = fires_of(broken.id)
    assert fire.run_id is None and fire.error is not None and "'gone'" in fire.error
    assert "no longer exists" in fire.error
    assert run_count() == 1 and enqueued == [fired[fine.id].ready_steps]
    # It moved on: the next hour is tried again, not this one forever.
    assert reload(broken.id).next_fire_at == TEN + timedelta(hours=1)


def test_a_dataset_schedule_records_its_batch_and_releases_it_after_the_commit(
    sqlite_db: str, enqueued: list[list[QueuedStep]], monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[dict[str, Any]] = []
    released: list[tuple[str, str | None]] = []

    def create_batch(session: Session, **kwargs: Any) -> str:
        calls.append(kwargs)
        batch = Batch(workflow_id=kwargs["workflow"], total=len(kwargs["items"]))
        session.add(batch)
        session.flush()
        return batch.id

    def release_waiting(batch_id: str) -> int:
        # Called after the commit: the fire row naming the batch is visible to others.
        with read_session() as session:
            fire = session.exec(
                select(ScheduleFire).where(ScheduleFire.batch_id == batch_id)
            ).first()
        released.append((batch_id, fire.schedule_id if fire else None))
        return 2

    monkeypatch.setattr(batches, "create_batch", create_batch)
    monkeypatch.setattr(batches, "release_waiting", release_waiting)
    dataset = [{"topic": "a"}, {"topic": "b"}]
    with session_scope() as session:
        wf = workflow_id(session)
        schedule = make_schedule(
            session, name="nightly", workflow_id=wf, input=None, dataset=dataset, max_in_flight=3
        )
    [fired] = fire_due_schedules(now=TEN + timedelta(seconds=2))
    assert fired.batch_id is not None and fired.run_id is None and fired.error is None
    assert calls == [
        {
            "workflow": wf,
            "items": dataset,
            "max_in_flight": 3,
            "name": f"nightly {TEN.isoformat()}",
            "schedule_id": schedule.id,
        }
    ]
    [fire] = fires_of(schedule.id)
    assert fire.batch_id == fired.batch_id
    assert released == [(fired.batch_id, schedule.id)]
    assert run_count() == 0 and enqueued == []


def test_a_batch_that_cannot_be_created_is_recorded(
    sqlite_db: str, enqueued: list[list[QueuedStep]], monkeypatch: pytest.MonkeyPatch
) -> None:
    def create_batch(session: Session, **kwargs: Any) -> str:
        session.add(Batch(workflow_id=kwargs["workflow"]))
        session.flush()  # written, then undone with the savepoint
        raise ValueError("dataset item 2: input.topic is missing")

    monkeypatch.setattr(batches, "create_batch", create_batch)
    with session_scope() as session:
        schedule = make_schedule(
            session, name="n", workflow_id=workflow_id(session), input=None, dataset=[{"x": 1}]
        )
    fire_due_schedules(now=TEN + timedelta(seconds=2))
    [fire] = fires_of(schedule.id)
    assert fire.error == "dataset item 2: input.topic is missing" and fire.batch_id is None
    with read_session() as session:
        assert session.exec(select(Batch)).all() == []


def test_paused_and_future_schedules_do_not_fire(
    sqlite_db: str, enqueued: list[list[QueuedStep]]
) -> None:
    with session_scope() as session:
        wf = workflow_id(session)
        make_schedule(session, name="paused", workflow_id=wf, enabled=False, next_fire_at=None)
        make_schedule(session, name="later", workflow_id=wf, next_fire_at=TEN + timedelta(hours=1))
    assert fire_due_schedules(now=TEN + timedelta(minutes=59)) == []
    assert run_count() == 0


def test_a_schedule_whose_zone_is_gone_stops_without_stopping_the_others(
    sqlite_db: str, enqueued: list[list[QueuedStep]]
) -> None:
    with session_scope() as session:
        wf = workflow_id(session)
        gone = make_schedule(session, name="gone", workflow_id=wf, timezone="Mars/Olympus")
        fine = make_schedule(session, name="fine", workflow_id=wf)
    fired = fire_due_schedules(now=TEN + timedelta(seconds=5))
    assert [f.schedule_id for f in fired] == [fine.id]
    assert reload(gone.id).next_fire_at is None and fires_of(gone.id) == []
    assert fire_due_schedules(now=TEN + timedelta(seconds=10)) == []  # not retried per tick


def test_skip_still_runs_a_fire_time_that_is_only_a_little_late() -> None:
    """A slow tick is not downtime: within the grace the latest fire time runs; a cron
    finer than the tick drops the ones in between (and says so)."""
    grace = misfire_grace(5.0)
    assert grace == timedelta(seconds=60)
    every_ten = CronSchedule("* * * * * */10", "UTC")
    plan = plan_fire(
        every_ten, due_since=TEN, now=TEN + timedelta(seconds=25), policy="skip", grace=grace
    )
    assert plan.fire_time == TEN + timedelta(seconds=20) and plan.skipped
    assert plan.next_fire_at == TEN + timedelta(seconds=30) and plan.missed == []
    on_time = plan_fire(
        every_ten, due_since=TEN, now=TEN + timedelta(seconds=1), policy="skip", grace=grace
    )
    assert on_time.fire_time == TEN and not on_time.skipped
