"""One attempt of a delivery against an httpx MockTransport receiver: signed, recorded,
retried on the schedule, failed after the last attempt, never leaking the secret or the
URL's query into the stored error."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta

import httpx
import pytest
from sqlmodel import select

from shared import webhook_store, webhooks
from shared.automation_models import WebhookDelivery, WebhookSubscription
from shared.config import get_settings
from shared.db import read_session, session_scope
from shared.models import utcnow
from shared.webhook_signing import verify
from shared.webhook_store import Attempt
from tests.factories import make_closed_run, make_webhook, make_workflow
from worker.webhook_delivery import deliver
from worker.webhook_sweep import send_due

SECRET = "whsec_unit-secret-value"
Answer = httpx.Response | Exception


class Receiver:
    """Answers with `answers` in turn (the last one from then on); records requests."""

    def __init__(self, *answers: Answer) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer

    def client(self) -> httpx.Client:
        return httpx.Client(transport=httpx.MockTransport(self))


@pytest.fixture
def queued(sqlite_db: str, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Attempt]:
    """A factory: a closed run whose webhook's delivery is queued; its first attempt."""
    monkeypatch.setenv("OWNKEY_WEBHOOK_MAX_ATTEMPTS", "3")
    get_settings.cache_clear()
    monkeypatch.setattr(webhooks, "enqueue_attempts", lambda attempts: None)

    def make(url: str = "http://receiver.test/hook") -> Attempt:
        with session_scope() as session:
            workflow = make_workflow(session, name="wf", steps=[])
            make_webhook(
                session,
                target_type="workflow",
                target_id=workflow.id,
                secret=SECRET,
                url=url,
                created_at=utcnow() - timedelta(minutes=1),
            )
            run = make_closed_run(session, workflow)
        webhooks.on_run_closed(run.id)
        [row] = rows()
        return Attempt(row.id, 1)

    return make


def rows() -> list[WebhookDelivery]:
    with read_session() as session:
        return list(session.exec(select(WebhookDelivery)).all())


def test_a_2xx_answer_delivers_a_body_signed_with_the_secret(
    queued: Callable[..., Attempt],
) -> None:
    attempt = queued()
    receiver = Receiver(httpx.Response(204))

    outcome = deliver(attempt, client=receiver.client())

    assert outcome is not None and outcome.status == "delivered"
    [request] = receiver.requests
    assert request.method == "POST" and request.headers["content-type"] == "application/json"
    assert request.headers["x-ownkey-event"] == "run.finished"
    assert request.headers["x-ownkey-delivery"] == attempt.delivery_id
    assert verify(
        SECRET,
        timestamp=request.headers["x-ownkey-timestamp"],
        body=request.content,
        signature=request.headers["x-ownkey-signature"],
    )
    body = json.loads(request.content)
    assert body["id"] == attempt.delivery_id and body["event"] == "run.finished"
    assert body["data"]["run"]["status"] == "succeeded"
    [row] = rows()
    assert (row.status, row.attempts, row.last_status_code) == ("delivered", 1, 204)
    assert row.delivered_at is not None and row.next_attempt_at is None


def test_a_refusal_is_retried_on_schedule_then_failed_after_the_last_attempt(
    queued: Callable[..., Attempt],
) -> None:
    attempt = queued()
    refusal = httpx.Response(503, text=f"down for maintenance\n(secret was {SECRET})")
    receiver = Receiver(refusal)
    start = utcnow()

    assert deliver(attempt, client=receiver.client()) is not None
    [row] = rows()
    assert (row.status, row.attempts, row.last_status_code) == ("pending", 1, 503)
    assert row.last_error == "HTTP 503: down for maintenance (secret was [redacted])"
    assert row.next_attempt_at is not None
    assert timedelta(seconds=7.9) <= row.next_attempt_at - start <= timedelta(seconds=13)

    assert send_due(start + timedelta(seconds=5)) == 0  # not due yet
    assert send_due(start + timedelta(seconds=15)) == 1
    deliver(Attempt(attempt.delivery_id, 2), client=receiver.client())
    assert send_due(start + timedelta(hours=1)) == 1
    outcome = deliver(Attempt(attempt.delivery_id, 3), client=receiver.client())

    assert outcome is not None and outcome.status == "failed"
    [row] = rows()
    assert (row.status, row.attempts, row.next_attempt_at) == ("failed", 3, None)
    assert send_due(start + timedelta(days=1)) == 0
    assert len(receiver.requests) == 3
    assert len({r.content for r in receiver.requests}) == 1  # the same body each time
    assert {r.headers["x-ownkey-delivery"] for r in receiver.requests} == {attempt.delivery_id}


@pytest.mark.parametrize(
    ("failure", "expected"),
    [
        (httpx.ConnectTimeout("timed out"), "no answer within 10 s (ConnectTimeout)"),
        (httpx.ReadTimeout("timed out"), "no answer within 10 s (ReadTimeout)"),
        (httpx.ConnectError("refused"), "could not connect to the receiver (ConnectError)"),
        (httpx.RemoteProtocolError("bad"), "the call failed (RemoteProtocolError)"),
    ],
)
def test_network_failures_are_described_without_the_url(
    queued: Callable[..., Attempt], failure: Exception, expected: str
) -> None:
    attempt = queued("http://receiver.test/hook?token=tok-SENSITIVE")
    failure.args = (f"{failure.args[0]} for http://receiver.test/hook?token=tok-SENSITIVE",)
    deliver(attempt, client=Receiver(failure).client())
    [row] = rows()
    assert row.status == "pending" and row.last_status_code is None
    assert row.last_error == expected


def test_a_redirect_is_a_failure_and_is_not_followed(queued: Callable[..., Attempt]) -> None:
    attempt = queued()
    receiver = Receiver(httpx.Response(302, headers={"Location": "http://elsewhere.test/"}))
    deliver(attempt, client=receiver.client())
    [row] = rows()
    assert len(receiver.requests) == 1
    assert row.status == "pending" and row.last_status_code == 302
    assert row.last_error is not None and "redirect" in row.last_error


def test_a_superseded_attempt_sends_nothing_and_records_nothing(
    queued: Callable[..., Attempt],
) -> None:
    attempt = queued()
    # Its lease ran out; the sweep claimed attempt 2.
    assert send_due(utcnow() + timedelta(seconds=webhook_store.CLAIM_LEASE_SECONDS + 1)) == 1
    receiver = Receiver(httpx.Response(200))
    assert deliver(attempt, client=receiver.client()) is None
    assert receiver.requests == []
    [row] = rows()
    assert (row.status, row.attempts) == ("pending", 2)


def test_a_deleted_webhook_fails_its_delivery_without_a_call(
    queued: Callable[..., Attempt],
) -> None:
    attempt = queued()
    with session_scope() as session:
        for webhook in session.exec(select(WebhookSubscription)).all():
            session.delete(webhook)
    receiver = Receiver(httpx.Response(200))
    outcome = deliver(attempt, client=receiver.client())
    assert outcome is not None and outcome.status == "failed"
    assert outcome.error == "the webhook was deleted" and receiver.requests == []
