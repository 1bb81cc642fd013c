"""Batches through the real API, Redis and a Celery worker: datasets in, one run per
row, progress, cost, export, bad rows by line, retry, cancel, roles, and a batch of
10,000 items accepted at once without flooding Redis."""

from __future__ import annotations

import csv
import io
import json
import time
import uuid
from typing import Any

import httpx
import pytest

from tests.processes import FakeLLM, Stack, run_ownkey, wait_until
from tests.web_session import make_user

pytestmark = pytest.mark.parametrize("stack", ["sqlite"], indirect=True)

FINAL = ("succeeded", "finished", "cancelled")


def batch_workflow(api: httpx.Client, fake_llm: FakeLLM, tag: str) -> str:
    """A key at fake-llm, an agent, and a two-step workflow reading `input.text`."""
    key = api.post(
        "/keys",
        json={
            "provider": "openai",
            "name": f"batch-{tag}",
            "api_key": "sk-batch-0000",
            "base_url": f"{fake_llm.url}/v1",
        },
    )
    assert key.status_code == 201, key.text
    agent = {"name": f"batcher-{tag}", "key_id": key.json()["id"], "model": "batch-model"}
    assert api.post("/agents", json=agent).status_code == 201
    spec = {
        "name": f"batch-{tag}",
        "steps": [
            {"id": "summary", "agent": agent["name"], "prompt": "Summarize: {{ input.text }}"},
            {
                "id": "tag",
                "agent": agent["name"],
                "prompt": "Tag: {{ steps.summary.output }}",
                "depends_on": ["summary"],
            },
        ],
    }
    created = api.post("/workflows", json=spec)
    assert created.status_code == 201, created.text
    return str(spec["name"])


def wait_for_batch(api: httpx.Client, batch_id: str, timeout: float = 90) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    batch: dict[str, Any] = {}
    while time.monotonic() < deadline:
        batch = api.get(f"/batches/{batch_id}").json()
        if batch["status"] in FINAL:
            return batch
        time.sleep(0.2)
    raise AssertionError(f"batch {batch_id} did not finish: {batch}")


def max_concurrent_calls(calls: list[dict[str, Any]]) -> int:
    """The most provider calls fake-llm was answering at one moment."""
    events = sorted(
        [(float(c["t"]), 1) for c in calls] + [(float(c["t_done"]), -1) for c in calls],
        key=lambda e: (e[0], e[1]),  # an answer that left frees its slot first
    )
    peak = current = 0
    for _, change in events:
        current += change
        peak = max(peak, current)
    return peak


def _batches_count(api: httpx.Client) -> int:
    return int(api.get("/batches").json()["count"])


def _upload(name: str, text: str, **fields: Any) -> dict[str, Any]:
    return {
        "files": {"file": (name, text.encode())},
        "data": {k: str(v) for k, v in fields.items()},
    }


@pytest.fixture
def priced(stack: Stack, fake_llm: FakeLLM) -> Any:
    """Fixed usage (10 in, 5 out per call) at $1 / $2 per million tokens."""
    fake_llm.configure(input_tokens=10, output_tokens=5)
    with stack.client() as api:
        prices = {"input_per_mtok": "1", "output_per_mtok": "2"}
        assert api.put("/prices/openai/batch-model", json=prices).status_code == 200
    yield
    fake_llm.configure(input_tokens=None, output_tokens=None)


def test_a_json_dataset_runs_once_per_item_with_estimate_progress_cost_and_export(
    stack: Stack, fake_llm: FakeLLM, priced: None
) -> None:
    with stack.client() as api:
        workflow = batch_workflow(api, fake_llm, uuid.uuid4().hex[:8])
        body = {"workflow": workflow, "dataset": [{"text": f"t{i}"} for i in range(5)]}
        before = _batches_count(api)

        guess = api.post("/batches/estimate", json=body)
        assert guess.status_code == 200, guess.text
        assert guess.json()["basis"] == "prompt_length" and guess.json()["items"] == 5
        assert 0 < guess.json()["low_usd"] < guess.json()["high_usd"]
        dry = api.post("/batches", json={**body, "dry_run": True})
        assert dry.status_code == 200 and dry.json()["low_usd"] == guess.json()["low_usd"]
        assert _batches_count(api) == before  # neither stored anything

        accepted = api.post("/batches", json={**body, "max_in_flight": 2, "name": "five"})
        assert accepted.status_code == 202, accepted.text
        assert accepted.json()["total"] == 5 and accepted.json()["skipped"] == []
        batch = wait_for_batch(api, accepted.json()["id"])
        assert batch["status"] == "succeeded" and batch["name"] == "five"
        assert batch["progress"] == {
            "waiting": 0,
            "queued": 0,
            "running": 0,
            "succeeded": 5,
            "failed": 0,
            "cancelled": 0,
        }
        assert batch["done"] == 5 and batch["eta_seconds"] is None
        assert (batch["input_tokens"], batch["output_tokens"]) == (100, 50)  # 5 runs x 2 steps
        assert batch["cost_usd"] == pytest.approx(5 * 2 * (10 * 1 + 5 * 2) / 1e6)
        assert batch["started_at"] and batch["finished_at"]
        assert api.get("/batches", params={"workflow": workflow}).json()["count"] == 1

        lines = api.get(f"/batches/{batch['id']}/export").text.splitlines()
        rows = [json.loads(line) for line in lines]
        assert [r["line"] for r in rows] == [1, 2, 3, 4, 5]
        assert rows[2]["input"] == {"text": "t2"} and rows[2]["status"] == "succeeded"
        assert rows[2]["steps"]["summary"]["output"] == "[batch-model] Summarize: t2"
        assert rows[2]["steps"]["tag"]["output"] == "[batch-model] Tag: [batch-model] Summarize: t2"
        assert rows[2]["steps"]["tag"]["cost_usd"] == "0.00002"
        assert len({r["run_id"] for r in rows}) == 5
        run = api.get(f"/runs/{rows[0]['run_id']}").json()
        assert run["input"] == {"text": "t0"} and run["status"] == "succeeded"

        # The estimate now rests on these runs' token counts.
        known = api.post("/batches/estimate", json=body).json()
        assert known["basis"] == "history"
        assert known["low_usd"] == known["high_usd"] == pytest.approx(5 * 2 * 20 / 1e6)


def test_an_uploaded_csv_runs_and_exports_its_columns_with_each_steps_results(
    stack: Stack, fake_llm: FakeLLM
) -> None:
    with stack.client() as api:
        workflow = batch_workflow(api, fake_llm, uuid.uuid4().hex[:8])
        text = 'text,status\n"hello, world",a\nbye,b\n'  # "status" clashes with a result column
        accepted = api.post("/batches", **_upload("notes.csv", text, workflow=workflow))
        assert accepted.status_code == 202, accepted.text
        assert accepted.json()["name"] == "notes.csv"
        batch = wait_for_batch(api, accepted.json()["id"])
        assert batch["status"] == "succeeded"
        exported = api.get(f"/batches/{batch['id']}/export", params={"format": "csv"})
        assert exported.headers["content-type"].startswith("text/csv")
        rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert list(rows[0])[:4] == ["line", "text", "input.status", "run_id"]
    assert "summary.output" in rows[0] and "tag.cost_usd" in rows[0] and "tag.error" in rows[0]
    assert [(r["line"], r["text"], r["input.status"], r["status"]) for r in rows] == [
        ("2", "hello, world", "a", "succeeded"),
        ("3", "bye", "b", "succeeded"),
    ]
    assert rows[0]["summary.output"] == "[batch-model] Summarize: hello, world"


def test_bad_rows_are_listed_by_line_and_nothing_is_stored_unless_skipped(
    stack: Stack, fake_llm: FakeLLM
) -> None:
    jsonl = "\n".join(
        [
            '{"text": "one"}',
            "{oops",
            "[1, 2]",
            '{"text": "four"}',
            '{"title": "no text"}',
        ]
    )
    with stack.client() as api:
        workflow = batch_workflow(api, fake_llm, uuid.uuid4().hex[:8])
        before = _batches_count(api)
        refused = api.post("/batches", **_upload("data.jsonl", jsonl, workflow=workflow))
        assert refused.status_code == 422, refused.text
        detail = refused.json()["detail"]
        assert [e.get("line") for e in detail if "line" in e] == [2, 3, 5]
        assert detail[0]["msg"].startswith("line 2: not valid JSON")
        assert detail[1]["msg"] == "line 3: a row must be a JSON object, not a list"
        assert "line 5: missing input field 'text'" in detail[2]["msg"]
        assert detail[-1]["loc"] == ["body", "skip_invalid"]
        listed = api.post(
            "/batches", json={"workflow": workflow, "dataset": [{"text": "a"}, "b"]}
        ).json()["detail"]
        assert listed[0]["loc"] == ["body", "dataset", 1] and listed[0]["msg"].startswith("item 2")
        assert _batches_count(api) == before
        assert fake_llm.calls() == []

        skipped = api.post(
            "/batches", **_upload("data.jsonl", jsonl, workflow=workflow, skip_invalid="true")
        )
        assert skipped.status_code == 202, skipped.text
        assert skipped.json()["total"] == 2
        assert [s["line"] for s in skipped.json()["skipped"]] == [2, 3, 5]
        batch = wait_for_batch(api, skipped.json()["id"])
        assert batch["progress"]["succeeded"] == 2
        exported = api.get(f"/batches/{batch['id']}/export").text.splitlines()
        assert [json.loads(line)["line"] for line in exported] == [1, 4]

        # A file that cannot be read at all, a wrong option, and a body that is neither.
        for response, field in (
            (api.post("/batches", **_upload("x.jsonl", "", workflow=workflow)), "file"),
            (api.post("/batches", **_upload("x.txt", "a", workflow=workflow)), "file"),
            (api.post("/batches", **_upload("x.csv", "a\n1\n", workflow="nope")), "workflow"),
            (
                api.post(
                    "/batches", **_upload("x.csv", "a\n1\n", workflow=workflow, max_in_flight=0)
                ),
                "max_in_flight",
            ),
        ):
            assert response.status_code == 422, response.text
            assert response.json()["detail"][0]["loc"] == ["body", field], response.text
        plain = api.post("/batches", content=b"text", headers={"Content-Type": "text/plain"})
        assert plain.status_code == 415
        assert _batches_count(api) == before + 1


def test_retry_runs_only_the_failed_items_again(stack: Stack, fake_llm: FakeLLM) -> None:
    with stack.client() as api:
        workflow = batch_workflow(api, fake_llm, uuid.uuid4().hex[:8])
        # The first two provider calls are refused (400 does not retry): items 1 and 2 fail.
        httpx.post(f"{fake_llm.url}/_fake/faults", json={"status": 400, "count": 2})
        body = {"workflow": workflow, "dataset": [{"text": f"r{i}"} for i in range(4)]}
        accepted = api.post("/batches", json={**body, "max_in_flight": 1})
        batch = wait_for_batch(api, accepted.json()["id"])
        assert batch["status"] == "finished"
        assert (batch["progress"]["failed"], batch["progress"]["succeeded"]) == (2, 2)
        first = {
            json.loads(r)["line"]: json.loads(r)
            for r in api.get(f"/batches/{batch['id']}/export").text.splitlines()
        }
        assert first[1]["status"] == "failed" and first[1]["steps"]["summary"]["error"]

        retried = api.post(f"/batches/{batch['id']}/retry")
        assert retried.status_code == 200 and retried.json()["retried"] == 2
        batch = wait_for_batch(api, batch["id"])
        assert batch["status"] == "succeeded" and batch["progress"]["succeeded"] == 4
        again = {
            json.loads(r)["line"]: json.loads(r)
            for r in api.get(f"/batches/{batch['id']}/export").text.splitlines()
        }
        assert again[1]["previous_run_ids"] == [first[1]["run_id"]]
        assert again[3]["previous_run_ids"] == [] and again[3]["run_id"] == first[3]["run_id"]
        assert len(fake_llm.calls()) == 2 * 2 + 2 + 2 * 2  # 2 ok runs, 2 refused, 2 retried
        assert api.post(f"/batches/{batch['id']}/retry").json()["retried"] == 0


def test_cancel_stops_waiting_items_and_cancels_running_runs(
    stack: Stack, fake_llm: FakeLLM
) -> None:
    fake_llm.configure(latency_seconds=1.5)
    try:
        with stack.client() as api:
            workflow = batch_workflow(api, fake_llm, uuid.uuid4().hex[:8])
            body = {"workflow": workflow, "dataset": [{"text": f"c{i}"} for i in range(20)]}
            batch_id = api.post("/batches", json={**body, "max_in_flight": 2}).json()["id"]
            wait_until(lambda: len(fake_llm.calls()) == 2, timeout=30, what="two calls")
            cancelled = api.post(f"/batches/{batch_id}/cancel")
            assert cancelled.status_code == 200, cancelled.text
            assert cancelled.json()["status"] == "cancelled"
            assert cancelled.json()["finished_at"] is not None
            assert cancelled.json()["progress"]["waiting"] == 18
            # The two calls in flight finish (they are paid for); their runs then close.
            wait_until(
                lambda: api.get(f"/batches/{batch_id}").json()["done"] == 2,
                timeout=30,
                what="the cancelled runs to close",
            )
            time.sleep(1.0)  # time for a wrong release to reach fake-llm
            batch = api.get(f"/batches/{batch_id}").json()
            assert batch["progress"]["waiting"] == 18 and batch["progress"]["cancelled"] == 2
            assert len(fake_llm.calls()) == 2
            assert api.post(f"/batches/{batch_id}/cancel").status_code == 409
            assert api.post(f"/batches/{batch_id}/retry").status_code == 409
            assert api.post("/batches/nope/cancel").status_code == 404
    finally:
        fake_llm.configure(latency_seconds=0.0)


def test_ten_thousand_items_are_accepted_at_once_and_released_slowly(
    stack: Stack, fake_llm: FakeLLM
) -> None:
    fake_llm.configure(latency_seconds=2.0)
    padding = "x" * 100  # about 1.3 MB in all: more than an ordinary request may carry
    try:
        with stack.client() as api:
            workflow = batch_workflow(api, fake_llm, uuid.uuid4().hex[:8])
            body = {
                "workflow": workflow,
                "dataset": [{"text": f"item {i} {padding}"} for i in range(10_000)],
                "max_in_flight": 3,
            }
            started = time.monotonic()
            accepted = api.post("/batches", json=body)
            elapsed = time.monotonic() - started
            print(f"\n10,000-item batch accepted in {elapsed:.2f} s")
            assert accepted.status_code == 202, accepted.text[:500]
            assert elapsed < 10
            batch = accepted.json()
            assert batch["total"] == 10_000
            # Only the slots' worth of runs exists; the rest waits in SQL, not in Redis.
            assert batch["progress"]["waiting"] == 10_000 - 3
            started = time.monotonic()
            assert api.post(f"/batches/{batch['id']}/cancel").status_code == 200
            print(f"cancelled in {time.monotonic() - started:.2f} s")
    finally:
        fake_llm.configure(latency_seconds=0.0)


def test_viewers_read_and_export_but_only_members_change_batches(
    stack: Stack, fake_llm: FakeLLM
) -> None:
    with stack.client() as api:
        workflow = batch_workflow(api, fake_llm, uuid.uuid4().hex[:8])
        body = {"workflow": workflow, "dataset": [{"text": "v"}]}
        batch_id = api.post("/batches", json=body).json()["id"]
        wait_for_batch(api, batch_id)
        audit = api.get("/audit", params={"action": "batch.created"}).json()["data"]
        assert any(e["target_id"] == batch_id for e in audit)
    user = make_user(stack, "viewer")
    done = run_ownkey(["token", "create", "--name", "v", "--user", user], env=stack.env)
    with stack.client(done.stdout.strip().splitlines()[-1]) as viewer:
        assert viewer.get("/batches").status_code == 200
        assert viewer.get(f"/batches/{batch_id}").status_code == 200
        assert (
            viewer.get(f"/batches/{batch_id}/export", params={"format": "csv"}).status_code == 200
        )
        for refused in (
            viewer.post("/batches", json=body),
            viewer.post("/batches/estimate", json=body),
            viewer.post(f"/batches/{batch_id}/retry"),
            viewer.post(f"/batches/{batch_id}/cancel"),
        ):
            assert refused.status_code == 403, refused.text
