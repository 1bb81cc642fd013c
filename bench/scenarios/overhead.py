"""Scenario 1: per-step orchestration overhead in a 5-step linear workflow.

A hop is the time from one step's provider answer leaving fake-llm (``t_done``) to the
next step's call arriving there (``t``): both ends on fake-llm's clock, so the figure
covers everything between two provider calls — the worker storing the result, deciding
the successor, the broker round trip, the next claim and render. Runs are submitted at a
steady pace (``chain_rate`` a second, well below either side's capacity, so a hop
measures orchestration and not a queue) after a few warm-up runs, the same for ownkey
(through its API) and for the floor (a raw Celery chain sent from this process).
"""

from __future__ import annotations

from bench.harness import Bench, BenchError
from bench.results import Figure, ScenarioResult, at_most, ratio
from bench.scale import Scale
from bench.scenarios.common import chain, paced, send_floor_chain, submit_run, tag
from bench.stats import hops, percentile

LENGTH = 5


def run(bench: Bench, scale: Scale, result: ScenarioResult) -> None:
    t = tag()
    ownkey = _ownkey_hops(bench, scale, t)
    bench.purge_queues()
    floor = _floor_hops(bench, scale, t)
    expected = scale.chain_runs * (LENGTH - 1)
    for name, gaps in (("ownkey", ownkey), ("floor", floor)):
        if len(gaps) != expected:
            raise BenchError(f"{name}: {len(gaps)} hops measured, {expected} expected")
    for q, limit in ((50, 2.0), (99, 3.0)):
        mine, base = percentile(ownkey, q) * 1000, percentile(floor, q) * 1000
        r = ratio(mine, base)
        result.add(
            Figure(
                metric=f"hop overhead p{q}",
                value=mine,
                unit="ms",
                baseline=base,
                baseline_name="raw Celery chain",
                ratio=r,
                ratio_label="ownkey/floor",
                target=f"<= {limit:g}x",
                passed=at_most(r, limit),
            )
        )
    result.notes.append(
        f"{scale.chain_runs} runs x {LENGTH - 1} hops each, submitted at "
        f"{scale.chain_rate:g} runs/s after {scale.warmup_runs} warm-up runs; "
        f"worker concurrency {scale.concurrency}."
    )


def _ownkey_hops(bench: Bench, scale: Scale, t: str) -> list[float]:
    name = f"bench-chain-{t}"
    workflow_id = bench.create_workflow(name, chain(bench.agent, LENGTH))
    worker = bench.start_worker(scale.concurrency)
    try:
        with bench.api() as api:
            for i in range(scale.warmup_runs):
                submit_run(api, name, f"w{t}-{i}")
            bench.wait_for_steps(
                workflow_id, LENGTH * scale.warmup_runs, timeout=120, procs=[worker]
            )
            bench.fake.reset()
            paced(scale.chain_runs, scale.chain_rate, lambda i: submit_run(api, name, f"m{t}-{i}"))
        total = LENGTH * (scale.warmup_runs + scale.chain_runs)
        bench.wait_for_steps(workflow_id, total, timeout=300, procs=[worker])
        calls = bench.fake.calls()
    finally:
        worker.stop()
    return hops(calls, prefix=f"m{t}-")


def _floor_hops(bench: Bench, scale: Scale, t: str) -> list[float]:
    worker = bench.start_floor_worker(scale.concurrency)
    try:
        warm, batch = f"chain-w{t}", f"chain-m{t}"
        for i in range(scale.warmup_runs):
            send_floor_chain(bench, warm, f"w{t}-{i}", LENGTH)
        bench.wait_for_floor(warm, LENGTH * scale.warmup_runs, timeout=120, procs=[worker])
        bench.fake.reset()
        paced(
            scale.chain_runs,
            scale.chain_rate,
            lambda i: send_floor_chain(bench, batch, f"m{t}-{i}", LENGTH),
        )
        bench.wait_for_floor(batch, LENGTH * scale.chain_runs, timeout=300, procs=[worker])
        calls = bench.fake.calls()
    finally:
        worker.stop()
    return hops(calls, prefix=f"m{t}-")
