"""Webhook signatures: the documented scheme, checked against a vector computed with
openssl, and what a receiver's check refuses."""

from __future__ import annotations

import hashlib
import hmac

from shared.webhook_signing import (
    DELIVERY_HEADER,
    EVENT_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    new_secret,
    sign,
    signed_headers,
    verify,
)

SECRET = "whsec_test-secret"
BODY = b'{"id":"d1","event":"run.finished"}'
# printf '%s' '1700000000.{"id":"d1","event":"run.finished"}' \
#   | openssl dgst -sha256 -hmac 'whsec_test-secret'
OPENSSL_HEX = "7ec767a5dd3ffc20f98f344d44dcdf693c47d24f3c270ad6890445e8a659e95b"


def test_the_signature_is_hmac_sha256_of_timestamp_dot_body() -> None:
    assert sign(SECRET, "1700000000", BODY) == f"sha256={OPENSSL_HEX}"


def test_a_receiver_accepts_a_fresh_signed_call() -> None:
    assert verify(
        SECRET,
        timestamp="1700000000",
        body=BODY,
        signature=f"sha256={OPENSSL_HEX}",
        now=1700000000 + 299,
    )


def test_a_receiver_refuses_a_changed_body_secret_timestamp_or_an_old_call() -> None:
    good = sign(SECRET, "1700000000", BODY)
    at = 1700000000.0
    assert not verify(SECRET, timestamp="1700000000", body=BODY + b" ", signature=good, now=at)
    assert not verify("whsec_other", timestamp="1700000000", body=BODY, signature=good, now=at)
    assert not verify(SECRET, timestamp="1700000001", body=BODY, signature=good, now=at)
    assert not verify(SECRET, timestamp="1700000000", body=BODY, signature=good, now=at + 301)
    assert not verify(SECRET, timestamp="soon", body=BODY, signature=good, now=at)
    assert not verify(SECRET, timestamp="1700000000", body=BODY, signature=OPENSSL_HEX, now=at)


def test_signed_headers_carry_event_delivery_and_a_verifiable_signature() -> None:
    headers = signed_headers(secret=SECRET, event="run.finished", delivery_id="d1", body=BODY)
    assert headers["Content-Type"] == "application/json"
    assert headers[EVENT_HEADER] == "run.finished" and headers[DELIVERY_HEADER] == "d1"
    timestamp = headers[TIMESTAMP_HEADER]
    expected = hmac.new(SECRET.encode(), f"{timestamp}.".encode() + BODY, hashlib.sha256)
    assert headers[SIGNATURE_HEADER] == "sha256=" + expected.hexdigest()
    assert verify(SECRET, timestamp=timestamp, body=BODY, signature=headers[SIGNATURE_HEADER])


def test_secrets_are_prefixed_long_and_never_repeat() -> None:
    secrets = {new_secret() for _ in range(100)}
    assert len(secrets) == 100
    assert all(s.startswith("whsec_") and len(s) >= 6 + 43 for s in secrets)
