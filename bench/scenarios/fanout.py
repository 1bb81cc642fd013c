"""Scenario 4: fan-out and join. Each run has 10 parallel steps joined by one step.

The runs are submitted while no worker runs; one worker then executes them against
fake-llm with a latency. Wall time runs from the first provider call to the last step's
``finished_at``; the ideal is the larger of the critical path (2 x latency) and the
total call-seconds divided by the concurrency.

For scale, the same number of raw Celery floor tasks (HTTP call + one row, no
dependencies at all) run through the same two worker processes: what this machine gives
any Celery worker at this rate, before any orchestration.
"""

from __future__ import annotations

from bench.harness import Bench
from bench.results import Figure, ScenarioResult, at_most, ratio
from bench.scale import Scale
from bench.scenarios.common import fan_out, floor_wall_time, submit_runs, tag
from bench.stats import first_call

WIDTH = 10


def _measure(bench: Bench, scale: Scale, processes: int) -> tuple[float, float]:
    """Wall time and ideal of one pass, with `processes` worker processes sharing the
    scenario's concurrency."""
    runs, latency, concurrency = scale.fanout_runs, scale.fanout_latency, scale.concurrency
    steps = runs * (WIDTH + 1)
    ideal = max(2 * latency, steps * latency / concurrency)
    t = tag()
    name = f"bench-fanout-{processes}p-{t}"
    workflow_id = bench.create_workflow(name, fan_out(bench.agent, WIDTH))
    submit_runs(bench, name, [f"{t}-{i}" for i in range(runs)])
    bench.fake.configure(latency_seconds=latency)
    workers = []
    try:
        bench.fake.reset()
        workers = [bench.start_worker(concurrency // processes) for _ in range(processes)]
        bench.wait_for_steps(workflow_id, steps, timeout=600, procs=workers)
        calls = bench.fake.calls()
    finally:
        for worker in workers:
            worker.stop()
        bench.fake.configure(latency_seconds=0.0)
    return bench.last_step_finished(workflow_id) - first_call(calls), ideal


def run(bench: Bench, scale: Scale, result: ScenarioResult) -> None:
    runs, latency, concurrency = scale.fanout_runs, scale.fanout_latency, scale.concurrency
    steps = runs * (WIDTH + 1)
    ideal_seconds = max(2 * latency, steps * latency / concurrency)
    for processes, target in ((1, None), (2, "<= 1.2x")):
        wall, ideal = _measure(bench, scale, processes)
        r = ratio(wall, ideal)
        result.add(
            Figure(
                metric=f"wall time, {processes} worker process{'es' if processes > 1 else ''}",
                value=wall,
                unit="s",
                baseline=ideal,
                baseline_name="ideal max(2 x latency, calls x latency / concurrency)",
                ratio=r,
                ratio_label="ownkey/ideal",
                target=target or "",
                passed=at_most(r, 1.2) if target else None,
            )
        )
    bench.fake.configure(latency_seconds=latency)
    try:
        floor = floor_wall_time(bench, steps, concurrency=concurrency, processes=2)
    finally:
        bench.fake.configure(latency_seconds=0.0)
    result.add(
        Figure(
            metric="wall time, raw Celery tasks, 2 processes",
            value=floor,
            unit="s",
            baseline=ideal_seconds,
            baseline_name="same ideal",
            ratio=ratio(floor, ideal_seconds),
            ratio_label="floor/ideal",
        )
    )
    result.notes.append(
        f"{runs} runs x ({WIDTH} parallel + 1 join) = {steps} steps, latency {latency:g} s, "
        f"total concurrency {concurrency}: one worker process, then two (one per core) with "
        f"{concurrency // 2} threads each; ideal {ideal_seconds:g} s. "
        "The target is read on the two-process figure: one process is held by the GIL to "
        "one core, and this scenario needs more CPU per second than one core gives."
    )
