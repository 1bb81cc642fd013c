"""`ownkey batch`: estimate, confirmation, live progress, detach and reattach, export;
through the HTTP API only (the CLI gets no database setting at all)."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.integration.test_batches import batch_workflow, wait_for_batch
from tests.processes import FakeLLM, Stack, run_ownkey, wait_until

pytestmark = pytest.mark.parametrize("stack", ["sqlite"], indirect=True)


def _cli_env(stack: Stack) -> dict[str, str]:
    """Only what a user's shell would have: the token and the API's address."""
    env = {k: v for k, v in stack.env.items() if not k.startswith("OWNKEY_")}
    env.update(OWNKEY_TOKEN=stack.token, OWNKEY_API_URL=stack.api_url)
    return env


def _accepted_id(output: str) -> str:
    found = re.search(r"batch ([0-9a-f]{32}) accepted", output)
    assert found, output
    return found.group(1)


def _dataset(tmp_path: Path, rows: list[str], name: str = "data.jsonl") -> Path:
    path = tmp_path / name
    path.write_text("\n".join(rows) + "\n")
    return path


def test_submit_shows_the_estimate_asks_and_follows_the_batch_to_the_end(
    stack: Stack, fake_llm: FakeLLM, tmp_path: Path
) -> None:
    with stack.client() as api:
        workflow = batch_workflow(api, fake_llm, uuid.uuid4().hex[:8])
        before = api.get("/batches").json()["count"]
    data = _dataset(tmp_path, [json.dumps({"text": f"cli {i}"}) for i in range(4)])
    env = _cli_env(stack)

    declined = run_ownkey(["batch", "submit", str(data), "-w", workflow], env=env, input="n\n")
    assert declined.returncode == 1, declined.stderr
    assert "Estimate for 4 items" in declined.stdout and "basis:" in declined.stdout
    assert "nothing submitted" in declined.stderr
    with stack.client() as api:
        assert api.get("/batches").json()["count"] == before

    done = run_ownkey(
        ["batch", "submit", str(data), "-w", workflow, "--max-in-flight", "2"], env=env, input="y\n"
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "accepted: 4 items" in done.stdout
    assert "succeeded: 4 ok, 0 failed" in done.stdout  # the final summary line
    batch_id = _accepted_id(done.stdout)

    out = tmp_path / "results.csv"
    exported = run_ownkey(["batch", "export", batch_id, "--format", "csv", "-o", str(out)], env=env)
    assert exported.returncode == 0, exported.stderr
    assert out.read_text().splitlines()[0].startswith("line,text,run_id,status")
    assert len(out.read_text().splitlines()) == 5


def test_bad_rows_are_shown_and_skipped_only_when_the_user_says_so(
    stack: Stack, fake_llm: FakeLLM, tmp_path: Path
) -> None:
    with stack.client() as api:
        workflow = batch_workflow(api, fake_llm, uuid.uuid4().hex[:8])
    data = _dataset(tmp_path, ['{"text": "ok"}', "{broken", '{"other": 1}'])
    env = _cli_env(stack)

    refused = run_ownkey(["batch", "submit", str(data), "-w", workflow, "--yes"], env=env)
    assert refused.returncode == 2
    assert "line 2: not valid JSON" in refused.stderr and "line 3: missing" in refused.stderr
    assert "2 of 3 rows cannot run" in refused.stderr

    skipped = run_ownkey(
        ["batch", "submit", str(data), "-w", workflow, "--detach"], env=env, input="y\ny\n"
    )
    assert skipped.returncode == 0, skipped.stdout + skipped.stderr
    assert "Skipping 2 rows" in skipped.stderr
    assert "accepted: 1 item (2 skipped)" in skipped.stdout


def test_ctrl_c_detaches_and_the_batch_goes_on(
    stack: Stack, fake_llm: FakeLLM, tmp_path: Path
) -> None:
    # One item at a time, a second each: the batch outlasts the watcher's start-up (a few
    # seconds on a loaded machine), so the Ctrl-C lands while it still runs.
    fake_llm.configure(latency_seconds=1.0)
    try:
        with stack.client() as api:
            workflow = batch_workflow(api, fake_llm, uuid.uuid4().hex[:8])
        data = _dataset(tmp_path, [json.dumps({"text": f"w{i}"}) for i in range(10)])
        env = _cli_env(stack)
        submitted = run_ownkey(
            [
                "batch",
                "submit",
                str(data),
                "-w",
                workflow,
                "--yes",
                "--detach",
                "--max-in-flight",
                "1",
            ],
            env=env,
        )
        assert submitted.returncode == 0, submitted.stderr
        batch_id = _accepted_id(submitted.stdout)

        log = tmp_path / "watch.log"
        with log.open("w") as handle:
            watcher = subprocess.Popen(
                [sys.executable, "-m", "shared.cli", "batch", "watch", batch_id],
                env=env,
                stdout=handle,
                stderr=subprocess.STDOUT,
            )
        try:
            wait_until(lambda: "Ctrl-C detaches" in log.read_text(), timeout=30, what="watch")
            watcher.send_signal(signal.SIGINT)
            assert watcher.wait(timeout=30) == 0
        finally:
            if watcher.poll() is None:
                watcher.kill()
        assert f"reattach: ownkey batch watch {batch_id}" in log.read_text()

        with stack.client() as api:
            assert api.get(f"/batches/{batch_id}").json()["status"] == "running"
            reattached = run_ownkey(["batch", "watch", batch_id], env=env)
            assert reattached.returncode == 0, reattached.stdout + reattached.stderr
            assert "succeeded: 10 ok" in reattached.stdout
            assert wait_for_batch(api, batch_id)["status"] == "succeeded"
    finally:
        fake_llm.configure(latency_seconds=0.0)


def test_without_a_token_or_an_api_the_cli_says_what_to_do(stack: Stack, tmp_path: Path) -> None:
    env = _cli_env(stack)
    missing = run_ownkey(["batch", "list"], env={**env, "OWNKEY_TOKEN": ""})
    assert missing.returncode == 2 and "set OWNKEY_TOKEN" in missing.stderr
    unreachable = run_ownkey(["batch", "list", "--api-url", "http://127.0.0.1:9"], env=env)
    assert unreachable.returncode == 2 and "cannot reach the API" in unreachable.stderr
    wrong = run_ownkey(["batch", "watch", "no-such-batch"], env=env)
    assert wrong.returncode == 2 and "404: no batch with id 'no-such-batch'" in wrong.stderr
    assert "Traceback" not in missing.stderr + unreachable.stderr + wrong.stderr
