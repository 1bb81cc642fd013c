"""GET /usage against real runs: every group's cost is the exact sum of its steps' costs,
for every group_by, and cached tokens are priced right in both usage conventions:
Anthropic counts cache reads and writes apart from input_tokens, OpenAI counts cached
tokens inside prompt_tokens."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, text

from shared.usage import GROUPS
from tests.integration.test_end_to_end import wait_for_run
from tests.processes import FakeLLM, Stack

# Every call: 1000 input tokens of which 300 cache reads and 100 cache writes; 50 output.
USAGE = {"input_tokens": 1000, "output_tokens": 50, "cached_tokens": 300, "cache_write_tokens": 100}
PRICES = {  # USD per million: input, output, cached input
    "anthropic": ("3.00", "15.00", "0.30"),
    "openai": ("2.50", "10.00", "1.25"),
}
# Anthropic: 600 uncached at $3, 300 cache reads at $0.30, 100 cache writes at 1.25 x $3,
# 50 output at $15. OpenAI reports no cache writes: 700 uncached at $2.50, 300 cached at
# $1.25, 50 output at $10.
STEP_COST = {
    "anthropic": (
        600 * Decimal(3) + 300 * Decimal("0.30") + 100 * Decimal("3.75") + 50 * Decimal(15)
    )
    / 1_000_000,
    "openai": (700 * Decimal("2.50") + 300 * Decimal("1.25") + 50 * Decimal(10)) / 1_000_000,
}
STEP_SQL = """
SELECT s.finished_at, s.provider, s.model, s.agent_name, w.name AS workflow, k.name AS key,
       r.workflow_id, s.key_id, s.input_tokens, s.output_tokens, s.cached_tokens, s.cost_nanos
FROM step_runs s JOIN runs r ON r.id = s.run_id
LEFT JOIN workflows w ON w.id = r.workflow_id
LEFT JOIN provider_keys k ON k.id = s.key_id
WHERE s.finished_at IS NOT NULL
"""


@pytest.fixture
def cached_usage(fake_llm: FakeLLM) -> Iterator[None]:
    fake_llm.configure(**USAGE)
    yield
    fake_llm.configure(input_tokens=None, output_tokens=None, cached_tokens=0, cache_write_tokens=0)


def nanos(usd: float | Decimal) -> int:
    return int(round(Decimal(str(usd)) * 10**9))


def make_runs(api: httpx.Client, fake_llm: FakeLLM, tag: str) -> dict[str, Any]:
    """Agents on both providers; workflow `duo` (claude, then gpt) runs twice, `solo`
    (gpt) once: 2 Anthropic steps and 3 OpenAI steps."""
    names = {}
    for provider, (inp, out, cached) in PRICES.items():
        model = f"usage-{provider}-{tag}"
        api.put(
            f"/prices/{provider}/{model}",
            json={"input_per_mtok": inp, "output_per_mtok": out, "cached_input_per_mtok": cached},
        ).raise_for_status()
        base_url = fake_llm.url if provider == "anthropic" else f"{fake_llm.url}/v1"
        key = api.post(
            "/keys",
            json={
                "provider": provider,
                "name": f"{provider}-{tag}",
                "api_key": "sk-usage-0000",
                "base_url": base_url,
            },
        ).json()
        api.post(
            "/agents", json={"name": f"{provider}-{tag}", "key_id": key["id"], "model": model}
        ).raise_for_status()
        names[provider] = model
    flows = {
        f"duo-{tag}": [
            {"id": "first", "agent": f"anthropic-{tag}", "prompt": "a"},
            {"id": "second", "agent": f"openai-{tag}", "prompt": "b", "depends_on": ["first"]},
        ],
        f"solo-{tag}": [{"id": "only", "agent": f"openai-{tag}", "prompt": "c"}],
    }
    for name, steps in flows.items():
        api.post("/workflows", json={"name": name, "steps": steps}).raise_for_status()
    runs = [
        wait_for_run(api, api.post("/runs", json={"workflow": flow}).json()["id"])
        for flow in (f"duo-{tag}", f"duo-{tag}", f"solo-{tag}")
    ]
    assert [r["status"] for r in runs] == ["succeeded"] * 3
    return {"models": names, "runs": runs}


def steps_in_sql(stack: Stack, start: datetime, end: datetime) -> list[Any]:
    engine = create_engine(stack.env["OWNKEY_DATABASE_URL"])
    try:
        with engine.connect() as db:
            rows = db.execute(text(STEP_SQL)).all()
    finally:
        engine.dispose()
    found = []
    for row in rows:
        finished = row.finished_at
        if isinstance(finished, str):  # SQLite hands back text
            finished = datetime.fromisoformat(finished)
        finished = finished.replace(tzinfo=UTC) if finished.tzinfo is None else finished
        if start <= finished < end:
            found.append((finished.astimezone(UTC), row))
    return found


def group_of(group_by: str, finished: datetime, row: Any) -> str:
    return {
        "day": lambda: finished.strftime("%Y-%m-%d"),
        "provider": lambda: row.provider,
        "model": lambda: f"{row.provider}/{row.model}",
        "agent": lambda: row.agent_name,
        "workflow": lambda: row.workflow or row.workflow_id,
        "key": lambda: row.key or row.key_id,
    }[group_by]()


def test_every_group_costs_the_exact_sum_of_its_steps_and_cached_tokens_are_priced_right(
    stack: Stack, fake_llm: FakeLLM, cached_usage: None
) -> None:
    tag = uuid.uuid4().hex[:8]
    with stack.client() as api:
        made = make_runs(api, fake_llm, tag)
        today = datetime.now(UTC).date()
        first, last = today - timedelta(days=1), today + timedelta(days=1)
        reports = {
            group_by: api.get(
                "/usage", params={"from": str(first), "to": str(last), "group_by": group_by}
            ).json()
            for group_by in GROUPS
        }

    # Each step's own cost: cached tokens priced by each provider's convention.
    for run in made["runs"]:
        for step in run["steps"]:
            assert (step["input_tokens"], step["cached_tokens"]) == (1000, 300), step
            assert nanos(step["cost_usd"]) == nanos(STEP_COST[step["provider"]]), step

    # The report's groups are the sums of the steps in SQL, to the nano-dollar.
    start = datetime.combine(first, datetime.min.time(), UTC)
    end = datetime.combine(last + timedelta(days=1), datetime.min.time(), UTC)
    steps = steps_in_sql(stack, start, end)
    for group_by, report in reports.items():
        expected: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0, 0])
        for finished, row in steps:
            sums = expected[group_of(group_by, finished, row)]
            for i, value in enumerate(
                (1, row.input_tokens, row.output_tokens, row.cached_tokens, row.cost_nanos)
            ):
                sums[i] += value or 0
        got = {
            line["group"]: [
                line["steps"],
                line["input_tokens"],
                line["output_tokens"],
                line["cached_tokens"],
                nanos(line["cost_usd"]),
            ]
            for line in report["data"]
        }
        assert got == dict(expected), group_by
        assert nanos(report["total"]["cost_usd"]) == sum(e[4] for e in expected.values())

    # And this test's own groups hold exactly its steps.
    claude, gpt = STEP_COST["anthropic"], STEP_COST["openai"]
    mine = {
        "model": {
            f"anthropic/{made['models']['anthropic']}": (2, 2 * claude),
            f"openai/{made['models']['openai']}": (3, 3 * gpt),
        },
        "agent": {f"anthropic-{tag}": (2, 2 * claude), f"openai-{tag}": (3, 3 * gpt)},
        "key": {f"anthropic-{tag}": (2, 2 * claude), f"openai-{tag}": (3, 3 * gpt)},
        "workflow": {f"duo-{tag}": (4, 2 * (claude + gpt)), f"solo-{tag}": (1, gpt)},
    }
    for group_by, groups in mine.items():
        lines = {line["group"]: line for line in reports[group_by]["data"]}
        for group, (count, cost) in groups.items():
            line = lines[group]
            assert (line["steps"], nanos(line["cost_usd"])) == (count, nanos(cost)), group
            assert (line["input_tokens"], line["cached_tokens"]) == (1000 * count, 300 * count)
    assert str(today) in {line["group"] for line in reports["day"]["data"]}


def test_usage_period_is_checked(stack: Stack) -> None:
    with stack.client() as api:
        today = datetime.now(UTC).date()
        bad = api.get("/usage", params={"from": str(today + timedelta(days=2)), "to": str(today)})
        assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["query", "from"]
        assert api.get("/usage", params={"group_by": "colour"}).status_code == 422
