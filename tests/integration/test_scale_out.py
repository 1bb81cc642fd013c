"""Scale-out: two worker "servers" (tests/servers.py) share one Redis, one PostgreSQL
database and one provider. Steps spread over both, each recording its server as the
worker host, and when one server goes away mid-run (its processes SIGKILLed, or its
network removed) every run still succeeds, on the server that is left.

The network-namespace flavour needs root and `ip`; under CI=true it must run. The
process-group flavour runs anywhere and names servers by Celery node name only.
"""

from __future__ import annotations

import collections
import os
import secrets
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import bindparam, create_engine, text

from tests.integration.conftest import _base_env, postgres_url
from tests.integration.test_faults import (
    FAST_RECOVERY,
    calls_per_prompt,
    setup_workflow,
    submit,
    wait_all,
)
from tests.processes import wait_until
from tests.servers import Cluster, Server, ServerNetwork, netns_available, start_cluster

RUNS = 40
STEPS = 2
CONCURRENCY = 8  # per server: 16 slots for 80 one-second steps


@pytest.fixture(scope="module")
def cluster(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    isolated = request.param == "netns"
    if isolated and not netns_available():
        message = "network-namespace servers need root, `ip` and `unshare`"
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true: {message}")
        pytest.skip(message)
    pg = postgres_url()
    database_url = next(pg)
    workdir = tmp_path_factory.mktemp(f"scale-out-{request.param}")
    env = _base_env(workdir)
    env.update(FAST_RECOVERY)
    try:
        with ServerNetwork(isolated=isolated) as net:
            running = start_cluster(workdir, env, database_url, net, beat=True)
            try:
                yield running
            finally:
                running.stop()
    finally:
        next(pg, None)


def succeeded_per_host(database_url: str, run_ids: list[str]) -> collections.Counter[str]:
    engine = create_engine(database_url)
    try:
        with engine.connect() as db:
            rows = db.execute(
                text(
                    "SELECT worker_host, count(*) FROM step_runs"
                    " WHERE status = 'succeeded' AND run_id IN :ids GROUP BY worker_host"
                ).bindparams(bindparam("ids", expanding=True)),
                {"ids": run_ids},
            ).all()
    finally:
        engine.dispose()
    return collections.Counter({str(host).partition("@")[2]: int(n) for host, n in rows})


def server_of(step: dict[str, Any]) -> str:
    """The server a step ran on: the host part of the worker's node name, which
    `worker_host` records (`worker@server-a`)."""
    return str(step["worker_host"]).partition("@")[2]


def _utc(stamp: str) -> datetime:
    moment = datetime.fromisoformat(stamp)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def kill(server: Server) -> None:
    server.kill()


def unplug(server: Server) -> None:
    server.unplug()


# Without namespaces a server can only be killed: its network is the machine's own.
@pytest.mark.parametrize(
    ("cluster", "fault"),
    [("netns", kill), ("netns", unplug), ("processes", kill)],
    ids=["netns-sigkill", "netns-unplug", "processes-sigkill"],
    indirect=["cluster"],
)
def test_steps_spread_over_two_servers_and_losing_one_mid_run_loses_no_run(
    cluster: Cluster, fault: Callable[[Server], None]
) -> None:
    suffix = secrets.token_hex(2)
    leaving = cluster.net.add_server(f"server-a-{suffix}")
    staying = cluster.net.add_server(f"server-b-{suffix}")
    database_url = cluster.stack.env["OWNKEY_DATABASE_URL"]
    fake = cluster.fake
    fake.configure(latency_seconds=1.0)
    try:
        for server in (leaving, staying):
            cluster.start_worker(server, concurrency=CONCURRENCY)
        with cluster.stack.client() as api:
            workflow = setup_workflow(api, fake, steps=STEPS)
            run_ids = submit(api, workflow, RUNS)
            # (a) both servers take steps before either goes away.
            wait_until(
                lambda: len(succeeded_per_host(database_url, run_ids)) == 2,
                timeout=30,
                what="a finished step on each server",
            )
            gone_at = datetime.now(UTC)
            fault(leaving)
            runs = wait_all(api, run_ids, timeout=90)
    finally:
        fake.configure(latency_seconds=0.0)
        leaving.kill()
        staying.kill()

    # (c) nothing lost: every run succeeded, every step once, on one of the two servers.
    assert [r["status"] for r in runs] == ["succeeded"] * RUNS
    steps = [step for run in runs for step in run["steps"]]
    assert len(steps) == RUNS * STEPS
    for step in steps:
        successes = [a for a in step["attempt_log"] if a["status_code"] == 200]
        assert step["status"] == "succeeded" and len(successes) == 1
    assert {server_of(step) for step in steps} == {leaving.name, staying.name}
    # The server that went away finished nothing afterwards: the other one did the rest.
    after = [step for step in steps if _utc(step["finished_at"]) > gone_at]
    assert after and {server_of(step) for step in after} == {staying.name}
    # Each step reached the provider; only one that was in flight on the lost server
    # may have reached it twice.
    counts = calls_per_prompt(fake, workflow)
    assert len(counts) == RUNS * STEPS
    assert max(counts.values()) <= 2
    assert sum(n - 1 for n in counts.values()) <= CONCURRENCY
