"""Scenario 8: scale-out across worker servers.

Worker "servers" (tests/servers.py: network namespaces on a private bridge, each with its
own hostname, when run as root; process groups with their own Celery node name
elsewhere) share one Redis, the bench's database and one fake-llm with a fixed latency,
all started for this scenario. Each server runs one worker with the same modest
concurrency, so the bound is the worker slots, not the CPU: ideally each server adds
concurrency / latency steps per second.

N single-step runs go through one server, then N more through two. The servers are
consuming, and warmed up by a few untimed runs (a new worker's first calls open its
database connections and HTTP clients), before the runs are submitted; the clock runs
from the first provider call (fake-llm's log) to the last step's ``finished_at`` in SQL.
The per-server split comes from each step's ``worker_host``.
"""

from __future__ import annotations

from bench.harness import Bench, create_agent
from bench.results import Figure, ScenarioResult, at_least, ratio
from bench.scale import Scale
from bench.scenarios.common import single_step, submit_runs, tag
from bench.stats import first_call
from tests.processes import Proc
from tests.servers import Cluster, Server, ServerNetwork, start_cluster


def _pass(
    bench: Bench, cluster: Cluster, agent: str, runs: int, workers: list[Proc]
) -> tuple[float, dict[str, int]]:
    """Steps per second of `runs` single-step runs on the running workers, and the
    steps each worker host ran."""
    t = tag()
    name = f"bench-scaleout-{len(workers)}-{t}"
    workflow_id = bench.create_workflow(name, single_step(agent))
    cluster.fake.reset()
    submit_runs(bench, name, [f"{t}-{i}" for i in range(runs)], stack=cluster.stack)
    bench.wait_for_steps(workflow_id, runs, timeout=600, procs=workers)
    first = first_call(cluster.fake.calls())
    return runs / (bench.last_step_finished(workflow_id) - first), bench.steps_per_host(workflow_id)


def run(bench: Bench, scale: Scale, result: ScenarioResult) -> None:
    runs, latency, concurrency = (
        scale.scaleout_runs,
        scale.scaleout_latency,
        scale.scaleout_concurrency,
    )
    with ServerNetwork() as net:
        cluster = start_cluster(
            bench.workdir / "scaleout",
            bench.env,
            bench.database_url,
            net,
            beat=False,
            token=bench.stack.token,
        )
        try:
            agent = f"bench-scaleout-{tag()}"
            with cluster.stack.client() as api:
                create_agent(api, name=agent, fake_url=cluster.fake.url)
            cluster.fake.configure(latency_seconds=latency)
            servers: list[Server] = []
            workers: list[Proc] = []
            passes: list[tuple[float, dict[str, int]]] = []
            for label in ("server-a", "server-b"):
                servers.append(net.add_server(f"{label}-{net.tag}"))
                workers.append(cluster.start_worker(servers[-1], concurrency=concurrency))
                # Untimed warm-up: a cold worker took seconds over its first calls here.
                _pass(bench, cluster, agent, 3 * concurrency * len(workers), workers)
                passes.append(_pass(bench, cluster, agent, runs, workers))
        finally:
            cluster.stop()
    (one, _), (two, split) = passes
    r = ratio(two, one)
    ideal = concurrency / latency
    result.add(Figure(metric="steps/s, 1 server", value=one, unit="steps/s"))
    result.add(
        Figure(
            metric="steps/s, 2 servers",
            value=two,
            unit="steps/s",
            baseline=one,
            baseline_name="1 server",
            ratio=r,
            ratio_label="2 servers/1 server",
            target=">= 1.8x",
            passed=at_least(r, 1.8),
        )
    )
    shares = ", ".join(f"{host} {n}" for host, n in sorted(split.items()))
    result.notes.append(
        f"{runs} single-step runs per pass, fake-llm latency {latency:g} s, one worker per "
        f"server (threads pool, concurrency {concurrency}; ideal {ideal:g} steps/s per "
        f"server). Servers as {net.flavour}. Steps per server with two: {shares}."
    )
