"""Scenario 5: POST /api/v1/runs from concurrent keep-alive clients, no worker running.

The same load then goes to the floor endpoint (bench.floor: one row, one task) served by
uvicorn exactly as ``ownkey api`` serves ownkey. The queues are purged afterwards.
"""

from __future__ import annotations

from bench.harness import Bench, BenchError
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
    try:
        mine = post_load(
            f"{bench.stack.api_url}/api/v1/runs",
            lambda n: {"workflow": name, "input": {"id": f"{t}-{n}"}},
            headers={"Authorization": f"Bearer {bench.stack.token}"},
            clients=scale.submit_clients,
            duration=scale.submit_seconds,
        )
        bench.purge_queues()
        port = free_port()
        floor_api = bench.start_floor_api(port)
        try:
            floor = post_load(
                f"http://127.0.0.1:{port}/floor/runs",
                lambda n: {"workflow": name, "input": {"id": f"{t}-{n}"}},
                clients=scale.submit_clients,
                duration=scale.submit_seconds,
            )
        finally:
            floor_api.stop()
    finally:
        bench.purge_queues()
    for label, load in (("ownkey", mine), ("floor", floor)):
        if not load.ok:
            raise BenchError(f"{label}: no request succeeded: {load.error_samples}")
    _figures(result, mine, floor)
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
