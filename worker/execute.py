"""Executing one step: claim → render → call the provider → record → enqueue successors.

Plain functions that tests call without Celery; `worker.tasks` only unpacks the id.
"""

from __future__ import annotations

import logging
import socket
from decimal import Decimal
from typing import Any

from shared.config import get_settings
from shared.crypto import SecretDecryptError
from shared.db import transaction
from shared.keystore import get_secret_box
from shared.models import utcnow
from shared.prices_store import price_lookup
from shared.pricing import step_cost
from shared.providers import ChatRequest, Completion, ProviderError, make_provider
from shared.templates import PromptRenderError, render_prompt
from worker import lifecycle
from worker.dispatch import enqueue_step, enqueue_steps
from worker.http_clients import thread_client
from worker.retry_policy import DEFAULT_MAX_ATTEMPTS, DEFAULT_POLICY

log = logging.getLogger(__name__)
HOST = socket.gethostname()
NANOS_PER_USD = Decimal(1_000_000_000)


def execute_step(step_id: str) -> None:
    settings = get_settings()
    with transaction() as db:
        claim = lifecycle.claim_step(db, step_id, host=HOST, lease_seconds=settings.lease_seconds)
    if claim is None:
        log.debug("step %s not claimable (done, running elsewhere, or not due)", step_id)
        return
    started = utcnow()
    try:
        prompt = render_prompt(
            claim.prompt_template, input=claim.run_input, step_outputs=claim.upstream_outputs
        )
    except PromptRenderError as exc:
        entry = _attempt_entry(claim, started, error=f"prompt template: {exc}", kind="template")
        with transaction() as db:
            lifecycle.fail_step(
                db, claim, error=entry["error"], error_kind="template", attempt_entry=entry
            )
        return

    try:
        completion = _call_provider(claim, prompt)
    except ProviderError as exc:
        _handle_provider_error(claim, exc, started, prompt)
        return
    except SecretDecryptError:
        message = (
            f"the secret of key '{claim.key_name}' cannot be decrypted: this worker's "
            "OWNKEY_SECRET_KEY differs from the one the key was stored with"
        )
        entry = _attempt_entry(claim, started, error=message, kind="SecretDecryptError")
        with transaction() as db:
            lifecycle.fail_step(
                db, claim, error=message, error_kind="SecretDecryptError", attempt_entry=entry
            )
        return

    result = _result_from(claim, prompt, completion)
    entry = _attempt_entry(claim, started, status_code=200)
    with transaction() as db:
        ready = lifecycle.complete_step(db, claim, result, entry)
    enqueue_steps(ready)


def _call_provider(claim: lifecycle.Claim, prompt: str) -> Completion:
    secret = get_secret_box().decrypt(claim.secret_ciphertext) if claim.secret_ciphertext else None
    provider = make_provider(
        claim.provider, base_url=claim.base_url, api_key=secret, client=thread_client()
    )
    config = claim.agent_config
    request = ChatRequest(
        model=claim.model,
        prompt=prompt,
        system=config.get("system_prompt"),
        temperature=config.get("temperature"),
        max_tokens=config.get("max_tokens"),
        timeout=config.get("timeout_seconds") or get_settings().step_timeout_seconds,
    )
    return provider.complete(request)


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
        cost_nanos=None if cost is None else int(cost * NANOS_PER_USD),
        latency_ms=completion.latency_ms,
    )


def _handle_provider_error(
    claim: lifecycle.Claim, exc: ProviderError, started: Any, prompt: str
) -> None:
    max_attempts = int(claim.agent_config.get("max_attempts") or DEFAULT_MAX_ATTEMPTS)
    delay = DEFAULT_POLICY.delay_for(exc, attempt=claim.attempt, max_attempts=max_attempts)
    kind = type(exc).__name__
    if delay is None:
        message = (
            f"{exc} (key '{claim.key_name}', provider {claim.provider}, model {claim.model}"
            f", attempt {claim.attempt} of {max_attempts})"
        )
        entry = _attempt_entry(
            claim, started, status_code=exc.status_code, error=str(exc), kind=kind
        )
        with transaction() as db:
            lifecycle.fail_step(
                db, claim, error=message, error_kind=kind, attempt_entry=entry, prompt=prompt
            )
        return
    entry = _attempt_entry(
        claim, started, status_code=exc.status_code, error=str(exc), kind=kind, wait=delay
    )
    with transaction() as db:
        handed_back = lifecycle.retry_step_later(
            db, claim, delay_seconds=delay, attempt_entry=entry
        )
    if handed_back:
        enqueue_step(claim.step_id, countdown=delay)


def _attempt_entry(
    claim: lifecycle.Claim,
    started: Any,
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
