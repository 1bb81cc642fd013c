"""Worker "servers" on one machine, for the scale-out test and benchmark: ownkey workers
that look like separate machines sharing one Redis, one database and one provider.

With root, `ip` and `unshare` (Linux), each server is a network namespace joined to a
private bridge by a veth pair, and its processes run under `unshare --uts` with the
server's own hostname. Redis, fake-llm and PostgreSQL (through a forwarder, since it
listens on loopback only) are reached over the bridge, so a server's traffic really
crosses a network, and `Server.unplug` (deleting its veth) cuts every connection it
has, as a server that vanishes would. Every name carries a per-run tag and
`ServerNetwork.close` removes them all, whatever happened before.

Elsewhere (a laptop without root) a server is a set of process groups whose Celery node
name carries the server's name (`--hostname worker@server-a`), which is what a step's
`worker_host` records; it shares the machine's network and hostname.
"""

from __future__ import annotations

import ipaddress
import os
import random
import secrets
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from sqlalchemy.engine import make_url

from shared.embedded_redis import EmbeddedRedis, start_redis
from tests.processes import FakeLLM, Proc, Stack, ownkey, start_fake_llm, start_stack, wait_until
from tests.tcp_proxy import TcpProxy

# Runs inside the server's UTS namespace: name the host, then become the real command.
_SET_HOSTNAME = (
    "import os, socket, sys; socket.sethostname(sys.argv[1]); os.execv(sys.argv[2], sys.argv[2:])"
)


def netns_available() -> bool:
    """Root, with `ip` and `unshare`: servers can be network namespaces."""
    return (
        sys.platform == "linux"
        and os.geteuid() == 0
        and shutil.which("ip") is not None
        and shutil.which("unshare") is not None
    )


def _ip(*args: str, check: bool = True) -> None:
    subprocess.run(["ip", *args], check=check, capture_output=True, timeout=30)


def _free_subnet() -> ipaddress.IPv4Network:
    """A /24 under 10.200.0.0/13 that no interface or route on this machine uses."""
    used = (
        subprocess.run(
            ["ip", "-4", "-o", "addr"], capture_output=True, text=True, check=True
        ).stdout
        + subprocess.run(["ip", "-4", "route"], capture_output=True, text=True).stdout
    )
    for _ in range(100):
        second, third = random.randint(200, 207), random.randint(0, 255)
        if f"10.{second}.{third}." not in used:
            return ipaddress.IPv4Network(f"10.{second}.{third}.0/24")
    raise RuntimeError("no free 10.200.0.0/13 subnet for the servers' bridge")


@dataclass
class Server:
    name: str  # its hostname, and the host part of its workers' node names
    address: str  # where its processes' connections come from
    netns: str | None = None
    veth: str | None = None  # the bridge's end of its veth pair
    procs: list[Proc] = field(default_factory=list)

    @property
    def prefix(self) -> list[str]:
        """The command prefix that runs a process on this server."""
        if self.netns is None:
            return []
        return [
            "ip", "netns", "exec", self.netns, "unshare", "--uts", "--",
            sys.executable, "-c", _SET_HOSTNAME, self.name,
        ]  # fmt: skip

    def kill(self) -> None:
        """SIGKILL every process of this server (each is its own process group)."""
        for proc in self.procs:
            proc.stop(signal.SIGKILL)

    def unplug(self) -> None:
        """Delete the server's veth pair: its processes live on with no network at all."""
        if self.veth is None:
            raise RuntimeError("only a network-namespace server can be unplugged")
        _ip("link", "del", self.veth)


class ServerNetwork:
    """The servers of one test or benchmark pass, and the address they reach the shared
    services at (`hub`): the bridge's own address, or loopback without namespaces."""

    def __init__(self, *, isolated: bool | None = None) -> None:
        self.isolated = netns_available() if isolated is None else isolated
        self.tag = secrets.token_hex(3)
        self.servers: list[Server] = []
        self.hub = "127.0.0.1"
        self.bridge: str | None = None
        if self.isolated:
            self._subnet = _free_subnet()
            self.bridge = f"okbr{self.tag}"
            self.hub = str(self._subnet.network_address + 1)
            try:
                _ip("link", "add", self.bridge, "type", "bridge")
                _ip("addr", "add", f"{self.hub}/24", "dev", self.bridge)
                _ip("link", "set", self.bridge, "up")
            except BaseException:
                self.close()
                raise

    @property
    def flavour(self) -> str:
        return "network namespaces" if self.isolated else "process groups"

    def add_server(self, name: str) -> Server:
        index = len(self.servers)
        if not self.isolated:
            server = Server(name=name, address="127.0.0.1")
            self.servers.append(server)
            return server
        address = str(self._subnet.network_address + 10 + index)
        server = Server(
            name=name,
            address=address,
            netns=f"ownkey-{self.tag}-{index}",
            veth=f"okv{self.tag}{index}",
        )
        self.servers.append(server)  # before creating anything: close() removes it all
        assert server.netns and server.veth and self.bridge
        _ip("netns", "add", server.netns)
        _ip(
            "link",
            "add",
            server.veth,
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            server.netns,
        )
        _ip("link", "set", server.veth, "master", self.bridge, "up")
        _ip("-n", server.netns, "addr", "add", f"{address}/24", "dev", "eth0")
        _ip("-n", server.netns, "link", "set", "eth0", "up")
        _ip("-n", server.netns, "link", "set", "lo", "up")
        return server

    def close(self) -> None:
        """Kill every server's processes, then remove every namespace, veth and the
        bridge. Idempotent; never raises for what is already gone."""
        for server in self.servers:
            server.kill()
            if server.veth:
                _ip("link", "del", server.veth, check=False)
            if server.netns:
                _ip("netns", "del", server.netns, check=False)
        self.servers = []
        if self.bridge:
            _ip("link", "del", self.bridge, check=False)
            self.bridge = None

    def __enter__(self) -> ServerNetwork:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


@dataclass
class Cluster:
    """One Redis, one fake-llm and the API (plus beat, if asked) on the machine itself,
    the database given; workers run on the network's servers."""

    net: ServerNetwork
    redis: EmbeddedRedis
    fake: FakeLLM
    stack: Stack
    server_env: dict[str, str]  # the environment of a server's processes
    proxy: TcpProxy | None = None

    def start_worker(self, server: Server, *, concurrency: int) -> Proc:
        """`ownkey worker` on `server` (threads pool); returns once it consumes."""
        name = f"{server.name}-worker{len(server.procs)}"
        proc = ownkey(
            ["worker", "--hostname", f"{name}@{server.name}", "--pool", "threads",
             "--concurrency", str(concurrency)],
            env=self.server_env,
            log_dir=self.stack.log_dir,
            name=name,
            prefix=server.prefix,
        )  # fmt: skip
        server.procs.append(proc)
        wait_until(lambda: " ready." in proc.log(), timeout=60, what=f"worker {name}", proc=proc)
        return proc

    def stop(self) -> None:
        self.net.close()
        self.stack.stop()
        self.fake.proc.stop()
        self.redis.stop()
        if self.proxy is not None:
            self.proxy.close()


def start_cluster(
    workdir: Path,
    env: dict[str, str],
    database_url: str,
    net: ServerNetwork,
    *,
    beat: bool,
    token: str | None = None,
) -> Cluster:
    """Redis and fake-llm on the network's hub address, the API (and beat) on loopback;
    a PostgreSQL database is forwarded onto the bridge for the servers. With `token`, the
    database is already migrated and that API token is used (see `start_stack`)."""
    workdir.mkdir(parents=True, exist_ok=True)
    started: list[EmbeddedRedis | Proc | Stack | TcpProxy] = []
    try:
        redis_server = start_redis(workdir / "redis", host=net.hub)
        started.append(redis_server)
        env = {k: v for k, v in env.items() if k != "CELERY_BROKER_URL"}
        env.update(OWNKEY_REDIS_URL=redis_server.url, OWNKEY_DATABASE_URL=database_url)
        fake = start_fake_llm(env, workdir, host=net.hub)
        started.append(fake.proc)
        server_env, proxy = dict(env), None
        url = make_url(database_url)
        if net.isolated and url.get_backend_name() == "postgresql":
            proxy = TcpProxy(
                (url.host or "127.0.0.1", url.port or 5432), host=net.hub, dead_peer_after=4.0
            )
            started.append(proxy)
            server_env["OWNKEY_DATABASE_URL"] = url.set(
                host=net.hub, port=proxy.port
            ).render_as_string(hide_password=False)
        stack = start_stack(env, workdir, workers=0, token=token)
        started.append(stack)
        if beat:
            stack.procs.append(ownkey(["beat"], env=env, log_dir=workdir, name="beat"))
        return Cluster(
            net=net, redis=redis_server, fake=fake, stack=stack, server_env=server_env, proxy=proxy
        )
    except BaseException:
        for thing in reversed(started):
            thing.close() if isinstance(thing, TcpProxy) else thing.stop()
        raise
