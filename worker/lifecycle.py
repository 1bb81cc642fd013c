"""A step's life in SQL: claim, succeed, fail, retry; successors; closing the run.

Every function here is one short transaction. Claims are conditional updates with a
lease, so a second delivery of the same message is harmless. Completing a step locks
its run row first (`SELECT ... FOR UPDATE`; SQLite serialises writers anyway), so when
two parallel steps finish at once exactly one of them sees both done and enqueues the
join step.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, or_, update
from sqlmodel import Session, col, select

from shared.models import (
    FINAL_STEP_STATUSES,
    ProviderKey,
    Run,
    RunStatus,
    StepRun,
    StepStatus,
    utcnow,
)


@dataclass(frozen=True, slots=True)
class Claim:
    """Everything a worker needs to call the provider, read in the claim transaction."""

    step_id: str
    run_id: str
    step_key: str
    token: str
    attempt: int
    provider: str
    model: str
    key_name: str
    base_url: str
    secret_ciphertext: str | None
    prompt_template: str
    agent_config: dict[str, Any]
    run_input: dict[str, Any]
    upstream_outputs: dict[str, str]


@dataclass(frozen=True, slots=True)
class StepResult:
    output: str
    prompt: str
    finish_reason: str | None
    request_id: str | None
    input_tokens: int | None
    output_tokens: int | None
    cached_tokens: int
    cache_write_tokens: int
    cost_nanos: int | None
    latency_ms: int


def claim_step(session: Session, step_id: str, *, host: str, lease_seconds: float) -> Claim | None:
    """Take the step if it is due and nobody holds a live lease on it; else None."""
    now = utcnow()
    token = uuid.uuid4().hex
    claimed = session.execute(
        update(StepRun)
        .where(
            col(StepRun.id) == step_id,
            or_(
                and_(
                    col(StepRun.status) == StepStatus.queued,
                    or_(col(StepRun.not_before).is_(None), col(StepRun.not_before) <= now),
                ),
                and_(
                    col(StepRun.status) == StepStatus.running, col(StepRun.lease_expires_at) < now
                ),
            ),
        )
        .values(
            status=StepStatus.running,
            claim_token=token,
            lease_expires_at=now + timedelta(seconds=lease_seconds),
            attempts=StepRun.attempts + 1,
            worker_host=host,
            started_at=now,
        )
    )
    if claimed.rowcount != 1:  # type: ignore[attr-defined]
        return None
    step = session.get_one(StepRun, step_id)
    run = session.get_one(Run, step.run_id)
    if run.status == RunStatus.queued:
        run.status = RunStatus.running
        run.started_at = now
    key = session.get_one(ProviderKey, step.key_id)
    upstream: dict[str, str] = {}
    if step.depends_on:
        for key_name, output in session.exec(
            select(StepRun.step_key, StepRun.output).where(
                StepRun.run_id == step.run_id,
                col(StepRun.step_key).in_(_ancestors(session, step)),
            )
        ):
            upstream[key_name] = output or ""
    return Claim(
        step_id=step.id,
        run_id=step.run_id,
        step_key=step.step_key,
        token=token,
        attempt=step.attempts,
        provider=step.provider,
        model=step.model,
        key_name=key.name,
        base_url=key.base_url,
        secret_ciphertext=key.secret_ciphertext,
        prompt_template=step.prompt_template,
        agent_config=dict(step.agent_config),
        run_input=dict(run.input),
        upstream_outputs=upstream,
    )


def _ancestors(session: Session, step: StepRun) -> set[str]:
    """All steps upstream of `step`: a template may read any ancestor's output."""
    graph = dict(
        session.exec(
            select(StepRun.step_key, StepRun.depends_on).where(StepRun.run_id == step.run_id)
        ).all()
    )
    seen: set[str] = set()
    todo = list(step.depends_on)
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(graph.get(name, []))
    return seen


def _lock_run(session: Session, run_id: str) -> Run:
    return session.exec(select(Run).where(Run.id == run_id).with_for_update()).one()


def _finish_held_step(session: Session, claim: Claim, **values: Any) -> bool:
    """Write the outcome only if this worker still holds the lease."""
    result = session.execute(
        update(StepRun)
        .where(
            col(StepRun.id) == claim.step_id,
            col(StepRun.claim_token) == claim.token,
            col(StepRun.status) == StepStatus.running,
        )
        .values(claim_token=None, lease_expires_at=None, **values)
    )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


def complete_step(
    session: Session, claim: Claim, result: StepResult, attempt_entry: dict[str, Any]
) -> list[str]:
    """Record a success; returns the ids of successor steps that became due."""
    run = _lock_run(session, claim.run_id)
    step = session.get_one(StepRun, claim.step_id)
    now = utcnow()
    if not _finish_held_step(
        session,
        claim,
        status=StepStatus.succeeded,
        finished_at=now,
        prompt=result.prompt,
        output=result.output,
        error=None,
        error_kind=None,
        finish_reason=result.finish_reason,
        request_id=result.request_id,
        input_tokens=result.input_tokens,
        output_tokens=result.output_tokens,
        cached_tokens=result.cached_tokens,
        cache_write_tokens=result.cache_write_tokens,
        cost_nanos=result.cost_nanos,
        latency_ms=result.latency_ms,
        attempt_log=[*step.attempt_log, attempt_entry],
    ):
        return []
    run.input_tokens += result.input_tokens or 0
    run.output_tokens += result.output_tokens or 0
    run.cached_tokens += result.cached_tokens
    if result.cost_nanos is None:
        run.cost_incomplete = True
    else:
        run.cost_nanos += result.cost_nanos
    session.expire(step)
    return _advance_run(session, run, now)


def fail_step(
    session: Session,
    claim: Claim,
    *,
    error: str,
    error_kind: str,
    attempt_entry: dict[str, Any],
    prompt: str | None = None,
) -> None:
    """Record a permanent failure: the run fails, naming the step; waiting steps are skipped."""
    run = _lock_run(session, claim.run_id)
    step = session.get_one(StepRun, claim.step_id)
    now = utcnow()
    if not _finish_held_step(
        session,
        claim,
        status=StepStatus.failed,
        finished_at=now,
        prompt=prompt,
        error=error,
        error_kind=error_kind,
        attempt_log=[*step.attempt_log, attempt_entry],
    ):
        return
    if run.status in (RunStatus.queued, RunStatus.running):
        run.status = RunStatus.failed
        run.failed_step = claim.step_key
        run.error = f"step '{claim.step_key}' failed: {error}"
    session.execute(
        update(StepRun)
        .where(
            col(StepRun.run_id) == run.id,
            col(StepRun.status).in_([StepStatus.pending, StepStatus.queued]),
        )
        .values(status=StepStatus.skipped, finished_at=now)
    )
    _advance_run(session, run, now)


def retry_step_later(
    session: Session, claim: Claim, *, delay_seconds: float, attempt_entry: dict[str, Any]
) -> bool:
    """Hand the step back as queued, due after the delay; the caller enqueues it."""
    step = session.get_one(StepRun, claim.step_id)
    now = utcnow()
    return _finish_held_step(
        session,
        claim,
        status=StepStatus.queued,
        queued_at=now,
        not_before=now + timedelta(seconds=delay_seconds),
        attempt_log=[*step.attempt_log, attempt_entry],
    )


def _advance_run(session: Session, run: Run, now: datetime) -> list[str]:
    """Queue the steps whose dependencies have all succeeded; close a run whose every
    step is final. The caller holds the run's row lock."""
    session.flush()
    steps = session.exec(
        select(StepRun).where(StepRun.run_id == run.id).execution_options(populate_existing=True)
    ).all()
    succeeded = {s.step_key for s in steps if s.status == StepStatus.succeeded}
    ready: list[str] = []
    if run.status in (RunStatus.queued, RunStatus.running):
        for s in steps:
            if s.status == StepStatus.pending and all(d in succeeded for d in s.depends_on):
                s.status = StepStatus.queued
                s.queued_at = now
                ready.append(s.id)
    if not ready and all(s.status in FINAL_STEP_STATUSES for s in steps):
        if run.status in (RunStatus.queued, RunStatus.running):
            failed = any(s.status == StepStatus.failed for s in steps)
            run.status = RunStatus.failed if failed else RunStatus.succeeded
        run.finished_at = run.finished_at or now
    return ready
