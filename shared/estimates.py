"""What a batch will cost, before it starts: a low-high range in USD and its basis.

Each step of the workflow is estimated on its own:

* **history**: the step's token counts in the last `HISTORY_RUNS` succeeded runs of the
  workflow, priced at today's price of the agent's model: low is the 10th percentile of
  a call's cost, high the 90th, expected the mean, each times the number of items;
* **prompt length**, for a step with no history (a new workflow, or a step added since):
  the prompt template, the system prompt, the input fields it reads (this dataset's own
  values) and the upstream outputs it reads, at about 4 characters per token; the
  answer costs nothing (low) up to the agent's `max_tokens` (high; 1024 when unset,
  the default ownkey sends to Anthropic).

A step whose model has no known price is left out of the totals and listed: its cost is
unknown, not zero (as in shared/pricing.py).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, cast

from sqlalchemy import Connection, Table, select
from sqlmodel import Session

from shared.models import Agent, ProviderKey, Run, RunStatus, StepRun, StepStatus
from shared.prices_store import price_lookup
from shared.pricing import Price, step_cost, usd_to_nanos
from shared.providers.anthropic import DEFAULT_MAX_TOKENS
from shared.templates import TemplateSyntaxProblem, check_template

__all__ = [
    "CHARS_PER_TOKEN",
    "HISTORY_RUNS",
    "Estimate",
    "StepEstimate",
    "estimate_batch",
    "percentile",
]

HISTORY_RUNS = 50
CHARS_PER_TOKEN = 4
LOW, HIGH = 0.10, 0.90

RUNS = cast(Table, Run.__table__)  # type: ignore[attr-defined]
STEPS = cast(Table, StepRun.__table__)  # type: ignore[attr-defined]
AGENTS = cast(Table, Agent.__table__)  # type: ignore[attr-defined]
KEYS = cast(Table, ProviderKey.__table__)  # type: ignore[attr-defined]

PriceLookup = Callable[[str, str], Price | None]


@dataclass(frozen=True, slots=True)
class StepEstimate:
    step: str
    agent: str
    provider: str
    model: str
    basis: str  # "history" or "prompt_length"
    samples: int  # succeeded runs behind a history estimate (0 for prompt length)
    input_tokens: tuple[int, int]  # per item: low, high
    output_tokens: tuple[int, int]
    # The whole batch, in nano-dollars; None when the model has no known price.
    low_nanos: int | None
    high_nanos: int | None
    expected_nanos: int | None  # history only


@dataclass(frozen=True, slots=True)
class Estimate:
    items: int
    low_nanos: int
    high_nanos: int
    expected_nanos: int | None  # when every step has history
    basis: str  # "history", "prompt_length" or "mixed"
    basis_detail: str
    steps: list[StepEstimate]
    unpriced_steps: list[str]  # "step (provider/model)": left out of the totals


def percentile(values: Sequence[int | Decimal], fraction: float) -> Any:
    """Nearest-rank percentile of a non-empty sequence (no interpolation: a value that
    was actually seen)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


@dataclass(frozen=True, slots=True)
class _Step:
    key: str
    agent: str
    provider: str
    model: str
    prompt: str
    system_prompt: str
    max_tokens: int
    input_fields: tuple[str, ...]
    upstream: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class _Sample:
    run_id: str
    input_tokens: int
    output_tokens: int
    cached_tokens: int
    cache_write_tokens: int


def _plan(db: Session | Connection, steps: list[dict[str, Any]]) -> list[_Step]:
    names = sorted({step["agent"] for step in steps})
    agents = {
        row.name: row
        for row in db.execute(
            select(AGENTS.c.name, AGENTS.c.model, AGENTS.c.system_prompt, AGENTS.c.max_tokens)
            .add_columns(KEYS.c.provider)
            .select_from(AGENTS.join(KEYS, AGENTS.c.key_id == KEYS.c.id))
            .where(AGENTS.c.name.in_(names))
        )
    }
    planned = []
    for step in steps:
        agent = agents.get(step["agent"])
        try:
            info = check_template(step["prompt"])
            fields, upstream = tuple(sorted(info.input_fields)), tuple(info.referenced_steps)
        except TemplateSyntaxProblem:
            fields, upstream = (), ()
        planned.append(
            _Step(
                key=step["id"],
                agent=step["agent"],
                provider="" if agent is None else agent.provider,
                model="" if agent is None else agent.model,
                prompt=step["prompt"],
                system_prompt=(agent.system_prompt or "") if agent is not None else "",
                max_tokens=(agent.max_tokens if agent is not None else None) or DEFAULT_MAX_TOKENS,
                input_fields=fields,
                upstream=upstream,
            )
        )
    return planned


def _history(db: Session | Connection, workflow_id: str, limit: int) -> dict[str, list[_Sample]]:
    recent = (
        select(RUNS.c.id)
        .where(RUNS.c.workflow_id == workflow_id, RUNS.c.status == RunStatus.succeeded)
        .order_by(RUNS.c.finished_at.desc())
        .limit(limit)
        .subquery()
    )
    rows = db.execute(
        select(
            STEPS.c.step_key,
            STEPS.c.run_id,
            STEPS.c.input_tokens,
            STEPS.c.output_tokens,
            STEPS.c.cached_tokens,
            STEPS.c.cache_write_tokens,
        ).where(
            STEPS.c.run_id.in_(select(recent.c.id)),
            STEPS.c.status == StepStatus.succeeded,
            STEPS.c.input_tokens.is_not(None),
            STEPS.c.output_tokens.is_not(None),
        )
    ).all()
    found: dict[str, list[_Sample]] = {}
    for row in rows:
        found.setdefault(row.step_key, []).append(
            _Sample(
                row.run_id,
                row.input_tokens,
                row.output_tokens,
                row.cached_tokens or 0,
                row.cache_write_tokens or 0,
            )
        )
    return found


def _nanos(cost: Decimal | None) -> int | None:
    return None if cost is None else usd_to_nanos(cost)


def _from_history(
    step: _Step, samples: list[_Sample], items: int, price: Price | None
) -> StepEstimate:
    costs = [
        step_cost(
            price=price,
            input_tokens=s.input_tokens,
            output_tokens=s.output_tokens,
            cached_input_tokens=s.cached_tokens,
            cache_write_tokens=s.cache_write_tokens,
        )
        for s in samples
    ]
    known = [c for c in costs if c is not None]
    low = high = expected = None
    if price is not None and known:
        low, high = percentile(known, LOW) * items, percentile(known, HIGH) * items
        expected = sum(known, Decimal(0)) / len(known) * items
    inputs = [s.input_tokens for s in samples]
    outputs = [s.output_tokens for s in samples]
    return StepEstimate(
        step=step.key,
        agent=step.agent,
        provider=step.provider,
        model=step.model,
        basis="history",
        samples=len({s.run_id for s in samples}),
        input_tokens=(percentile(inputs, LOW), percentile(inputs, HIGH)),
        output_tokens=(percentile(outputs, LOW), percentile(outputs, HIGH)),
        low_nanos=_nanos(low),
        high_nanos=_nanos(high),
        expected_nanos=_nanos(expected),
    )


def _as_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=str)


def _from_prompt_length(
    step: _Step,
    inputs: Sequence[dict[str, Any]],
    upstream_output: dict[str, tuple[int, int]],
    price: Price | None,
) -> StepEstimate:
    fixed = len(step.prompt) + len(step.system_prompt)
    low_chars = high_chars = 0
    for item in inputs:
        chars = fixed + sum(len(_as_text(item.get(name, ""))) for name in step.input_fields)
        low_chars += chars
        high_chars += chars
    for name in step.upstream:
        low_out, high_out = upstream_output.get(name, (0, 0))
        low_chars += low_out * CHARS_PER_TOKEN * len(inputs)
        high_chars += high_out * CHARS_PER_TOKEN * len(inputs)
    low_in = math.ceil(low_chars / CHARS_PER_TOKEN)
    high_in = math.ceil(high_chars / CHARS_PER_TOKEN)
    count = max(len(inputs), 1)
    return StepEstimate(
        step=step.key,
        agent=step.agent,
        provider=step.provider,
        model=step.model,
        basis="prompt_length",
        samples=0,
        input_tokens=(math.ceil(low_in / count), math.ceil(high_in / count)),
        output_tokens=(0, step.max_tokens),
        low_nanos=_nanos(step_cost(price=price, input_tokens=low_in, output_tokens=0)),
        high_nanos=_nanos(
            step_cost(
                price=price, input_tokens=high_in, output_tokens=step.max_tokens * len(inputs)
            )
        ),
        expected_nanos=None,
    )


def _basis(estimates: list[StepEstimate]) -> tuple[str, str]:
    history = [e for e in estimates if e.basis == "history"]
    length = [e for e in estimates if e.basis == "prompt_length"]
    runs = max((e.samples for e in history), default=0)
    from_history = (
        f"token counts of the last {runs} succeeded run(s) of this workflow, per step "
        "(low: 10th percentile, high: 90th, expected: the mean), at today's prices"
    )
    from_length = (
        "the prompt length (about 4 characters per token), with answers from none (low) "
        f"to the agent's max_tokens (high; {DEFAULT_MAX_TOKENS} where unset)"
    )
    if not length:
        return "history", "From " + from_history
    if not history:
        return "prompt_length", f"No succeeded run of this workflow yet: {from_length}"
    named = ", ".join(e.step for e in length)
    return (
        "mixed",
        f"Steps {named} (no history yet): {from_length}; the others: from {from_history}",
    )


def estimate_batch(
    db: Session | Connection,
    *,
    workflow_id: str,
    steps: list[dict[str, Any]],
    inputs: Sequence[dict[str, Any]],
    history_runs: int = HISTORY_RUNS,
    price: PriceLookup = price_lookup,
) -> Estimate:
    """The cost of running `steps` (the workflow's current definition) once per input."""
    planned = _plan(db, steps)
    history = _history(db, workflow_id, history_runs)
    output_bounds: dict[str, tuple[int, int]] = {}
    for step in planned:
        samples = history.get(step.key)
        outputs = [s.output_tokens for s in samples or []]
        output_bounds[step.key] = (
            (percentile(outputs, LOW), percentile(outputs, HIGH))
            if outputs
            else (0, step.max_tokens)
        )
    estimates = []
    for step in planned:
        step_price = price(step.provider, step.model) if step.provider else None
        samples = history.get(step.key)
        estimates.append(
            _from_history(step, samples, len(inputs), step_price)
            if samples
            else _from_prompt_length(step, inputs, output_bounds, step_price)
        )
    priced = [e for e in estimates if e.low_nanos is not None and e.high_nanos is not None]
    expected = [e.expected_nanos for e in priced]
    basis, detail = _basis(estimates)
    return Estimate(
        items=len(inputs),
        low_nanos=sum(e.low_nanos or 0 for e in priced),
        high_nanos=sum(e.high_nanos or 0 for e in priced),
        expected_nanos=(
            sum(n or 0 for n in expected) if expected and None not in expected else None
        ),
        basis=basis,
        basis_detail=detail,
        steps=estimates,
        unpriced_steps=[
            f"{e.step} ({e.provider or '?'}/{e.model or '?'})"
            for e in estimates
            if e.low_nanos is None
        ],
    )
