"""`ownkey up`: the embedded default starts everything, runs a workflow, and Ctrl-C
leaves no process behind."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from shared.embedded_redis import free_port
from tests.integration.test_end_to_end import wait_for_run
from tests.processes import FakeLLM


def descendants(pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_up_runs_everything_and_stops_cleanly(tmp_path: Path, fake_llm: FakeLLM) -> None:
    port, flower_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("OWNKEY_")}
    env["OWNKEY_FLOWER_PORT"] = str(flower_port)
    log = (tmp_path / "up.log").open("w+")
    up = subprocess.Popen(
        [sys.executable, "-m", "shared.cli", "up", "--port", str(port), "--concurrency", "8"],
        cwd=tmp_path,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,  # its own process group, like a command in a terminal
    )
    try:
        token = None
        deadline = time.monotonic() + 60
        while token is None and time.monotonic() < deadline:
            assert up.poll() is None, (tmp_path / "up.log").read_text()
            found = re.search(r"export OWNKEY_TOKEN=(\S+)", (tmp_path / "up.log").read_text())
            token = found.group(1) if found else None
            time.sleep(0.2)
        assert token, (tmp_path / "up.log").read_text()
        banner = (tmp_path / "up.log").read_text()
        assert (
            f"http://127.0.0.1:{port}/api/v1" in banner
            and f"http://127.0.0.1:{flower_port}" in banner
        )
        redis_port = int(re.search(r"Redis:\s+redis://127.0.0.1:(\d+)", banner).group(1))  # type: ignore[union-attr]
        # The SQLite database and a 0600 master key live under ./.ownkey by default.
        assert (tmp_path / ".ownkey" / "ownkey.db").exists()
        assert (tmp_path / ".ownkey" / "secret.key").stat().st_mode & 0o777 == 0o600
        assert (tmp_path / ".ownkey").stat().st_mode & 0o777 == 0o700  # the database too

        api = httpx.Client(
            base_url=f"http://127.0.0.1:{port}/api/v1",
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if api.get("/keys").status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        key = api.post(
            "/keys",
            json={
                "provider": "openai",
                "name": "fake",
                "api_key": "sk-up-test",
                "base_url": f"{fake_llm.url}/v1",
            },
        ).json()
        api.post(
            "/agents", json={"name": "helper", "key_id": key["id"], "model": "gpt-4o-mini"}
        ).raise_for_status()
        api.post(
            "/workflows",
            json={
                "name": "hello",
                "steps": [{"id": "greet", "agent": "helper", "prompt": "Hello {{ input.name }}"}],
            },
        ).raise_for_status()
        run_id = api.post("/runs", json={"workflow": "hello", "input": {"name": "Ada"}}).json()[
            "id"
        ]
        run = wait_for_run(api, run_id, timeout=60)
        assert (
            run["status"] == "succeeded" and run["steps"][0]["output"] == "[gpt-4o-mini] Hello Ada"
        )
        assert (
            httpx.get(f"http://127.0.0.1:{flower_port}/healthcheck", timeout=10).status_code == 200
        )
        # Flower runs behind the login the banner printed, generated for this start.
        flower_login = re.search(r"Flower:\s+\S+\s+\(login ([^:\s]+):(\S+)\)", banner)
        assert flower_login, banner
        flower_api = f"http://127.0.0.1:{flower_port}/api/workers"
        assert httpx.get(flower_api, timeout=10).status_code == 401
        auth = (flower_login.group(1), flower_login.group(2))
        assert httpx.get(flower_api, auth=auth, timeout=10).status_code == 200
        # The banner names the worker's /metrics (a free port), which counted the call.
        worker_metrics = re.search(r"(http://127.0.0.1:\d+/metrics) \(worker\)", banner)
        assert worker_metrics, banner
        scraped = httpx.get(worker_metrics.group(1), timeout=10).text
        call = 'model="gpt-4o-mini",provider="openai",status_code="200"'
        assert f"ownkey_provider_calls_total{{{call}}} 1.0" in scraped
        # The first admin's password is printed once, and signs in to the web UI.
        login = re.search(r"first sign-in: user (\S+), password (\S+)", banner)
        assert login, banner
        web = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10)
        form = web.get("/login").text
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', form).group(1)  # type: ignore[union-attr]
        signed_in = web.post(
            "/login",
            data={"username": login.group(1), "password": login.group(2), "csrf_token": csrf},
        )
        assert signed_in.status_code == 303, signed_in.text
        assert web.get("/api/v1/me").json()["role"] == "admin"

        family = descendants(up.pid)
        assert len(family) >= 5  # redis, api, worker, beat, flower (and their children)
        os.killpg(up.pid, signal.SIGINT)  # Ctrl-C: the terminal signals the whole group
        assert up.wait(timeout=60) == 0
        # The workers said goodbye to Redis before it stopped.
        assert "could not remove this worker" not in (tmp_path / "up.log").read_text()
        time.sleep(0.5)
        assert not [pid for pid in family if alive(pid)], "ownkey up left processes behind"
        with socket.socket() as probe:
            assert probe.connect_ex(("127.0.0.1", redis_port)) != 0, "the private Redis still runs"

        # A second start reuses the same admin token (printed again) and database.
        second = subprocess.run(
            [sys.executable, "-m", "shared.cli", "token", "create", "--name", "x"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert second.returncode == 0 and second.stdout.strip().splitlines()[-1].startswith("ok_")
    finally:
        if up.poll() is None:
            up.kill()
            for pid in descendants(up.pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        log.close()
