"""Cost estimates before a batch starts: from recent runs, or from prompt length."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sqlalchemy import update

from shared.db import session_scope
from shared.estimates import estimate_batch, percentile
from shared.models import Run, RunStatus, StepRun, StepStatus, utcnow
from shared.pricing import Price
from shared.runs import create_run
from tests.factories import make_agent, make_key, make_workflow

# USD per million tokens: 1 for input, 2 for output, so costs are easy to check by hand.
PRICE = Price(input=Decimal(1), output=Decimal(2))
STEPS: list[dict[str, Any]] = [
    {"id": "summary", "agent": "writer", "prompt": "Summarize: {{ input.text }}"},
    {
        "id": "title",
        "agent": "titler",
        "prompt": "Title for {{ steps.summary.output }}",
        "depends_on": ["summary"],
    },
]


def _prices(provider: str, model: str) -> Price | None:
    return PRICE if model != "mystery" else None


def _setup(*, titler_model: str = "m-title") -> str:
    with session_scope() as session:
        key = make_key(session)
        make_agent(session, key, name="writer", model="m-write", max_tokens=100)
        make_agent(session, key, name="titler", model=titler_model, system_prompt="Be brief.")
        return make_workflow(session, name="wf", steps=STEPS).id


def _history(workflow_id: str, usage: list[dict[str, tuple[int, int]]]) -> None:
    """Succeeded runs whose steps used these (input, output) token counts."""
    for per_step in usage:
        with session_scope() as session:
            run_id = create_run(session, workflow=workflow_id, input={"text": "x"}).run_id
            session.execute(
                update(Run)
                .where(Run.id == run_id)
                .values(status=RunStatus.succeeded, finished_at=utcnow())
            )
            for step_key, (tokens_in, tokens_out) in per_step.items():
                session.execute(
                    update(StepRun)
                    .where(StepRun.run_id == run_id, StepRun.step_key == step_key)
                    .values(
                        status=StepStatus.succeeded,
                        input_tokens=tokens_in,
                        output_tokens=tokens_out,
                        cached_tokens=0,
                    )
                )


def _estimate(workflow_id: str, inputs: list[dict[str, Any]]) -> Any:
    with session_scope() as session:
        return estimate_batch(
            session, workflow_id=workflow_id, steps=STEPS, inputs=inputs, price=_prices
        )


def test_percentile_is_a_value_that_was_seen() -> None:
    values = list(range(1, 11))
    assert percentile(values, 0.1) == 1
    assert percentile(values, 0.9) == 9
    assert percentile([7], 0.9) == 7


def test_without_history_the_range_runs_from_the_prompts_alone_to_max_tokens(
    sqlite_db: str,
) -> None:
    workflow_id = _setup()
    inputs = [{"text": "a" * 400}, {"text": "b" * 800}]
    found = _estimate(workflow_id, inputs)
    assert found.basis == "prompt_length"
    assert "No succeeded run" in found.basis_detail
    summary, title = found.steps
    # "Summarize: {{ input.text }}" is 27 characters; with the texts, 1254 characters in all.
    assert summary.input_tokens == (157, 157)  # per item: ceil(ceil(1254 / 4) / 2)
    assert summary.output_tokens == (0, 100)  # the agent's max_tokens
    assert summary.low_nanos == 314 * 1000  # 314 input tokens at $1 per million
    assert summary.high_nanos == 314 * 1000 + 200 * 2000  # plus 2 x 100 output tokens at $2
    # The title step reads the summary's output: none (low) up to 100 tokens (high), and
    # its agent has no max_tokens (1024, the default).
    assert title.output_tokens == (0, 1024)
    assert title.input_tokens[1] - title.input_tokens[0] == 100
    assert found.low_nanos == summary.low_nanos + title.low_nanos
    assert found.high_nanos > found.low_nanos
    assert found.expected_nanos is None
    assert found.unpriced_steps == []


def test_with_history_each_step_uses_its_recent_token_counts(sqlite_db: str) -> None:
    workflow_id = _setup()
    # Ten runs: the summary used 100..1000 input tokens and 10..100 output tokens.
    _history(
        workflow_id,
        [{"summary": (100 * i, 10 * i), "title": (50, 5)} for i in range(1, 11)],
    )
    found = _estimate(workflow_id, [{"text": "x"}] * 3)
    assert found.basis == "history"
    assert "last 10 succeeded run(s)" in found.basis_detail
    summary, title = found.steps
    assert summary.samples == 10
    assert summary.input_tokens == (100, 900)
    # 10th percentile call: 100 in + 10 out = 100 + 20 micro-dollars; 90th: 900 + 180.
    assert summary.low_nanos == 3 * 120_000
    assert summary.high_nanos == 3 * 1_080_000
    assert summary.expected_nanos == 3 * 660_000  # the mean: 550 in, 55 out
    assert title.low_nanos == title.high_nanos == 3 * 60_000
    assert found.expected_nanos == summary.expected_nanos + title.expected_nanos


def test_a_step_added_since_the_last_runs_is_estimated_from_its_prompt(sqlite_db: str) -> None:
    workflow_id = _setup()
    _history(workflow_id, [{"summary": (100, 10)}])  # the title step has no usage
    found = _estimate(workflow_id, [{"text": "x"}])
    assert found.basis == "mixed"
    assert [s.basis for s in found.steps] == ["history", "prompt_length"]
    assert found.basis_detail.startswith("Steps title (no history yet)")
    # The title's prompt and system prompt (45 characters) read the summary's output,
    # which its history puts at 10 tokens (40 characters): 85 characters, 22 tokens.
    assert found.steps[1].input_tokens == (22, 22)


def test_a_model_without_a_price_is_left_out_and_named(sqlite_db: str) -> None:
    workflow_id = _setup(titler_model="mystery")
    found = _estimate(workflow_id, [{"text": "x"}])
    assert found.unpriced_steps == ["title (openai/mystery)"]
    assert found.steps[1].low_nanos is None
    assert found.low_nanos == found.steps[0].low_nanos
