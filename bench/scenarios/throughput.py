"""Scenario 2: steps per second of one worker process at zero provider latency.

The runs are submitted through the API while no worker runs; then one worker starts and
the clock runs from the first provider call (fake-llm's log) to the last step's
``finished_at`` in SQL. The floor: the same number of raw Celery tasks (HTTP call + one
row) sent from this process while its worker is stopped, timed from the first provider
call to the last row's ``done_at``. Worker CPU per step comes from /proc (user + system,
from the first call to the end) and shows where the time goes.
"""

from __future__ import annotations

from bench.harness import Bench, cpu_seconds
from bench.results import Figure, ScenarioResult, at_least, ratio
from bench.scale import Scale
from bench.scenarios.common import (
    send_floor_task,
    single_step,
    submit_runs,
    tag,
    wait_first_call,
)
from bench.stats import first_call


def run(bench: Bench, scale: Scale, result: ScenarioResult) -> None:
    n = scale.throughput_runs
    t = tag()
    mine, mine_cpu = _ownkey(bench, scale, t)
    bench.purge_queues()
    floor, floor_cpu = _floor(bench, scale, t)
    r = ratio(mine, floor)
    result.add(
        Figure(
            metric="steps/s",
            value=mine,
            unit="steps/s",
            baseline=floor,
            baseline_name="raw Celery tasks",
            ratio=r,
            ratio_label="ownkey/floor",
            target=">= 0.5x",
            passed=at_least(r, 0.5),
        )
    )
    result.add(
        Figure(
            metric="worker CPU per step",
            value=mine_cpu * 1000 / n,
            unit="ms",
            baseline=floor_cpu * 1000 / n,
            baseline_name="raw Celery tasks",
            ratio=ratio(mine_cpu, floor_cpu),
            ratio_label="ownkey/floor",
        )
    )
    result.notes.append(
        f"{n} single-step runs submitted through the API before the worker started; "
        f"one worker process, threads pool, concurrency {scale.concurrency}."
    )


def _ownkey(bench: Bench, scale: Scale, t: str) -> tuple[float, float]:
    name = f"bench-single-{t}"
    workflow_id = bench.create_workflow(name, single_step(bench.agent))
    submit_runs(bench, name, [f"{t}-{i}" for i in range(scale.throughput_runs)])
    bench.fake.reset()
    worker = bench.start_worker(scale.concurrency)
    try:
        wait_first_call(bench, timeout=60)
        cpu_start = cpu_seconds(worker.process.pid)
        bench.wait_for_steps(workflow_id, scale.throughput_runs, timeout=600, procs=[worker])
        cpu = cpu_seconds(worker.process.pid) - cpu_start
        calls = bench.fake.calls()
    finally:
        worker.stop()
    last = bench.last_step_finished(workflow_id)
    return scale.throughput_runs / (last - first_call(calls)), cpu


def _floor(bench: Bench, scale: Scale, t: str) -> tuple[float, float]:
    batch = f"single-{t}"
    for i in range(scale.throughput_runs):
        send_floor_task(bench, batch, f"{t}-{i}")
    bench.fake.reset()
    worker = bench.start_floor_worker(scale.concurrency)
    try:
        wait_first_call(bench, timeout=60)
        cpu_start = cpu_seconds(worker.process.pid)
        last = bench.wait_for_floor(batch, scale.throughput_runs, timeout=600, procs=[worker])
        cpu = cpu_seconds(worker.process.pid) - cpu_start
        calls = bench.fake.calls()
    finally:
        worker.stop()
    return scale.throughput_runs / (last - first_call(calls)), cpu
