"""One benchmark session's processes and stores: a private Redis, fake-llm, a database
(SQLite file or a throwaway PostgreSQL database), the real API, and worker processes
started and stopped per scenario.

Process handling is the test suite's (tests/processes.py): each process runs in its own
session and is stopped with its whole process group, and `Bench.stop` stops everything
this module started, whatever happened before.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import redis
from sqlalchemy import Engine, create_engine, func
from sqlalchemy import select as core_select
from sqlmodel import Session, col, select

from bench.floor import FLOOR_QUEUE, floor_rows, make_floor_celery
from shared.embedded_redis import EmbeddedRedis, start_redis
from shared.models import FINAL_STEP_STATUSES, Run, StepRun, StepStatus
from tests.processes import FakeLLM, Proc, Stack, start_fake_llm, start_stack, wait_until

REPO = Path(__file__).resolve().parent.parent
MODEL = "bench-model"
API_KEY = "sk-bench-0000"


class BenchError(RuntimeError):
    """A scenario could not complete (a process died, a run failed, a timeout)."""


def spawn(cmd: list[str], *, env: dict[str, str], log_dir: Path, name: str) -> Proc:
    """A non-ownkey process (the floors, the asyncio script), handled like ownkey's."""
    log_path = log_dir / f"{name}.log"
    with log_path.open("ab") as handle:
        process = subprocess.Popen(
            cmd,
            env=env,
            cwd=REPO,
            stdout=handle,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    return Proc(name=name, process=process, log_path=log_path)


def proc_status(pid: int) -> dict[str, str]:
    with open(f"/proc/{pid}/status") as status:
        return dict(line.rstrip("\n").split(":\t", 1) for line in status if ":\t" in line)


def peak_rss_mb(pid: int) -> float:
    """VmHWM: the process's peak resident set, in MiB."""
    return int(proc_status(pid)["VmHWM"].split()[0]) / 1024


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process (all its threads), from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _postgres_database() -> tuple[str, Iterator[str]]:
    """A fresh PostgreSQL database (the integration tests' helper); dropped by the caller
    exhausting the returned generator."""
    import pytest

    from tests.integration.conftest import postgres_url

    databases = postgres_url()
    try:
        return next(databases), databases
    except (pytest.skip.Exception, pytest.fail.Exception) as exc:
        raise BenchError(
            f"--db postgres: {exc}; set OWNKEY_TEST_POSTGRES_URL to a server you may "
            "create databases on"
        ) from None


@dataclass
class Bench:
    """Everything one `python -m bench` invocation runs against."""

    workdir: Path
    db: str
    env: dict[str, str]
    database_url: str
    redis_server: EmbeddedRedis
    fake: FakeLLM
    stack: Stack
    engine: Engine  # plain engine, reads only: never takes SQLite's write lock
    floor_celery: Any
    procs: list[Proc] = field(default_factory=list)
    agent: str = "bench"
    _pg: Iterator[str] | None = None
    _counter: int = 0

    # --- processes ---------------------------------------------------------------------

    def start_worker(self, concurrency: int) -> Proc:
        """`ownkey worker`: one process, the threads pool."""
        self._counter += 1
        proc = self.stack.start_worker(
            f"ownkey-worker-{self._counter}",
            "--pool",
            "threads",
            "--concurrency",
            str(concurrency),
        )
        self.procs.append(proc)
        return proc

    def start_floor_worker(self, concurrency: int) -> Proc:
        """The raw-Celery floor, started the way `ownkey worker` starts its app."""
        self._counter += 1
        name = f"floor-worker-{self._counter}"
        proc = spawn(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "bench.floor",
                "worker",
                "--pool=threads",
                f"--concurrency={concurrency}",
                f"--queues={FLOOR_QUEUE}",
                f"--hostname={name}@bench",
                f"--loglevel={self.env.get('OWNKEY_LOG_LEVEL', 'INFO')}",
                "--without-mingle",
                "--without-gossip",
            ],
            env=self.env,
            log_dir=self.workdir,
            name=name,
        )
        self.procs.append(proc)
        return proc

    def start_floor_api(self, port: int) -> Proc:
        proc = spawn(
            [sys.executable, "-m", "bench.floor", "api", "--port", str(port)],
            env=self.env,
            log_dir=self.workdir,
            name=f"floor-api-{port}",
        )
        self.procs.append(proc)
        url = f"http://127.0.0.1:{port}/health"
        wait_until(
            lambda: httpx.get(url, timeout=2).status_code == 200,
            timeout=30,
            what="the floor API",
            proc=proc,
        )
        return proc

    def stop(self) -> None:
        """Stop every process, the API and Redis; drop a PostgreSQL database. Idempotent."""
        for proc in reversed(self.procs):
            proc.stop(timeout=15)
        self.stack.stop()
        self.fake.proc.stop()
        self.engine.dispose()
        self.redis_server.stop()
        if self._pg is not None:
            next(self._pg, None)
            self._pg = None

    # --- the broker ---------------------------------------------------------------------

    def purge_queues(self) -> None:
        """Empty the private Redis: leftover messages must not leak into the next scenario."""
        client = redis.Redis.from_url(self.env["OWNKEY_REDIS_URL"])
        client.flushdb()
        client.close()

    # --- ownkey through its API ---------------------------------------------------------

    def api(self) -> httpx.Client:
        return self.stack.client()

    def create_workflow(self, name: str, steps: list[dict[str, Any]]) -> str:
        with self.api() as api:
            response = api.post("/workflows", json={"name": name, "steps": steps})
        if response.status_code != 201:
            raise BenchError(f"creating workflow {name}: {response.status_code} {response.text}")
        return str(response.json()["id"])

    # --- reading results ----------------------------------------------------------------

    def step_counts(self, workflow_id: str) -> tuple[int, int]:
        """(final steps, failed steps) of a workflow's runs."""
        with Session(self.engine) as session:
            rows = session.exec(
                select(StepRun.status, func.count())
                .join(Run, col(Run.id) == col(StepRun.run_id))
                .where(Run.workflow_id == workflow_id)
                .group_by(col(StepRun.status))
            ).all()
        final = sum(n for status, n in rows if status in FINAL_STEP_STATUSES)
        failed = sum(
            n
            for status, n in rows
            if status in FINAL_STEP_STATUSES and status != StepStatus.succeeded
        )
        return final, failed

    def steps_per_host(self, workflow_id: str) -> dict[str, int]:
        """Succeeded steps of a workflow's runs, by the worker host that ran them."""
        with Session(self.engine) as session:
            rows = session.exec(
                select(StepRun.worker_host, func.count())
                .join(Run, col(Run.id) == col(StepRun.run_id))
                .where(Run.workflow_id == workflow_id, StepRun.status == StepStatus.succeeded)
                .group_by(col(StepRun.worker_host))
            ).all()
        return {str(host): int(n) for host, n in rows}

    def wait_for_steps(
        self, workflow_id: str, expected: int, *, timeout: float, procs: list[Proc]
    ) -> None:
        deadline = time.monotonic() + timeout
        final = failed = 0
        while time.monotonic() < deadline:
            for proc in procs:
                if proc.process.poll() is not None:
                    raise BenchError(f"{proc.name} exited:\n{proc.log()[-3000:]}")
            final, failed = self.step_counts(workflow_id)
            if failed:
                raise BenchError(f"{failed} step(s) failed; see the logs in {self.workdir}")
            if final >= expected:
                return
            time.sleep(0.2)
        raise BenchError(f"timed out: {final} of {expected} steps final after {timeout:.0f}s")

    def last_step_finished(self, workflow_id: str) -> float:
        with Session(self.engine) as session:
            last = session.exec(
                select(func.max(StepRun.finished_at))
                .join(Run, col(Run.id) == col(StepRun.run_id))
                .where(Run.workflow_id == workflow_id)
            ).one()
        if last is None:
            raise BenchError("no step finished")
        return float(last.timestamp())

    # --- the floor's rows ---------------------------------------------------------------

    def floor_rows(self, batch: str) -> tuple[int, float | None]:
        """(rows written, time of the last) for one batch of floor tasks."""
        with self.engine.connect() as connection:
            count, last = connection.execute(
                core_select(func.count(), func.max(floor_rows.c.done_at)).where(
                    floor_rows.c.batch == batch
                )
            ).one()
        return int(count), None if last is None else float(last)

    def wait_for_floor(
        self, batch: str, expected: int, *, timeout: float, procs: list[Proc]
    ) -> float:
        deadline = time.monotonic() + timeout
        count = 0
        while time.monotonic() < deadline:
            for proc in procs:
                if proc.process.poll() is not None:
                    raise BenchError(f"{proc.name} exited:\n{proc.log()[-3000:]}")
            count, last = self.floor_rows(batch)
            if count >= expected and last is not None:
                return last
            time.sleep(0.2)
        raise BenchError(f"timed out: {count} of {expected} floor rows after {timeout:.0f}s")


def _base_env(workdir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OWNKEY_")}
    env.update(
        OWNKEY_DATA_DIR=str(workdir / "data"),
        OWNKEY_SECRET_KEY=secrets.token_urlsafe(32),
        OWNKEY_ENVIRONMENT="development",
        OWNKEY_LOG_LEVEL="INFO",  # ownkey's default: what `ownkey worker` logs out of the box
        PYTHONPATH=os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p),
    )
    return env


def start_bench(workdir: Path, *, db: str) -> Bench:
    """Start Redis, fake-llm, the database and the API; create the key and the agent."""
    workdir.mkdir(parents=True, exist_ok=True)
    env = _base_env(workdir)
    started: list[Any] = []
    pg: Iterator[str] | None = None
    try:
        redis_server = start_redis(workdir / "redis")
        started.append(redis_server)
        env["OWNKEY_REDIS_URL"] = redis_server.url
        env["CELERY_BROKER_URL"] = redis_server.url  # the floor app reads Celery's own name
        if db == "postgres":
            database_url, pg = _postgres_database()
        else:
            database_url = f"sqlite:///{workdir / 'data' / 'ownkey.db'}"
        env["OWNKEY_DATABASE_URL"] = database_url
        fake = start_fake_llm(env, workdir)
        started.append(fake.proc)
        stack = start_stack(env, workdir, workers=0)
        started.append(stack)
        engine = create_engine(database_url)
        floor_rows.metadata.create_all(engine)
        bench = Bench(
            workdir=workdir,
            db=db,
            env=env,
            database_url=database_url,
            redis_server=redis_server,
            fake=fake,
            stack=stack,
            engine=engine,
            floor_celery=make_floor_celery(redis_server.url),
            _pg=pg,
        )
    except BaseException:
        for thing in reversed(started):
            thing.stop()
        if pg is not None:
            next(pg, None)
        raise
    try:
        with bench.api() as api:
            create_agent(api, name=bench.agent, fake_url=bench.fake.url)
    except BaseException:
        bench.stop()
        raise
    return bench


def create_agent(api: httpx.Client, *, name: str, fake_url: str) -> None:
    """A key on fake-llm at `fake_url` and an agent `name` using it."""
    key = api.post(
        "/keys",
        json={"provider": "openai", "name": name, "api_key": API_KEY, "base_url": f"{fake_url}/v1"},
    )
    if key.status_code != 201:
        raise BenchError(f"creating the key: {key.status_code} {key.text}")
    agent = api.post("/agents", json={"name": name, "key_id": key.json()["id"], "model": MODEL})
    if agent.status_code != 201:
        raise BenchError(f"creating the agent: {agent.status_code} {agent.text}")
