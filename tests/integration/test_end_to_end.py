"""One workflow across two providers, through the real API, Redis and a Celery worker."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, text

from shared.models import FINAL_RUN_STATUSES
from shared.prices_store import MISS_RELOAD_SECONDS
from tests.processes import FakeLLM, Stack

PRICES = {
    # provider, model: (input, output, cached input) USD per million tokens
    ("openai", "e2e-gpt-small"): ("0.15", "0.60", "0.075"),
    ("openai", "e2e-gpt-join"): ("0.40", "1.60", "0.10"),
    ("anthropic", "e2e-claude"): ("0.80", "4.00", "0.08"),
}


def wait_for_run(client: httpx.Client, run_id: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = client.get(f"/runs/{run_id}").json()
        if run["status"] in FINAL_RUN_STATUSES and run["finished_at"]:
            return dict(run)
        time.sleep(0.1)
    raise AssertionError(f"run {run_id} did not finish: {run}")


@pytest.fixture
def fixed_usage(fake_llm: FakeLLM) -> Iterator[None]:
    fake_llm.configure(input_tokens=1000, output_tokens=50, cached_tokens=200)
    yield
    fake_llm.configure(input_tokens=None, output_tokens=None, cached_tokens=0)


def expected_cost(provider: str, model: str) -> Decimal:
    inp, out, cached = (Decimal(p) for p in PRICES[(provider, model)])
    return (800 * inp + 200 * cached + 50 * out) / Decimal(1_000_000)


def test_two_providers_in_parallel_then_a_join(
    stack: Stack, fake_llm: FakeLLM, fixed_usage: None
) -> None:
    tag = uuid.uuid4().hex[:8]
    with stack.client() as api:
        for (provider, model), (inp, out, cached) in PRICES.items():
            r = api.put(
                f"/prices/{provider}/{model}",
                json={
                    "input_per_mtok": inp,
                    "output_per_mtok": out,
                    "cached_input_per_mtok": cached,
                },
            )
            assert r.status_code == 200, r.text
        # The shared workers may have read the price list just before: a price for a
        # model that had none applies from MISS_RELOAD_SECONDS on (as documented).
        time.sleep(MISS_RELOAD_SECONDS + 0.1)
        openai_key = api.post(
            "/keys",
            json={
                "provider": "openai",
                "name": f"oa-{tag}",
                "api_key": "sk-openai-e2e-1234",
                "base_url": f"{fake_llm.url}/v1",
            },
        ).json()
        claude_key = api.post(
            "/keys",
            json={
                "provider": "anthropic",
                "name": f"an-{tag}",
                "api_key": "sk-ant-e2e-5678",
                "base_url": fake_llm.url,
            },
        ).json()
        assert openai_key["key_hint"] == "1234" and claude_key["key_hint"] == "5678"
        agents = [
            {"name": f"gpt-{tag}", "key_id": openai_key["id"], "model": "e2e-gpt-small"},
            {
                "name": f"claude-{tag}",
                "key_id": claude_key["id"],
                "model": "e2e-claude",
                "max_tokens": 500,
            },
            {"name": f"joiner-{tag}", "key_id": openai_key["id"], "model": "e2e-gpt-join"},
        ]
        for agent in agents:
            assert api.post("/agents", json=agent).status_code == 201
        workflow = f"""
name: review-{tag}
steps:
  - id: pros
    agent: gpt-{tag}
    prompt: "List pros of {{{{ input.topic }}}}"
  - id: cons
    agent: claude-{tag}
    prompt: "List cons of {{{{ input.topic }}}}"
  - id: verdict
    agent: joiner-{tag}
    depends_on: [pros, cons]
    prompt: "Weigh: {{{{ steps.pros.output }}}} against {{{{ steps.cons.output }}}}"
"""
        r = api.post("/workflows", content=workflow, headers={"Content-Type": "application/yaml"})
        assert r.status_code == 201, r.text
        submitted = api.post(
            "/runs", json={"workflow": f"review-{tag}", "input": {"topic": "solar"}}
        )
        assert submitted.status_code == 202, submitted.text
        assert submitted.json()["status"] == "queued"
        run = wait_for_run(api, submitted.json()["id"])

    assert run["status"] == "succeeded", run
    steps = {s["id"]: s for s in run["steps"]}
    assert steps["pros"]["output"] == "[e2e-gpt-small] List pros of solar"
    assert steps["cons"]["output"] == "[e2e-claude] List cons of solar"
    assert steps["verdict"]["output"] == (
        "[e2e-gpt-join] Weigh: [e2e-gpt-small] List pros of solar"
        " against [e2e-claude] List cons of solar"
    )
    assert [(s["provider"], s["model"]) for s in run["steps"]] == [
        ("openai", "e2e-gpt-small"),
        ("anthropic", "e2e-claude"),
        ("openai", "e2e-gpt-join"),
    ]
    for step in run["steps"]:
        assert (step["input_tokens"], step["output_tokens"], step["cached_tokens"]) == (
            1000,
            50,
            200,
        )
        assert step["attempts"] == 1 and step["status"] == "succeeded"

    # The SQL store holds the same usage and exact costs; run totals are the sum of steps.
    engine = create_engine(stack.env["OWNKEY_DATABASE_URL"])
    with engine.connect() as db:
        rows = db.execute(
            text(
                "SELECT step_key, provider, model, input_tokens, output_tokens,"
                " cached_tokens, cost_nanos FROM step_runs WHERE run_id = :r"
            ),
            {"r": run["id"]},
        ).all()
        totals = db.execute(
            text(
                "SELECT input_tokens, output_tokens, cached_tokens, cost_nanos, cost_incomplete"
                " FROM runs WHERE id = :r"
            ),
            {"r": run["id"]},
        ).one()
    engine.dispose()
    by_key = {row.step_key: row for row in rows}
    for key in ("pros", "cons", "verdict"):
        row = by_key[key]
        assert row.cost_nanos == int(expected_cost(row.provider, row.model) * 10**9)
    assert (
        totals.input_tokens == 3000 and totals.output_tokens == 150 and totals.cached_tokens == 600
    )
    assert totals.cost_nanos == sum(row.cost_nanos for row in rows)
    assert not totals.cost_incomplete
    assert run["cost_usd"] == pytest.approx(float(sum(expected_cost(*k) for k in PRICES)), abs=1e-9)

    calls = fake_llm.calls()
    assert len(calls) == 3
    assert sorted(c["format"] for c in calls) == ["anthropic", "openai", "openai"]


def test_unknown_price_is_null_not_zero_and_local_models_cost_nothing(
    stack: Stack, fake_llm: FakeLLM
) -> None:
    tag = uuid.uuid4().hex[:8]
    with stack.client() as api:
        hosted = api.post(
            "/keys",
            json={
                "provider": "openai_compatible",
                "name": f"vllm-{tag}",
                "base_url": f"{fake_llm.url}/v1",
            },
        ).json()
        local = api.post(
            "/keys", json={"provider": "ollama", "name": f"ollama-{tag}", "base_url": fake_llm.url}
        ).json()
        api.post(
            "/agents",
            json={"name": f"odd-{tag}", "key_id": hosted["id"], "model": f"mystery-{tag}"},
        ).raise_for_status()
        api.post(
            "/agents", json={"name": f"home-{tag}", "key_id": local["id"], "model": "llama3.2"}
        ).raise_for_status()
        api.post(
            "/workflows",
            json={
                "name": f"mixed-{tag}",
                "steps": [
                    {"id": "unpriced", "agent": f"odd-{tag}", "prompt": "a b c"},
                    {"id": "local", "agent": f"home-{tag}", "prompt": "d e f"},
                ],
            },
        ).raise_for_status()
        run_id = api.post("/runs", json={"workflow": f"mixed-{tag}"}).json()["id"]
        run = wait_for_run(api, run_id)
    assert run["status"] == "succeeded"
    steps = {s["id"]: s for s in run["steps"]}
    assert steps["unpriced"]["cost_usd"] is None and steps["unpriced"]["input_tokens"] > 0
    assert steps["local"]["cost_usd"] == 0 and steps["local"]["provider"] == "ollama"
    assert run["cost_incomplete"] is True and run["cost_usd"] == 0
