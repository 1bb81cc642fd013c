"""Scenarios 3 and 6: many slow provider calls in flight in one worker process.

1,000 single-step runs (full scale) are submitted while no worker runs; one worker with
the threads pool then executes them against fake-llm answering after 2 s. Wall time is
the first provider call (fake-llm's log) to the last step's ``finished_at`` in SQL,
set against the ideal ``ceil(N / concurrency) x latency`` and against a hand-written
asyncio script making the same calls at the same concurrency (first call to last parsed
answer). For scale, the same number of raw Celery floor tasks run through one worker
with the same pool and threads. The worker's peak RSS (VmHWM) is scenario 6.
"""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
from typing import Any

from bench.harness import REPO, Bench, BenchError, peak_rss_mb
from bench.results import Figure, ScenarioResult, at_least, at_most, ratio
from bench.scale import Scale
from bench.scenarios.common import floor_wall_time, single_step, submit_runs, tag
from bench.stats import first_call


def run(
    bench: Bench, scale: Scale, result: ScenarioResult, memory: ScenarioResult | None = None
) -> None:
    n, latency, concurrency = scale.inflight_runs, scale.inflight_latency, scale.concurrency
    ideal = math.ceil(n / concurrency) * latency
    bench.fake.configure(latency_seconds=latency)
    try:
        wall, rss = _ownkey(bench, scale)
        floor = floor_wall_time(bench, n, concurrency=concurrency)
        scripts = {"httpx": _script(bench, scale, "httpx", result)}
        if importlib.util.find_spec("aiohttp"):
            scripts["aiohttp"] = _script(bench, scale, "aiohttp", result)
    finally:
        bench.fake.configure(latency_seconds=0.0)
    r = ratio(wall, ideal)
    result.add(
        Figure(
            metric="wall time",
            value=wall,
            unit="s",
            baseline=ideal,
            baseline_name="ideal N x latency / concurrency",
            ratio=r,
            ratio_label="ownkey/ideal",
            target="<= 1.15x",
            passed=at_most(r, 1.15),
        )
    )
    result.add(
        Figure(
            metric="wall time, raw Celery tasks",
            value=floor,
            unit="s",
            baseline=ideal,
            baseline_name="same ideal",
            ratio=ratio(floor, ideal),
            ratio_label="floor/ideal",
        )
    )
    for client, script_wall in scripts.items():
        # Throughput ratio: ownkey's calls per second over the script's.
        r = ratio(script_wall, wall)
        result.add(
            Figure(
                metric=f"throughput vs asyncio+{client}",
                value=wall,
                unit="s",
                baseline=script_wall,
                baseline_name=f"asyncio + {client} script (wall s)",
                ratio=r,
                ratio_label="ownkey/script throughput",
                target=">= 0.85x",
                passed=at_least(r, 0.85),
            )
        )
    result.notes.append(
        f"{n} single-step runs, fake-llm latency {latency:g} s, one worker process, "
        f"threads pool, concurrency {concurrency}; ideal {ideal:g} s."
    )
    if "aiohttp" not in scripts:
        result.notes.append("aiohttp is not installed: only the httpx script was measured.")
    if memory is not None:
        memory.add(
            Figure(
                metric="worker peak RSS (VmHWM)",
                value=rss,
                unit="MiB",
                target="<= 300 MB",
                passed=rss * 1024 * 1024 <= 300e6,
            )
        )
        memory.notes.append(
            f"One worker process during scenario 3 ({min(n, concurrency)} calls in flight)."
        )


def _ownkey(bench: Bench, scale: Scale) -> tuple[float, float]:
    t = tag()
    name = f"bench-inflight-{t}"
    workflow_id = bench.create_workflow(name, single_step(bench.agent))
    submit_runs(bench, name, [f"{t}-{i}" for i in range(scale.inflight_runs)])
    bench.fake.reset()
    worker = bench.start_worker(scale.concurrency)
    try:
        bench.wait_for_steps(workflow_id, scale.inflight_runs, timeout=600, procs=[worker])
        rss = peak_rss_mb(worker.process.pid)
        calls = bench.fake.calls()
    finally:
        worker.stop()
    return bench.last_step_finished(workflow_id) - first_call(calls), rss


def _script(bench: Bench, scale: Scale, client: str, result: ScenarioResult) -> float:
    bench.fake.reset()
    command = [
        sys.executable,
        "-m",
        "bench.asyncio_script",
        "--client",
        client,
        "--url",
        f"{bench.fake.url}/v1/chat/completions",
        "--calls",
        str(scale.inflight_runs),
        "--concurrency",
        str(scale.concurrency),
    ]
    done = subprocess.run(
        command, cwd=REPO, env=bench.env, capture_output=True, text=True, timeout=600
    )
    if done.returncode != 0:
        raise BenchError(f"the asyncio {client} script failed: {done.stderr[-2000:]}")
    outcome: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    if outcome["last_done"] is None:
        raise BenchError(f"the asyncio {client} script: no call succeeded {outcome}")
    failed = scale.inflight_runs - int(outcome["ok"])
    if failed:
        result.notes.append(
            f"the asyncio {client} script: {failed} of {scale.inflight_runs} calls failed "
            f"(e.g. {outcome['errors'][:2]})"
        )
    return float(outcome["last_done"]) - first_call(bench.fake.calls())
