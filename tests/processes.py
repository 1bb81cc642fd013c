"""Real ownkey processes for integration tests: Redis, fake-llm, the API, workers.

Each process writes its output to a log file that tests may read (the secret-leak
test greps them all), and is stopped with its whole process group.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from shared.embedded_redis import free_port


@dataclass
class Proc:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def stop(self, sig: signal.Signals = signal.SIGTERM, timeout: float = 20.0) -> None:
        if self.process.poll() is not None:
            return
        try:
            os.killpg(self.process.pid, sig)
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        except ProcessLookupError:
            pass

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def ownkey(
    args: list[str],
    *,
    env: dict[str, str],
    log_dir: Path,
    name: str,
    prefix: Sequence[str] = (),
) -> Proc:
    """`ownkey ARGS` in its own session; `prefix` wraps it (tests/servers.py runs a
    server's processes in its network namespace that way)."""
    log_path = log_dir / f"{name}.log"
    handle = log_path.open("ab")
    process = subprocess.Popen(
        [*prefix, sys.executable, "-m", "shared.cli", *args],
        env=env,
        stdout=handle,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    handle.close()
    return Proc(name=name, process=process, log_path=log_path)


def run_ownkey(
    args: list[str], *, env: dict[str, str], input: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "shared.cli", *args],
        env=env,
        input=input,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def wait_until(
    check: Callable[[], bool], *, timeout: float, what: str, proc: Proc | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.process.poll() is not None:
            raise AssertionError(
                f"{proc.name} exited while waiting for {what}:\n{proc.log()[-3000:]}"
            )
        try:
            if check():
                return
        except (httpx.HTTPError, OSError):
            pass
        time.sleep(0.1)
    detail = f"\n{proc.log()[-3000:]}" if proc else ""
    raise AssertionError(f"timed out after {timeout}s waiting for {what}{detail}")


def http_ok(url: str) -> Callable[[], bool]:
    return lambda: httpx.get(url, timeout=2).status_code == 200


@dataclass
class FakeLLM:
    proc: Proc
    url: str

    def reset(self) -> None:
        httpx.delete(f"{self.url}/_fake/calls").raise_for_status()

    def configure(self, **config: object) -> None:
        httpx.post(f"{self.url}/_fake/config", json=config).raise_for_status()

    def calls(self) -> list[dict[str, object]]:
        body = httpx.get(f"{self.url}/_fake/calls").json()
        return list(body["calls"])


def start_fake_llm(env: dict[str, str], log_dir: Path, *, host: str = "127.0.0.1") -> FakeLLM:
    port = free_port(host)
    proc = ownkey(
        ["fake-llm", "--host", host, "--port", str(port)],
        env=env,
        log_dir=log_dir,
        name=f"fake-llm-{port}",
    )
    url = f"http://{host}:{port}"
    wait_until(http_ok(f"{url}/_fake/health"), timeout=20, what="fake-llm", proc=proc)
    return FakeLLM(proc=proc, url=url)


@dataclass
class Stack:
    """API + worker(s) against one database and one Redis."""

    env: dict[str, str]
    log_dir: Path
    api_url: str
    token: str
    procs: list[Proc] = field(default_factory=list)

    def client(self, token: str | None = None) -> httpx.Client:
        return httpx.Client(
            base_url=f"{self.api_url}/api/v1",
            headers={"Authorization": f"Bearer {token or self.token}"},
            timeout=30,
        )

    def start_worker(self, name: str, *extra: str) -> Proc:
        proc = ownkey(
            ["worker", "--hostname", f"{name}@test", *extra],
            env=self.env,
            log_dir=self.log_dir,
            name=name,
        )
        self.procs.append(proc)
        return proc

    def start_ready_worker(self, name: str, *extra: str) -> Proc:
        """Start a worker and wait until it consumes (Celery logs "ready.")."""
        proc = self.start_worker(name, *extra)
        wait_until(lambda: " ready." in proc.log(), timeout=60, what=f"worker {name}", proc=proc)
        return proc

    def logs(self) -> str:
        return "\n".join(p.log() for p in self.procs)

    def stop(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()


def start_stack(
    env: dict[str, str], log_dir: Path, *, workers: int = 1, token: str | None = None
) -> Stack:
    """Migrate the database, create an API token, start the API and `workers` workers.
    Given a `token`, the database is taken as migrated already and the token is used."""
    if token is None:
        migrated = run_ownkey(["db", "upgrade"], env=env)
        assert migrated.returncode == 0, migrated.stderr
        created = run_ownkey(["token", "create", "--name", "tests"], env=env)
        assert created.returncode == 0, created.stderr
        token = created.stdout.strip().splitlines()[-1]
    port = free_port()
    stack = Stack(env=env, log_dir=log_dir, api_url=f"http://127.0.0.1:{port}", token=token)
    api = ownkey(["api", "--port", str(port)], env=env, log_dir=log_dir, name=f"api-{port}")
    stack.procs.append(api)
    for i in range(workers):
        stack.start_worker(f"worker{i}-{port}", "--concurrency", "20")
    wait_until(http_ok(f"{stack.api_url}/health"), timeout=30, what="the API", proc=api)
    return stack
