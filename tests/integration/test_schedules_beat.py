"""Schedules driven by real `ownkey beat` processes and a real worker.

Two beats tick at once against one Redis and one database, on SQLite and PostgreSQL:
every fire time makes exactly one run. The schedule fires every 2 seconds (cron's sixth
field is seconds) and the beats tick every half second, so a few seconds cover a dozen
fire times, each raced by both beats' ticks, instead of minutes of every-minute fires.
The schedule is created, changed and paused while the beats run: beat only sends the
tick, the tick reads SQL.

Then downtime: fire times that passed while no beat ran (next_fire_at set in the past
in SQL) are skipped, or caught up once, by the real tick on the real worker.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, update

from shared.automation_models import Schedule
from tests.processes import FakeLLM, Proc, Stack, ownkey, wait_until

TICK_LINE = "Sending due task fire-due-schedules"
TICK_DONE = re.compile(r"ownkey\.schedules_tick\[[^\]]+\] succeeded")


def tag() -> str:
    return uuid.uuid4().hex[:8]


class Beats:
    """`ownkey beat` processes for one test, each with its own data directory (its own
    celerybeat-schedule file, as on two servers), stopped at the end."""

    def __init__(self, stack: Stack, tmp_path: Path) -> None:
        self.stack, self.tmp_path = stack, tmp_path
        self.procs: list[Proc] = []

    def start(self, name: str) -> Proc:
        env = self.stack.env | {
            "OWNKEY_SCHEDULE_TICK_SECONDS": "0.5",
            "OWNKEY_DATA_DIR": str(self.tmp_path / name),
        }
        proc = ownkey(["beat"], env=env, log_dir=self.stack.log_dir, name=f"{name}-{tag()}")
        self.procs.append(proc)
        wait_until(lambda: TICK_LINE in proc.log(), timeout=60, what=f"{name} ticking", proc=proc)
        return proc

    def stop(self) -> None:
        for proc in self.procs:
            proc.stop()


@pytest.fixture
def beats(stack: Stack, tmp_path: Path) -> Iterator[Beats]:
    running = Beats(stack, tmp_path)
    yield running
    running.stop()


def ticks_done(stack: Stack) -> int:
    """Ticks the stack's worker has finished (Celery logs each task's success)."""
    return sum(len(TICK_DONE.findall(p.log())) for p in stack.procs if p.name.startswith("worker"))


def make_workflow(api: httpx.Client, fake_llm: FakeLLM) -> str:
    t = tag()
    key = api.post(
        "/keys",
        json={
            "provider": "openai",
            "name": f"sched-{t}",
            "api_key": f"sk-sched-{t}",
            "base_url": f"{fake_llm.url}/v1",
        },
    )
    assert key.status_code == 201, key.text
    agent = {"name": f"sched-{t}", "key_id": key.json()["id"], "model": "sched-model"}
    assert api.post("/agents", json=agent).status_code == 201
    steps = [{"id": "say", "agent": f"sched-{t}", "prompt": "Say {{ input.topic }}"}]
    created = api.post("/workflows", json={"name": f"sched-{t}", "steps": steps})
    assert created.status_code == 201, created.text
    return str(created.json()["name"])


def fires(api: httpx.Client, schedule_id: str) -> list[dict[str, Any]]:
    body = api.get(f"/schedules/{schedule_id}/fires", params={"limit": 500}).json()
    assert body["count"] == len(body["data"])
    return list(body["data"])


def finished(api: httpx.Client, run_id: str) -> dict[str, Any]:
    run: dict[str, Any] = {}

    def done() -> bool:
        nonlocal run
        run = api.get(f"/runs/{run_id}").json()
        return run["status"] in ("succeeded", "failed", "cancelled") and bool(run["finished_at"])

    wait_until(done, timeout=60, what=f"run {run_id}")
    return run


def test_two_beats_make_one_run_per_fire_time(
    stack: Stack, fake_llm: FakeLLM, beats: Beats
) -> None:
    api = stack.client()
    workflow = make_workflow(api, fake_llm)
    first, second = beats.start("beat-a"), beats.start("beat-b")
    # Created while both beats run: no restart needed.
    created = api.post(
        "/schedules",
        json={
            "workflow": workflow,
            "cron": "* * * * * */2",
            "input": {"topic": "first"},
            "misfire_policy": "catch_up",
        },
    )
    assert created.status_code == 201, created.text
    schedule = created.json()["id"]
    try:
        wait_until(lambda: len(fires(api, schedule)) >= 5, timeout=60, what="five fires")
        # A change counts from the next tick on.
        assert api.patch(f"/schedules/{schedule}", json={"input": {"topic": "second"}}).is_success
        wait_until(
            lambda: any(
                api.get(f"/runs/{f['run_id']}").json()["input"] == {"topic": "second"}
                for f in fires(api, schedule)[:3]
            ),
            timeout=30,
            what="a run with the changed input",
        )
        paused = api.post(f"/schedules/{schedule}/pause")
        assert paused.status_code == 200, paused.text
        fired = fires(api, schedule)
        # Both beats keep ticking and the worker keeps handling their ticks: nothing fires.
        ticks = ticks_done(stack)
        sent = first.log().count(TICK_LINE), second.log().count(TICK_LINE)
        wait_until(
            lambda: (
                ticks_done(stack) >= ticks + 4
                and first.log().count(TICK_LINE) > sent[0]
                and second.log().count(TICK_LINE) > sent[1]
            ),
            timeout=30,
            what="ticks from both beats after the pause",
        )
        assert fires(api, schedule) == fired
    finally:
        beats.stop()
        api.delete(f"/schedules/{schedule}")

    times = [datetime.fromisoformat(f["fire_time"]) for f in fired]
    missed = [datetime.fromisoformat(m) for f in fired for m in f["missed"]]
    assert len(times) >= 5 and len(set(times)) == len(times)
    # Every 2-second mark between the first and the last fire ran once: as its own run,
    # or covered by the next run's catch-up. None twice, none lost.
    covered = sorted(times + missed)
    assert len(set(covered)) == len(covered)
    span = int((covered[-1] - covered[0]).total_seconds()) // 2
    assert covered == [covered[0] + timedelta(seconds=2 * i) for i in range(span + 1)]
    # One run per fire, and every run finished on the worker.
    run_ids = [f["run_id"] for f in fired]
    assert None not in run_ids and len(set(run_ids)) == len(run_ids)
    assert all(f["error"] is None for f in fired)
    runs = api.get("/runs", params={"workflow": workflow, "limit": 200}).json()
    assert runs["count"] == len(fired)
    assert {r["id"] for r in runs["data"]} == set(run_ids)
    for run_id in run_ids:
        assert finished(api, run_id)["status"] == "succeeded"


def latest_daily(hour: int, now: datetime) -> datetime:
    today = now.replace(hour=hour, minute=0, second=0, microsecond=0)
    return today if today <= now else today - timedelta(days=1)


@pytest.mark.parametrize("stack", ["sqlite"], indirect=True)
def test_after_downtime_skip_drops_and_catch_up_runs_once(
    stack: Stack, fake_llm: FakeLLM, beats: Beats
) -> None:
    api = stack.client()
    workflow = make_workflow(api, fake_llm)
    now = datetime.now(UTC)
    hour = (now.hour + 12) % 24  # its last fire time was 11 to 12 hours ago
    ids = {}
    for policy in ("skip", "catch_up"):
        created = api.post(
            "/schedules",
            json={
                "workflow": workflow,
                "cron": f"0 {hour} * * *",
                "input": {"topic": policy},
                "misfire_policy": policy,
            },
        )
        assert created.status_code == 201, created.text
        ids[policy] = created.json()["id"]
    # No beat ran for three days: three fire times passed.
    down_since = now - timedelta(days=3)
    engine = create_engine(stack.env["OWNKEY_DATABASE_URL"])
    with engine.begin() as connection:
        connection.execute(
            update(Schedule)
            .where(Schedule.id.in_(ids.values()))  # type: ignore[attr-defined]
            .values(next_fire_at=down_since)
        )
    engine.dispose()
    try:
        beats.start("beat-downtime")

        def settled() -> bool:
            skip_next = api.get(f"/schedules/{ids['skip']}").json()["next_fire_at"]
            return len(fires(api, ids["catch_up"])) == 1 and datetime.fromisoformat(skip_next) > now

        wait_until(settled, timeout=30, what="the first tick after the downtime")
        skip = api.get(f"/schedules/{ids['skip']}").json()
        [caught] = fires(api, ids["catch_up"])
    finally:
        beats.stop()
        for schedule_id in ids.values():
            api.delete(f"/schedules/{schedule_id}")

    latest = latest_daily(hour, now)
    # skip: nothing ran; the next fire time is the next one to come.
    assert skip["recent_fires"] == [] and skip["last_fire_at"] is None
    assert datetime.fromisoformat(skip["next_fire_at"]) == latest + timedelta(days=1)
    # catch_up: one run, for the latest fire time, recording the two before it.
    assert datetime.fromisoformat(caught["fire_time"]) == latest
    assert [datetime.fromisoformat(m) for m in caught["missed"]] == [
        latest - timedelta(days=2),
        latest - timedelta(days=1),
    ]
    run = finished(api, caught["run_id"])
    assert run["status"] == "succeeded" and run["input"] == {"topic": "catch_up"}
    runs = api.get("/runs", params={"workflow": workflow}).json()
    assert [r["id"] for r in runs["data"]] == [caught["run_id"]]


@pytest.mark.parametrize("stack", ["sqlite"], indirect=True)
def test_a_dataset_schedule_starts_one_batch_per_fire(
    stack: Stack, fake_llm: FakeLLM, beats: Beats
) -> None:
    """A schedule over a dataset: each fire makes a batch whose items all run, with no
    more in flight than asked."""
    api = stack.client()
    workflow = make_workflow(api, fake_llm)
    topics = ["tides", "wind", "sun", "rain", "snow"]
    fake_llm.configure(latency_seconds=0.3)
    beats.start("beat-dataset")
    try:
        created = api.post(
            "/schedules",
            json={
                "workflow": workflow,
                "cron": "*/2 * * * * *",
                "timezone": "UTC",
                "dataset": [{"topic": t} for t in topics],
                "max_in_flight": 2,
            },
        )
        assert created.status_code == 201, created.text
        schedule_id = created.json()["id"]
        wait_until(
            lambda: any(f["batch_id"] for f in fires(api, schedule_id)),
            timeout=60,
            what="a fire with a batch",
        )
        assert api.post(f"/schedules/{schedule_id}/pause").status_code == 200
    finally:
        fake_llm.configure(latency_seconds=0.0)
    batch_ids = [f["batch_id"] for f in fires(api, schedule_id) if f["batch_id"]]
    assert len(batch_ids) == len(set(batch_ids)) >= 1  # one batch per fire time
    batch: dict[str, Any] = {}

    def batch_done() -> bool:
        nonlocal batch
        batch = api.get(f"/batches/{batch_ids[0]}").json()
        return batch["status"] in ("succeeded", "finished")

    wait_until(batch_done, timeout=90, what=f"batch {batch_ids[0]}")
    assert batch["status"] == "succeeded", batch
    assert batch["total"] == len(topics)
    prompts = sorted(
        str(c["prompt"]) for c in fake_llm.calls() if "Say " in str(c.get("prompt", ""))
    )
    assert {f"Say {t}" for t in topics} <= set(prompts)
