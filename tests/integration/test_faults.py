"""Faults made to happen for real: a worker killed mid-flight, Redis restarted without
persistence, the database unreachable, a provider rate-limiting, a bad key, a cancel
and a warm shutdown. Each test runs its own stack with a fast reconciler."""

from __future__ import annotations

import collections
import json
import signal
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from shared.embedded_redis import EmbeddedRedis, start_redis
from tests.integration.conftest import _base_env, postgres_url
from tests.processes import FakeLLM, Proc, Stack, ownkey, start_stack
from tests.tcp_proxy import TcpProxy

REPORT = Path(__file__).resolve().parents[2] / "test-output" / "reliability.json"
FIGURES: dict[str, dict[str, Any]] = {}


@pytest.fixture(scope="module", autouse=True)
def _write_figures() -> Iterator[None]:
    """Each test's figures go to test-output/reliability.json for RELIABILITY.md."""
    yield
    if FIGURES:
        REPORT.parent.mkdir(exist_ok=True)
        previous = json.loads(REPORT.read_text()) if REPORT.exists() else {}
        REPORT.write_text(json.dumps({**previous, **FIGURES}, indent=2, sort_keys=True))


def record(test: str, runs: list[dict[str, Any]], fake: FakeLLM, **extra: Any) -> None:
    steps = sum(len(r["steps"]) for r in runs)
    calls = workflow_calls(fake, runs[0]["workflow"])
    paid = [c for c in calls if c.get("status") == 200]
    FIGURES[test] = {
        "runs_submitted": len(runs),
        "runs_completed": sum(
            1 for r in runs if r["status"] in ("succeeded", "failed", "cancelled")
        ),
        "runs_lost": sum(1 for r in runs if not r["finished_at"]),
        "steps": steps,
        "provider_calls": len(calls),
        "duplicate_paid_calls": max(0, len(paid) - len({str(c["prompt"]) for c in paid})),
        "at": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        **extra,
    }


FAST_RECOVERY = {
    "OWNKEY_REQUEUE_AFTER_SECONDS": "3",
    "OWNKEY_RECONCILE_INTERVAL_SECONDS": "1",
    "OWNKEY_LEASE_MARGIN_SECONDS": "4",
    "OWNKEY_STEP_TIMEOUT_SECONDS": "8",
    "OWNKEY_LOG_LEVEL": "INFO",
}


@dataclass
class FaultStack:
    stack: Stack
    redis: EmbeddedRedis
    redis_dir: Path
    beat: Proc

    def restart_redis(self, down_seconds: float) -> None:
        port = self.redis.port
        self.redis.stop()
        time.sleep(down_seconds)
        self.redis = start_redis(self.redis_dir, port=port)


def make_stack(
    tmp_path: Path, database_url: str, *, workers: int, concurrency: int = 20
) -> FaultStack:
    redis_dir = tmp_path / "redis"
    server = start_redis(redis_dir)
    env = _base_env(tmp_path)
    env.update(FAST_RECOVERY, OWNKEY_REDIS_URL=server.url, OWNKEY_DATABASE_URL=database_url)
    stack = start_stack(env, tmp_path, workers=0)
    for i in range(workers):
        stack.start_ready_worker(f"w{i}-{uuid.uuid4().hex[:6]}", "--concurrency", str(concurrency))
    beat = ownkey(["beat"], env=env, log_dir=tmp_path, name="beat")
    stack.procs.append(beat)
    return FaultStack(stack=stack, redis=server, redis_dir=redis_dir, beat=beat)


@pytest.fixture
def sqlite_stack(tmp_path: Path) -> Iterator[FaultStack]:
    made: list[FaultStack] = []

    def build(workers: int = 1, concurrency: int = 20) -> FaultStack:
        made.append(
            make_stack(
                tmp_path, f"sqlite:///{tmp_path / 'o.db'}", workers=workers, concurrency=concurrency
            )
        )
        return made[-1]

    yield build  # type: ignore[misc]
    for fault_stack in made:
        fault_stack.stack.stop()
        fault_stack.redis.stop()


def setup_workflow(
    api: httpx.Client,
    fake: FakeLLM,
    *,
    steps: int,
    max_attempts: int = 3,
    secret: str = "sk-faults",
    rpm: int | None = None,
) -> str:
    tag = uuid.uuid4().hex[:8]
    key = api.post(
        "/keys",
        json={
            "provider": "openai",
            "name": f"k-{tag}",
            "api_key": secret,
            "base_url": f"{fake.url}/v1",
            "rpm": rpm,
        },
    )
    key.raise_for_status()
    api.post(
        "/agents",
        json={
            "name": f"a-{tag}",
            "key_id": key.json()["id"],
            "model": "gpt-4o-mini",
            "max_attempts": max_attempts,
            "timeout_seconds": 8,
        },
    ).raise_for_status()
    # The workflow's name leads every prompt: calls from another test's stack never count.
    chain: list[dict[str, object]] = [
        {"id": "s0", "agent": f"a-{tag}", "prompt": f"wf-{tag} run {{{{ input.n }}}} step 0"}
    ]
    for i in range(1, steps):
        chain.append(
            {
                "id": f"s{i}",
                "agent": f"a-{tag}",
                "depends_on": [f"s{i - 1}"],
                "prompt": f"wf-{tag} run {{{{ input.n }}}} step {i}",
            }
        )
    api.post("/workflows", json={"name": f"wf-{tag}", "steps": chain}).raise_for_status()
    return f"wf-{tag}"


def submit(api: httpx.Client, workflow: str, count: int) -> list[str]:
    return [
        api.post("/runs", json={"workflow": workflow, "input": {"n": i}}).json()["id"]
        for i in range(count)
    ]


def wait_all(api: httpx.Client, run_ids: list[str], timeout: float) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    pending = set(run_ids)
    runs: dict[str, dict[str, Any]] = {}
    while pending and time.monotonic() < deadline:
        for run_id in list(pending):
            run = api.get(f"/runs/{run_id}").json()
            if run["finished_at"]:
                runs[run_id] = run
                pending.discard(run_id)
        if pending:
            time.sleep(0.5)
    assert not pending, f"{len(pending)} runs never finished"
    return [runs[r] for r in run_ids]


def workflow_calls(fake: FakeLLM, workflow: str) -> list[dict[str, object]]:
    """The provider calls made for `workflow`'s steps: the fake is shared by the session,
    and a call another test's stack made late must not count here."""
    return [c for c in fake.calls() if str(c["prompt"]).startswith(f"{workflow} ")]


def calls_per_prompt(fake: FakeLLM, workflow: str) -> collections.Counter[str]:
    return collections.Counter(str(c["prompt"]) for c in workflow_calls(fake, workflow))


def running_prompts(database_url: str, workflow: str) -> set[str]:
    """The prompts of the steps running right now (as the fake sees them)."""
    engine = create_engine(database_url)
    with engine.connect() as db:
        rows = db.execute(
            text(
                "SELECT r.input, s.step_key FROM step_runs s JOIN runs r ON r.id = s.run_id"
                " WHERE s.status = 'running'"
            )
        ).all()
    engine.dispose()
    prompts = set()
    for raw_input, step_key in rows:
        n = (
            raw_input["n"]
            if isinstance(raw_input, dict)
            else __import__("json").loads(raw_input)["n"]
        )
        prompts.add(f"{workflow} run {n} step {step_key[1:]}")
    return prompts


def test_sigkill_of_a_worker_mid_flight_loses_no_run_and_pays_at_most_once_more(
    sqlite_stack: Any, fake_llm: FakeLLM
) -> None:
    fs: FaultStack = sqlite_stack(workers=2, concurrency=20)
    fake_llm.configure(latency_seconds=1.0)
    try:
        with fs.stack.client() as api:
            workflow = setup_workflow(api, fake_llm, steps=3)
            run_ids = submit(api, workflow, 50)
            time.sleep(1.5)
            database = fs.stack.env["OWNKEY_DATABASE_URL"]
            victim = next(p for p in fs.stack.procs if p.name.startswith("w0-"))
            victim.stop(signal.SIGKILL)
            # Read after the kill: a step the victim claimed a moment before it died is
            # still `running` under its dead lease (the lease outlives this read).
            in_flight = running_prompts(database, workflow)
            runs = wait_all(api, run_ids, timeout=120)
    finally:
        fake_llm.configure(latency_seconds=0.0)
    assert [r["status"] for r in runs] == ["succeeded"] * 50
    for run in runs:
        for step in run["steps"]:
            successes = [a for a in step["attempt_log"] if a["status_code"] == 200]
            assert step["status"] == "succeeded" and len(successes) == 1
    record("worker SIGKILL mid-flight", runs, fake_llm, in_flight_at_kill=len(in_flight))
    counts = calls_per_prompt(fake_llm, workflow)
    assert len(counts) == 150
    repeated = {prompt for prompt, n in counts.items() if n > 1}
    assert all(counts[p] == 2 for p in repeated), "a step was called more than twice"
    assert repeated <= in_flight, "a step that was not in flight was called again"


def test_redis_restart_without_persistence_loses_no_run(
    sqlite_stack: Any, fake_llm: FakeLLM
) -> None:
    fs: FaultStack = sqlite_stack(workers=1, concurrency=20)
    fake_llm.configure(latency_seconds=0.5)
    try:
        with fs.stack.client() as api:
            workflow = setup_workflow(api, fake_llm, steps=2)
            run_ids = submit(api, workflow, 100)
            time.sleep(1.0)
            fs.restart_redis(down_seconds=2.0)
            runs = wait_all(api, run_ids, timeout=180)
    finally:
        fake_llm.configure(latency_seconds=0.0)
    record("Redis restart without persistence", runs, fake_llm)
    assert [r["status"] for r in runs] == ["succeeded"] * 100
    assert "re-enqueued" in fs.stack.logs()  # the reconciler did the recovering


def test_database_unreachable_for_five_seconds(tmp_path: Path, fake_llm: FakeLLM) -> None:
    pg = postgres_url()
    url = make_url(next(pg))
    proxy = TcpProxy((url.host or "127.0.0.1", url.port or 5432))
    proxied = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    fs = make_stack(tmp_path, proxied, workers=1, concurrency=20)
    fake_llm.configure(latency_seconds=0.5)
    try:
        with fs.stack.client() as api:
            workflow = setup_workflow(api, fake_llm, steps=2)
            run_ids = submit(api, workflow, 40)
            time.sleep(0.8)
            proxy.cut()
            time.sleep(5)
            proxy.restore()
            runs = wait_all(api, run_ids, timeout=180)
    finally:
        fake_llm.configure(latency_seconds=0.0)
        fs.stack.stop()
        fs.redis.stop()
        proxy.close()
        next(pg, None)
    record("PostgreSQL unreachable for 5 s", runs, fake_llm)
    assert [r["status"] for r in runs] == ["succeeded"] * 40
    counts = calls_per_prompt(fake_llm, workflow)
    assert len(counts) == 80


def test_a_stretch_of_429s_is_waited_out_within_the_retry_policy(
    sqlite_stack: Any, fake_llm: FakeLLM
) -> None:
    fs: FaultStack = sqlite_stack(workers=1)
    with fs.stack.client() as api:
        workflow = setup_workflow(api, fake_llm, steps=1, max_attempts=8)
        httpx.post(
            f"{fake_llm.url}/_fake/faults", json={"status": 429, "for_seconds": 3, "retry_after": 1}
        ).raise_for_status()
        run_ids = submit(api, workflow, 20)
        runs = wait_all(api, run_ids, timeout=120)
    record("a stretch of 429s", runs, fake_llm)
    assert [r["status"] for r in runs] == ["succeeded"] * 20
    for run in runs:
        (step,) = run["steps"]
        limited = [a for a in step["attempt_log"] if a["status_code"] == 429]
        assert all(a["wait_seconds"] >= 1 for a in limited)  # Retry-After honoured
        assert step["attempts"] == len(limited) + 1 <= 8
    assert sum(calls_per_prompt(fake_llm, workflow).values()) == sum(
        r["steps"][0]["attempts"] for r in runs
    )


def test_a_401_fails_the_run_at_once_naming_key_and_provider(
    sqlite_stack: Any, fake_llm: FakeLLM
) -> None:
    fs: FaultStack = sqlite_stack(workers=1)
    secret = f"sk-bad-{uuid.uuid4().hex}"
    fake_llm.configure(valid_keys=["sk-the-only-good-one"])
    try:
        with fs.stack.client() as api:
            workflow = setup_workflow(api, fake_llm, steps=3, max_attempts=5, secret=secret)
            (run,) = wait_all(api, submit(api, workflow, 1), timeout=60)
    finally:
        fake_llm.configure(valid_keys=[])
    assert run["status"] == "failed" and run["failed_step"] == "s0"
    first, *rest = run["steps"]
    refused = [c for c in fake_llm.calls() if c["status"] == 401]  # a 401 records no prompt
    assert first["attempts"] == 1 and len(refused) == 1  # no retries
    assert "key 'k-" in first["error"] and "provider openai" in first["error"]
    assert [s["status"] for s in rest] == ["skipped", "skipped"]
    assert secret not in str(run) and secret not in fs.stack.logs()


def test_cancel_during_a_run_and_then_again(sqlite_stack: Any, fake_llm: FakeLLM) -> None:
    fs: FaultStack = sqlite_stack(workers=1)
    fake_llm.configure(latency_seconds=1.0)
    try:
        with fs.stack.client() as api:
            workflow = setup_workflow(api, fake_llm, steps=3)
            (run_id,) = submit(api, workflow, 1)
            deadline = time.monotonic() + 20
            while api.get(f"/runs/{run_id}").json()["steps"][0]["status"] != "running":
                assert time.monotonic() < deadline
                time.sleep(0.05)  # until step 0 is calling the provider
            cancelled = api.post(f"/runs/{run_id}/cancel")
            assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
            (run,) = wait_all(api, [run_id], timeout=30)
            assert api.post(f"/runs/{run_id}/cancel").status_code == 409
            assert api.post(f"/runs/{uuid.uuid4().hex}/cancel").status_code == 404
    finally:
        fake_llm.configure(latency_seconds=0.0)
    assert run["status"] == "cancelled"
    assert [s["status"] for s in run["steps"]] == ["cancelled", "skipped", "skipped"]
    assert run["steps"][0]["output"] is None and run["steps"][0]["input_tokens"]  # paid, kept
    assert len(workflow_calls(fake_llm, workflow)) == 1  # the later steps never reached it


def test_sigterm_lets_a_worker_finish_its_steps(sqlite_stack: Any, fake_llm: FakeLLM) -> None:
    fs: FaultStack = sqlite_stack(workers=1)
    fake_llm.configure(latency_seconds=2.0)
    try:
        with fs.stack.client() as api:
            workflow = setup_workflow(api, fake_llm, steps=1)
            run_ids = submit(api, workflow, 10)
            time.sleep(0.8)
            worker = next(p for p in fs.stack.procs if p.name.startswith("w0-"))
            worker.process.send_signal(signal.SIGTERM)  # warm shutdown
            assert worker.process.wait(timeout=30) == 0
            fake_llm.configure(latency_seconds=0.0)
            finished_by_the_leaving_worker = [
                r
                for r in (api.get(f"/runs/{i}").json() for i in run_ids)
                if r["status"] == "succeeded"
            ]
            fs.stack.start_ready_worker(f"w1-{uuid.uuid4().hex[:6]}", "--concurrency", "20")
            runs = wait_all(api, run_ids, timeout=60)
    finally:
        fake_llm.configure(latency_seconds=0.0)
    assert len(finished_by_the_leaving_worker) == 10  # it finished what it had started
    assert [r["status"] for r in runs] == ["succeeded"] * 10
    assert len(workflow_calls(fake_llm, workflow)) == 10


def test_rpm_limit_holds_across_three_workers(sqlite_stack: Any, fake_llm: FakeLLM) -> None:
    """rpm=60 and three worker processes pushing 100 steps: the provider never sees more
    than 60 calls in any 60-second window, and every step completes (about 65 s: the
    last 40 wait for the first window to pass)."""
    fs: FaultStack = sqlite_stack(workers=3, concurrency=20)
    with fs.stack.client() as api:
        workflow = setup_workflow(api, fake_llm, steps=1, rpm=60)
        run_ids = submit(api, workflow, 100)
        runs = wait_all(api, run_ids, timeout=300)
    times = sorted(float(c["t"]) for c in workflow_calls(fake_llm, workflow))  # type: ignore[arg-type]
    assert len(times) == 100  # no call was refused by the provider, none repeated
    busiest = max(sum(1 for t in times[i:] if t < start + 60) for i, start in enumerate(times))
    record("rpm=60 across three workers", runs, fake_llm, busiest_60s_window=busiest)
    assert [r["status"] for r in runs] == ["succeeded"] * 100
    assert busiest <= 60, f"{busiest} calls reached the provider within 60 s"
    assert all(r["steps"][0]["attempts"] == 1 for r in runs)  # waiting is not an attempt
