"""One attempt of one webhook delivery: sign the body, POST it, record what happened.

The call happens outside any transaction, with short timeouts (a worker thread is held
for `OWNKEY_WEBHOOK_TIMEOUT_SECONDS` at most), and does not follow redirects: a
receiver that moved is told by its 3xx failing, not by ownkey posting elsewhere. What is
stored of a failure is the status code and a short, scrubbed description: never the
secret, never the URL (its query may carry the receiver's own token).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import timedelta

import httpx

from shared import webhook_store
from shared.config import get_settings
from shared.crypto import SecretDecryptError
from shared.db import read_session, transaction
from shared.keystore import get_secret_box
from shared.models import utcnow
from shared.webhook_signing import SIGNATURE_HEADER, signed_headers
from shared.webhook_store import Attempt, Outcome, ToSend
from worker.http_clients import thread_client
from worker.webhook_retry import retry_delay

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_SECONDS = 5.0
# How much of a refusing receiver's answer is kept, to say why it refused.
ANSWER_EXCERPT_CHARS = 200
_READ_LIMIT_BYTES = 4096


@dataclass(frozen=True, slots=True)
class CallResult:
    ok: bool
    status_code: int | None = None
    error: str | None = None


def deliver(attempt: Attempt, *, client: httpx.Client | None = None) -> Outcome | None:
    """Make one claimed attempt and record it; None if the attempt had been superseded
    (another worker holds a newer one, or the delivery ended)."""
    with read_session() as session:
        delivery = webhook_store.load(session, attempt)
    if delivery is None:
        return None
    if delivery.secret_ciphertext is None:
        result = CallResult(False, error="the webhook was deleted")
        final = True
    else:
        result = _attempt(delivery, delivery.secret_ciphertext, client or thread_client())
        final = False
    outcome = _outcome(result, attempt.number, final=final)
    with transaction() as db:
        recorded = webhook_store.record(db, attempt, outcome)
    log.info(
        "webhook delivery %s attempt %d: %s%s",
        attempt.delivery_id,
        attempt.number,
        outcome.status,
        f" ({outcome.error})" if outcome.error else "",
    )
    return outcome if recorded else None


def body_of(delivery: ToSend) -> bytes:
    """The JSON body: the same bytes on every attempt, so a receiver may compare them."""
    envelope = {
        "id": delivery.id,
        "event": delivery.event,
        "created_at": delivery.created_at.isoformat(),
        "data": delivery.payload,
    }
    return json.dumps(envelope, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _attempt(delivery: ToSend, ciphertext: str, client: httpx.Client) -> CallResult:
    try:
        secret = get_secret_box().decrypt(ciphertext)
    except SecretDecryptError:
        return CallResult(
            False, error="the webhook's secret cannot be decrypted with this worker's master key"
        )
    body = body_of(delivery)
    headers = signed_headers(
        secret=secret, event=delivery.event, delivery_id=delivery.id, body=body
    )
    return call(client, delivery.url, body, headers, scrub=(secret, headers[SIGNATURE_HEADER]))


def call(
    client: httpx.Client,
    url: str,
    body: bytes,
    headers: dict[str, str],
    *,
    scrub: tuple[str, ...] = (),
) -> CallResult:
    """POST the body; a 2xx is success, anything else a failure described in words."""
    timeout_seconds = get_settings().webhook_timeout_seconds
    timeout = httpx.Timeout(timeout_seconds, connect=min(CONNECT_TIMEOUT_SECONDS, timeout_seconds))
    try:
        with client.stream("POST", url, content=body, headers=headers, timeout=timeout) as answer:
            if answer.is_success:
                return CallResult(True, answer.status_code)
            excerpt = _excerpt(answer, scrub)
    except httpx.TimeoutException as exc:
        return CallResult(False, error=f"no answer within {timeout_seconds:g} s ({_name(exc)})")
    except httpx.ConnectError as exc:
        return CallResult(False, error=f"could not connect to the receiver ({_name(exc)})")
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        return CallResult(False, error=f"the call failed ({_name(exc)})")
    error = f"HTTP {answer.status_code}"
    if answer.is_redirect:
        error += " (a redirect: webhooks do not follow them; use the final URL)"
    return CallResult(False, answer.status_code, f"{error}: {excerpt}" if excerpt else error)


def _name(exc: Exception) -> str:
    return type(exc).__name__


def _excerpt(answer: httpx.Response, scrub: tuple[str, ...]) -> str:
    """The start of a refusal's body, on one line, without anything secret."""
    raw = b""
    try:
        for chunk in answer.iter_bytes():
            raw += chunk
            if len(raw) >= _READ_LIMIT_BYTES:
                break
    except httpx.HTTPError:
        pass
    text = " ".join(raw.decode("utf-8", errors="replace").split())
    for secret in scrub:
        text = text.replace(secret, "[redacted]")
    return text[:ANSWER_EXCERPT_CHARS]


def _outcome(result: CallResult, attempt: int, *, final: bool) -> Outcome:
    now = utcnow()
    if result.ok:
        return Outcome(webhook_store.DELIVERED, result.status_code, None, None, delivered_at=now)
    settings = get_settings()
    if final or attempt >= settings.webhook_max_attempts:
        return Outcome(webhook_store.FAILED, result.status_code, result.error, None)
    delay = retry_delay(attempt, base_seconds=settings.webhook_retry_base_seconds)
    return Outcome(
        webhook_store.PENDING, result.status_code, result.error, now + timedelta(seconds=delay)
    )
