"""When a failed provider call is tried again, declared in one place.

Transient errors (rate limited, overloaded, server error, timeout, unreachable) retry
with exponential backoff and full jitter, capped, and never sooner than the provider's
Retry-After. Everything else fails the step at once. The longest wait stays far below
the broker's visibility timeout, so a waiting message is not redelivered.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from shared.providers.errors import ProviderError

DEFAULT_MAX_ATTEMPTS = 3


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    base_seconds: float = 1.0
    cap_seconds: float = 60.0
    max_retry_after_seconds: float = 600.0

    def delay_for(self, error: ProviderError, *, attempt: int, max_attempts: int) -> float | None:
        """Seconds to wait before the next attempt, or None to fail now."""
        if not error.retryable or attempt >= max_attempts:
            return None
        backoff = random.uniform(0, min(self.cap_seconds, self.base_seconds * 2 ** (attempt - 1)))
        retry_after = getattr(error, "retry_after", None)
        if retry_after is not None:
            return min(max(float(retry_after), backoff), self.max_retry_after_seconds)
        return backoff


DEFAULT_POLICY = RetryPolicy()
