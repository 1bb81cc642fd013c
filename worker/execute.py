"""Executing one step: claim → render → call the provider → record → enqueue successors.

Plain functions that tests call without Celery; `worker.tasks` only unpacks the id.
Every way a step can end is decided here and written by `worker.lifecycle`: success,
a retry later (transient provider error), or a failure the user can read (permanent
provider error, template error, undecryptable key, malformed answer, a spent budget,
or a bug).
"""

from __future__ import annotations

import logging
import socket
import time
from datetime import datetime
from typing import Any

from sqlalchemy.exc import DBAPIError

from shared import budgets
from shared.config import get_settings
from shared.crypto import SecretDecryptError
from shared.db import transaction
from shared.keystore import get_secret_box
from shared.log_setup import log_context
from shared.models import RunStatus, utcnow
from shared.prices_store import price_lookup
from shared.pricing import step_cost, usd_to_nanos
from shared.providers import (
    ChatRequest,
    Completion,
    Provider,
    ProviderError,
    RateLimited,
    make_provider,
)
from shared.templates import PromptRenderError, render_prompt
from worker import lifecycle, limits, metrics
from worker.db_retry import is_transient_db_error, with_db_retry
from worker.dispatch import enqueue_step_later, enqueue_steps
from worker.http_clients import thread_client
from worker.retry_policy import DEFAULT_MAX_ATTEMPTS, DEFAULT_POLICY
from worker.run_events import run_closed

log = logging.getLogger(__name__)
HOST = socket.gethostname()


class StepFailed(Exception):
    """A failure that ends the step at once, with a message for the user."""

    def __init__(self, message: str, *, kind: str) -> None:
        super().__init__(message)
        self.kind = kind


def execute_step(step_id: str, *, node: str | None = None) -> None:
    """Run one step. `node` is the Celery node name of the worker (recorded as the
    step's `worker_host`: two workers on one machine stay apart); default: this host.
    Log lines written meanwhile carry the step's ids (JSON logs)."""
    with log_context(step_id=step_id):
        _claim_and_run(step_id, node)


def _claim_and_run(step_id: str, node: str | None) -> None:
    settings = get_settings()
    budgets.refresh()  # before the transaction, never inside it (see its docstring)
    with transaction() as db:
        claim = lifecycle.claim_step(
            db,
            step_id,
            host=node or HOST,
            default_timeout=settings.step_timeout_seconds,
            lease_margin=settings.lease_margin_seconds,
        )
        # Checked in the claim's transaction: no extra one, and none at all when no
        # budget applies (the list of budgets is cached per process).
        spent = (
            None
            if claim is None
            else budgets.spent_budget(db, key_id=claim.key_id, workflow_id=claim.workflow_id)
        )
    if claim is None:
        log.debug("step %s not claimable (done, running elsewhere, or not due)", step_id)
        return
    started = utcnow()
    if claim.due_at is not None:
        metrics.observe_queue_wait(claim.queue, (started - claim.due_at).total_seconds())
    with log_context(run_id=claim.run_id, provider=claim.provider, model=claim.model):
        _run_claimed(claim, spent, started)


def _run_claimed(
    claim: lifecycle.Claim, spent: budgets.BudgetSpent | None, started: datetime
) -> None:
    step_id = claim.step_id
    if spent is not None:
        _fail(
            claim,
            started,
            spent.message,
            kind="BudgetExceeded",
            prompt=None,
            run_status=RunStatus.budget_exceeded,
        )
        return
    prompt: str | None = None
    try:
        prompt = _render(claim)
        if get_settings().log_prompts:
            log.debug("step %s prompt (OWNKEY_LOG_PROMPTS is on): %s", step_id, prompt)
        request = _build_request(claim, prompt)
        # Everything before the call is done before its rate-limit slot is taken: the
        # limiter counts admissions, the provider counts arrivals, and the gap between
        # the two must stay far below the limiter's one second of slack.
        provider = _provider_for(claim)
        wait = limits.wait_for_slot(claim, request)
        if wait > 0:
            _wait_for_rate_limit(claim, wait)
            return
        call_started = time.perf_counter()
        try:
            completion = provider.complete(request)
        except ProviderError as exc:
            metrics.observe_call(claim.provider, claim.model, status_code=exc.status_code)
            raise
        call_seconds = time.perf_counter() - call_started
        limits.settle(claim, request, completion)
    except ProviderError as exc:
        if isinstance(exc, RateLimited):
            limits.learn(claim, exc)
        _handle_provider_error(claim, exc, started, prompt)
        return
    except StepFailed as exc:
        _fail(claim, started, str(exc), kind=exc.kind, prompt=prompt)
        return
    except Exception as exc:  # a bug must end the step readably, not wedge it
        log.exception("step %s: unexpected error", step_id)
        _fail(
            claim,
            started,
            f"internal error ({type(exc).__name__})",
            kind="InternalError",
            prompt=prompt,
        )
        return

    result = _result_from(claim, prompt, completion)
    metrics.observe_call(
        claim.provider,
        claim.model,
        status_code=200,
        seconds=call_seconds,
        input_tokens=result.input_tokens,
        output_tokens=result.output_tokens,
        cached_tokens=result.cached_tokens,
        cost_usd=None if result.cost_nanos is None else result.cost_nanos / 1e9,
    )
    entry = _attempt_entry(claim, started, status_code=200)

    def record() -> lifecycle.Advance:
        with transaction() as db:
            return lifecycle.complete_step(db, claim, result, entry)

    try:
        advance = with_db_retry(record, what=f"recording step {step_id}")
    except DBAPIError as exc:
        if is_transient_db_error(exc):
            raise  # the database stayed away: the lease runs out and the step runs again
        # The database refused this output (e.g. a character PostgreSQL cannot store).
        message = f"the provider's answer could not be stored ({type(exc.orig).__name__})"
        _fail(claim, started, message, kind="StorageError", prompt=None)
        return
    enqueue_steps(advance.ready)
    budgets.announce_soft_limits(advance.soft_limits)
    _after(claim, advance)


def _after(
    claim: lifecycle.Claim, advance: lifecycle.Advance, *, finished_as: str | None = None
) -> None:
    """What follows a committed outcome: the step's count, and, if it closed the run,
    the run's events."""
    outcome = finished_as or advance.step_status
    # The one line a step logs at INFO (Celery's own per-task lines are quiet).
    log.info(
        "step %s of run %s (%s): %s",
        claim.step_id,
        claim.run_id,
        claim.queued.label,
        outcome or "back in its queue, or its lease was lost",
    )
    if outcome:
        metrics.observe_step_finished(outcome)
    if advance.closed:
        run_closed(claim.run_id, batch_id=claim.batch_id, workflow_id=claim.workflow_id)


def _render(claim: lifecycle.Claim) -> str:
    try:
        return render_prompt(
            claim.prompt_template, input=claim.run_input, step_outputs=claim.upstream_outputs
        )
    except PromptRenderError as exc:
        raise StepFailed(f"prompt template: {exc}", kind="TemplateError") from exc


def _build_request(claim: lifecycle.Claim, prompt: str) -> ChatRequest:
    config = claim.agent_config
    return ChatRequest(
        model=claim.model,
        prompt=prompt,
        system=config.get("system_prompt"),
        temperature=config.get("temperature"),
        max_tokens=config.get("max_tokens"),
        timeout=config.get("timeout_seconds") or get_settings().step_timeout_seconds,
    )


def _provider_for(claim: lifecycle.Claim) -> Provider:
    try:
        secret = (
            get_secret_box().decrypt(claim.secret_ciphertext) if claim.secret_ciphertext else None
        )
    except SecretDecryptError:
        raise StepFailed(
            f"the secret of key '{claim.key_name}' cannot be decrypted: this worker's "
            "OWNKEY_SECRET_KEY differs from the one the key was stored with",
            kind="SecretDecryptError",
        ) from None
    return make_provider(
        claim.provider, base_url=claim.base_url, api_key=secret, client=thread_client()
    )


def _wait_for_rate_limit(claim: lifecycle.Claim, wait: float) -> None:
    """No room in the key's limits: hand the step back without spending an attempt,
    and free this worker slot until the room returns."""

    def record() -> lifecycle.Advance:
        with transaction() as db:
            return lifecycle.retry_step_later(
                db, claim, delay_seconds=wait, attempt_entry=None, count_attempt=False
            )

    advance = with_db_retry(record, what=f"deferring step {claim.step_id}")
    for step in advance.ready:  # this step, on its own queue, unless its run ended
        enqueue_step_later(step, countdown=wait)
    _after(claim, advance)


def _result_from(
    claim: lifecycle.Claim, prompt: str, completion: Completion
) -> lifecycle.StepResult:
    price = price_lookup(claim.provider, claim.model)
    cost = step_cost(
        price=price,
        input_tokens=completion.input_tokens,
        output_tokens=completion.output_tokens,
        cached_input_tokens=completion.cached_input_tokens,
        cache_write_tokens=completion.cache_write_tokens,
    )
    return lifecycle.StepResult(
        output=completion.text,
        prompt=prompt,
        finish_reason=completion.finish_reason,
        request_id=completion.request_id,
        input_tokens=completion.input_tokens,
        output_tokens=completion.output_tokens,
        cached_tokens=completion.cached_input_tokens,
        cache_write_tokens=completion.cache_write_tokens,
        cost_nanos=None if cost is None else usd_to_nanos(cost),
        latency_ms=completion.latency_ms,
    )


def _fail(
    claim: lifecycle.Claim,
    started: datetime,
    message: str,
    *,
    kind: str,
    prompt: str | None,
    status_code: int | None = None,
    detail: str | None = None,
    run_status: RunStatus = RunStatus.failed,
) -> None:
    entry = _attempt_entry(
        claim, started, status_code=status_code, error=detail or message, kind=kind
    )

    def record() -> lifecycle.Advance:
        with transaction() as db:
            return lifecycle.fail_step(
                db,
                claim,
                error=message,
                error_kind=kind,
                attempt_entry=entry,
                prompt=prompt,
                run_status=run_status,
            )

    advance = with_db_retry(record, what=f"recording the failure of step {claim.step_id}")
    _after(
        claim,
        advance,
        finished_as=RunStatus.budget_exceeded if run_status == RunStatus.budget_exceeded else None,
    )


def _handle_provider_error(
    claim: lifecycle.Claim, exc: ProviderError, started: datetime, prompt: str | None
) -> None:
    max_attempts = int(claim.agent_config.get("max_attempts") or DEFAULT_MAX_ATTEMPTS)
    delay = DEFAULT_POLICY.delay_for(exc, attempt=claim.attempt, max_attempts=max_attempts)
    kind = type(exc).__name__
    if delay is None:
        gave_up = " (retries exhausted)" if exc.retryable else ""
        message = (
            f"{exc}{gave_up} (key '{claim.key_name}', provider {claim.provider}, "
            f"model {claim.model}, attempt {claim.attempt} of {max_attempts})"
        )
        _fail(
            claim,
            started,
            message,
            kind=kind,
            prompt=prompt,
            status_code=exc.status_code,
            detail=str(exc),
        )
        return
    entry = _attempt_entry(
        claim, started, status_code=exc.status_code, error=str(exc), kind=kind, wait=delay
    )

    def record() -> lifecycle.Advance:
        with transaction() as db:
            return lifecycle.retry_step_later(db, claim, delay_seconds=delay, attempt_entry=entry)

    advance = with_db_retry(record, what=f"scheduling a retry of step {claim.step_id}")
    for step in advance.ready:  # this step, on its own queue, unless its run ended
        enqueue_step_later(step, countdown=delay)
    _after(claim, advance)


def _attempt_entry(
    claim: lifecycle.Claim,
    started: datetime,
    *,
    status_code: int | None = None,
    error: str | None = None,
    kind: str | None = None,
    wait: float | None = None,
) -> dict[str, Any]:
    return {
        "attempt": claim.attempt,
        "at": started.isoformat(),
        "host": HOST,
        "status_code": status_code,
        "error": error,
        "kind": kind,
        "wait_seconds": None if wait is None else round(wait, 3),
    }
