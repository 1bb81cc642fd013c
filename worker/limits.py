"""The worker's side of the cluster-wide rate limits (shared/rate_limits.py).

Before a call: take a request and an estimate of its tokens from the key's windows in
Redis; if there is no room, the step is handed back with a countdown and frees its
worker slot (it is not an attempt). After the call: correct the estimate with the
provider's own count. On a 429: remember the provider's wait for every worker.
"""

from __future__ import annotations

import logging
import time
from functools import lru_cache

import redis

from shared.config import get_settings
from shared.providers import ChatRequest, Completion, ProviderError
from shared.rate_limits import Limits, RateLimiter
from worker import metrics
from worker.lifecycle import Claim

# One second more than the provider's minute: a call admitted at the end of a window
# still reaches the provider inside it, whatever the delay between here and there.
WINDOW_SECONDS = 61.0
DEFAULT_OUTPUT_ESTIMATE = 512
REDIS_DOWN_WAIT_SECONDS = 5.0
log = logging.getLogger(__name__)


@lru_cache(maxsize=1)
def limiter() -> RateLimiter:
    client = redis.Redis.from_url(get_settings().redis_url, max_connections=256)
    return RateLimiter(client, window_seconds=WINDOW_SECONDS)


def estimate_tokens(request: ChatRequest) -> int:
    """About four characters a token for the prompt, plus the answer's ceiling."""
    text = len(request.prompt) + len(request.system or "")
    return text // 4 + (request.max_tokens or DEFAULT_OUTPUT_ESTIMATE)


def _limits(claim: Claim) -> Limits:
    return Limits(rpm=claim.key_rpm, tpm=claim.key_tpm)


def _request_id(claim: Claim) -> str:
    return f"{claim.step_id}:{claim.attempt}"


# For a key without configured limits only a provider's 429 can make a step wait. Each
# process asks Redis about that at most this often per key, not once per step: a wait
# learned by another worker is seen within this time.
LEARNED_WAIT_CACHE_SECONDS = 1.0
_learned: dict[str, tuple[float, float]] = {}  # key id -> (checked at, blocked until)


def _learned_wait_cached(key_id: str) -> float:
    now = time.monotonic()
    checked = _learned.get(key_id)
    if checked is None or now - checked[0] > LEARNED_WAIT_CACHE_SECONDS:
        checked = (now, now + limiter().learned_wait(key_id))
        _learned[key_id] = checked
    return max(0.0, checked[1] - now)


def wait_for_slot(claim: Claim, request: ChatRequest) -> float:
    """0.0 if the call may go now (its slot is taken), else the seconds to wait.
    Without Redis no limit can be checked: the step waits for Redis to return."""
    try:
        if claim.key_rpm is None and claim.key_tpm is None:
            wait = _learned_wait_cached(claim.key_id)
        else:
            wait = limiter().acquire(
                claim.key_id,
                _limits(claim),
                tokens=estimate_tokens(request),
                request_id=_request_id(claim),
            )
    except redis.RedisError as exc:
        log.warning(
            "rate limits unavailable (%s); step %s waits", type(exc).__name__, claim.step_id
        )
        return REDIS_DOWN_WAIT_SECONDS
    if wait > 0:
        metrics.observe_rate_limit_wait(claim.provider, wait)
    return wait


def settle(claim: Claim, request: ChatRequest, completion: Completion) -> None:
    if not claim.key_tpm or completion.input_tokens is None:
        return
    try:
        limiter().settle(
            claim.key_id,
            _limits(claim),
            estimated=estimate_tokens(request),
            actual=completion.input_tokens + (completion.output_tokens or 0),
            request_id=_request_id(claim),
        )
    except redis.RedisError as exc:  # the call succeeded; a missed correction is minor
        log.warning("could not settle token usage of step %s (%s)", claim.step_id, exc)


def learn(claim: Claim, error: ProviderError) -> None:
    _learned.pop(claim.key_id, None)
    try:
        limiter().learn(claim.key_id, error)
    except redis.RedisError as exc:
        log.warning("could not record the provider's rate limit (%s)", type(exc).__name__)
