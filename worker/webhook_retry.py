"""When a failed webhook call is tried again, declared in one place.

Any answer but a 2xx, a timeout or a connection error is a failure, and every failure
is retried: a receiver that is down, redeploying or misconfigured usually recovers,
and it is the receiver who decides what a call means. Delays grow from
`OWNKEY_WEBHOOK_RETRY_BASE_SECONDS` (10 s: 10 s, 30 s, 2 min, 10 min, 30 min, then
1 h), each moved by up to 20% either way so that the deliveries of one outage do not
all come back at once; after `OWNKEY_WEBHOOK_MAX_ATTEMPTS` calls the delivery is
failed (it can still be redelivered by hand).
"""

from __future__ import annotations

import random

__all__ = ["JITTER", "MULTIPLIERS", "retry_delay"]

MULTIPLIERS = (1, 3, 12, 60, 180, 360)
JITTER = 0.2


def retry_delay(
    failed_attempt: int, *, base_seconds: float, rng: random.Random | None = None
) -> float:
    """Seconds to wait after attempt number `failed_attempt` (from 1) failed."""
    step = MULTIPLIERS[min(max(failed_attempt, 1), len(MULTIPLIERS)) - 1]
    spread = (rng or random).uniform(1 - JITTER, 1 + JITTER)
    return base_seconds * step * spread
