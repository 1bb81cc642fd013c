"""How a webhook call is signed, and how a receiver checks it.

Each subscription has its own secret (`whsec_...`, shown once when it is created). A
call carries `X-Ownkey-Timestamp` (Unix seconds) and `X-Ownkey-Signature:
sha256=<hex>`, the HMAC-SHA256 of `"<timestamp>.<body>"` keyed with the secret's UTF-8
bytes. Signing the timestamp with the body lets a receiver refuse a captured call that
is replayed later (`verify` allows five minutes of difference by default).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time

__all__ = [
    "DELIVERY_HEADER",
    "EVENT_HEADER",
    "SECRET_PREFIX",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "new_secret",
    "sign",
    "signed_headers",
    "verify",
]

SECRET_PREFIX = "whsec_"
EVENT_HEADER = "X-Ownkey-Event"
DELIVERY_HEADER = "X-Ownkey-Delivery"
TIMESTAMP_HEADER = "X-Ownkey-Timestamp"
SIGNATURE_HEADER = "X-Ownkey-Signature"
DEFAULT_TOLERANCE_SECONDS = 300


def new_secret() -> str:
    """A signing secret: the prefix (so a leaked one is recognisable) and 32 random bytes."""
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The signature header's value for this body sent at this time."""
    message = timestamp.encode("ascii") + b"." + body
    return "sha256=" + hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()


def signed_headers(*, secret: str, event: str, delivery_id: str, body: bytes) -> dict[str, str]:
    timestamp = str(int(time.time()))
    return {
        "Content-Type": "application/json",
        EVENT_HEADER: event,
        DELIVERY_HEADER: delivery_id,
        TIMESTAMP_HEADER: timestamp,
        SIGNATURE_HEADER: sign(secret, timestamp, body),
    }


def verify(
    secret: str,
    *,
    timestamp: str,
    body: bytes,
    signature: str,
    now: float | None = None,
    tolerance_seconds: float = DEFAULT_TOLERANCE_SECONDS,
) -> bool:
    """What a receiver does: the signature matches (compared in constant time) and the
    timestamp is recent."""
    if not (timestamp.isascii() and timestamp.isdigit()):
        return False
    sent_at = int(timestamp)
    current = time.time() if now is None else now
    if abs(current - sent_at) > tolerance_seconds:
        return False
    return hmac.compare_digest(sign(secret, timestamp, body), signature)
