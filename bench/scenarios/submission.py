"""Scenario 5: POST /api/v1/runs from concurrent keep-alive clients, no worker running.

The same load then goes to the floor endpoint (bench.floor: one row, one task) served by
uvicorn exactly as ``ownkey api`` serves ownkey. The queues are purged afterwards.
"""

from __future__ import annotations

from bench.harness import Bench, BenchError, cpu_seconds
from bench.loadgen import LoadResult, post_load
from bench.results import Figure, ScenarioResult, at_least, at_most, ratio
from bench.scale import Scale
from bench.scenarios.common import single_step, tag
from bench.stats import percentile
from shared.embedded_redis import free_port


def run(bench: Bench, scale: Scale, result: ScenarioResult) -> None:
    t = tag()
    name = f"bench-submit-{t}"
    bench.create_workflow(name, single_step(bench.agent))
    api_pid = bench.stack.procs[0].process.pid  # start_stack starts the API first
    try:
        cpu_start = cpu_seconds(api_pid)
        mine = post_load(
            f"{bench.stack.api_url}/api/v1/runs",
            lambda n: {"workflow": name, "input": {"id": f"{t}-{n}"}},
            headers={"Authorization": f"Bearer {bench.stack.token}"},
            clients=scale.submit_clients,
            duration=scale.submit_seconds,
        )
        mine_cpu = cpu_seconds(api_pid) - cpu_start
        bench.purge_queues()
        port = free_port()
        floor_api = bench.start_floor_api(port)
        try:
            cpu_start = cpu_seconds(floor_api.process.pid)
            floor = post_load(
                f"http://127.0.0.1:{port}/floor/runs",
                lambda n: {"workflow": name, "input": {"id": f"{t}-{n}"}},
                clients=scale.submit_clients,
                duration=scale.submit_seconds,
            )
            floor_cpu = cpu_seconds(floor_api.process.pid) - cpu_start
        finally:
            floor_api.stop()
    finally:
        bench.purge_queues()
    for label, load in (("ownkey", mine), ("floor", floor)):
        if not load.ok:
            raise BenchError(f"{label}: no request succeeded: {load.error_samples}")
    _figures(result, mine, floor)
    mine_ms, floor_ms = (
        cpu * 1000 / max(load.ok + load.errors, 1)
        for cpu, load in ((mine_cpu, mine), (floor_cpu, floor))
    )
    result.add(
        Figure(
            metric="API CPU per request",
            value=mine_ms,
            unit="ms",
            baseline=floor_ms,
            baseline_name="floor endpoint",
            ratio=ratio(mine_ms, floor_ms),
            ratio_label="ownkey/floor",
        )
    )
    result.notes.append(
        f"{scale.submit_clients} keep-alive clients for {scale.submit_seconds:g} s each, "
        f"ownkey then the floor; status codes ownkey {mine.statuses}, floor {floor.statuses}."
    )
    for label, load in (("ownkey", mine), ("floor", floor)):
        if load.error_samples:
            result.notes.append(f"{label} errors, e.g. {load.error_samples[:3]}")


def _figures(result: ScenarioResult, mine: LoadResult, floor: LoadResult) -> None:
    r = ratio(mine.rps, floor.rps)
    result.add(
        Figure(
            metric="requests/s",
            value=mine.rps,
            unit="req/s",
            baseline=floor.rps,
            baseline_name="floor endpoint",
            ratio=r,
            ratio_label="ownkey/floor",
            target=">= 0.7x",
            passed=at_least(r, 0.7),
        )
    )
    result.add(
        Figure(
            metric="requests/s (absolute)",
            value=mine.rps,
            unit="req/s",
            target=">= 250/s",
            passed=mine.rps >= 250,
        )
    )
    result.add(
        Figure(
            metric="latency p50",
            value=percentile(mine.latencies, 50) * 1000,
            unit="ms",
            baseline=percentile(floor.latencies, 50) * 1000,
            baseline_name="floor endpoint",
            ratio=ratio(percentile(mine.latencies, 50), percentile(floor.latencies, 50)),
            ratio_label="ownkey/floor",
        )
    )
    p99 = ratio(percentile(mine.latencies, 99), percentile(floor.latencies, 99))
    result.add(
        Figure(
            metric="latency p99",
            value=percentile(mine.latencies, 99) * 1000,
            unit="ms",
            baseline=percentile(floor.latencies, 99) * 1000,
            baseline_name="floor endpoint",
            ratio=p99,
            ratio_label="ownkey/floor",
            target="<= 1.5x",
            passed=at_most(p99, 1.5),
        )
    )
    result.add(
        Figure(
            metric="errors",
            value=float(mine.errors),
            unit="",
            baseline=float(floor.errors),
            baseline_name="floor endpoint",
            target="0",
            passed=mine.errors == 0,
        )
    )
