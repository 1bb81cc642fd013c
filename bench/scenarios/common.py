"""What several scenarios share: workflow shapes, submitting runs, pacing."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx
from celery import chain as celery_chain

from bench.floor import FLOOR_QUEUE, FLOOR_TASK
from bench.harness import MODEL, Bench, BenchError
from bench.loadgen import post_load
from bench.stats import first_call
from tests.processes import Stack


def tag() -> str:
    return uuid.uuid4().hex[:6]


def single_step(agent: str) -> list[dict[str, Any]]:
    return [{"id": "s1", "agent": agent, "prompt": "run {{ input.id }} s1"}]


def chain(agent: str, length: int) -> list[dict[str, Any]]:
    """s1 → s2 → ...; each prompt carries the run's id and the previous step's output."""
    steps: list[dict[str, Any]] = [{"id": "s1", "agent": agent, "prompt": "run {{ input.id }} s1"}]
    for k in range(2, length + 1):
        steps.append(
            {
                "id": f"s{k}",
                "agent": agent,
                "depends_on": [f"s{k - 1}"],
                "prompt": f"run {{{{ input.id }}}} s{k} {{{{ steps.s{k - 1}.output }}}}",
            }
        )
    return steps


def fan_out(agent: str, width: int) -> list[dict[str, Any]]:
    steps: list[dict[str, Any]] = [
        {"id": f"p{k}", "agent": agent, "prompt": f"run {{{{ input.id }}}} p{k}"}
        for k in range(width)
    ]
    steps.append(
        {
            "id": "join",
            "agent": agent,
            "depends_on": [f"p{k}" for k in range(width)],
            "prompt": "run {{ input.id }} join",
        }
    )
    return steps


def submit_runs(
    bench: Bench, workflow: str, ids: list[str], *, clients: int = 16, stack: Stack | None = None
) -> None:
    """POST /api/v1/runs for each id, as fast as the API takes them (the bench's API,
    or `stack`'s)."""
    api = stack or bench.stack
    result = post_load(
        f"{api.api_url}/api/v1/runs",
        lambda n: {"workflow": workflow, "input": {"id": ids[n]}},
        headers={"Authorization": f"Bearer {api.token}"},
        clients=min(clients, len(ids)),
        total=len(ids),
    )
    if result.errors or result.ok != len(ids):
        raise BenchError(
            f"submitting {len(ids)} runs: {result.ok} accepted, {result.errors} errors "
            f"{result.error_samples}"
        )


def submit_run(api: httpx.Client, workflow: str, run_id: str) -> None:
    response = api.post("/runs", json={"workflow": workflow, "input": {"id": run_id}})
    if response.status_code != 202:
        raise BenchError(f"submitting a run: {response.status_code} {response.text}")


def send_floor_chain(bench: Bench, batch: str, item: str, length: int) -> None:
    url = f"{bench.fake.url}/v1/chat/completions"
    celery = bench.floor_celery
    first = celery.signature(FLOOR_TASK, args=("", batch, item, 1, url, MODEL), queue=FLOOR_QUEUE)
    rest = [
        celery.signature(FLOOR_TASK, args=(batch, item, k, url, MODEL), queue=FLOOR_QUEUE)
        for k in range(2, length + 1)
    ]
    celery_chain(first, *rest).apply_async()


def send_floor_task(bench: Bench, batch: str, item: str) -> None:
    url = f"{bench.fake.url}/v1/chat/completions"
    bench.floor_celery.send_task(
        FLOOR_TASK, args=["", batch, item, 1, url, MODEL], queue=FLOOR_QUEUE
    )


def floor_wall_time(bench: Bench, count: int, *, concurrency: int, processes: int = 1) -> float:
    """Wall time of `count` independent raw Celery floor tasks (HTTP call + one row) at
    fake-llm's current latency, `concurrency` threads split over `processes` workers:
    what this machine gives any Celery worker, before any orchestration."""
    batch = f"floor-{tag()}"
    for i in range(count):
        send_floor_task(bench, batch, str(i))
    bench.fake.reset()
    workers = []
    try:
        workers = [bench.start_floor_worker(concurrency // processes) for _ in range(processes)]
        last = bench.wait_for_floor(batch, count, timeout=600, procs=workers)
        calls = bench.fake.calls()
    finally:
        for worker in workers:
            worker.stop()
    return last - first_call(calls)


def paced(count: int, rate: float, action: Callable[[int], None]) -> None:
    """Call ``action(i)`` for i in range(count), ``rate`` times a second."""
    started = time.perf_counter()
    for i in range(count):
        delay = started + i / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        action(i)


def fake_count(bench: Bench) -> int:
    return int(httpx.get(f"{bench.fake.url}/_fake/calls?limit=0", timeout=10).json()["count"])


def wait_first_call(bench: Bench, *, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while fake_count(bench) == 0:
        if time.monotonic() > deadline:
            raise BenchError(f"no provider call within {timeout:.0f}s")
        time.sleep(0.02)
