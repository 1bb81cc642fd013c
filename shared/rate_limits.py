"""Cluster-wide rate limits per provider key, in Redis.

Every worker on every server shares one Redis, so each decision is one Lua script that
reads Redis's own clock (``TIME``): no process clock, no read-modify-write race.

Why a sliding-window log and not a token bucket
    A token bucket with capacity N refilling N per minute lets N calls through at once
    and then keeps refilling, so a 60-second window can see nearly 2N calls. Providers
    count "requests per minute" over a window, and the promise here is the provider's:
    **never more than ``rpm`` acquisitions in any ``window_seconds``**. A log of
    acquisition times (a sorted set scored by microseconds) gives exactly that: a call
    is admitted only if fewer than ``rpm`` entries are younger than the window, and the
    wait returned is the time until enough of the oldest entries age out. Memory is one
    entry per call in the window, i.e. at most ``rpm`` per key.

Tokens use the same window: a log of reservations (sorted set for the times, a hash for
the amounts plus their running sum). ``acquire`` reserves the step's estimate (clamped
to ``tpm`` so an oversized request waits for an empty window instead of forever) and
``settle`` replaces the estimate by the provider's count afterwards. The provider only
tells us the true count after the call, so the token guarantee is "the estimates (then
the actual counts) of the calls admitted in any window never exceed ``tpm``".

``settle`` corrects the very reservation ``acquire`` made when both are given the same
``request_id`` (e.g. ``f"{step_id}:{attempt}"``): the entry keeps its time and takes the
actual count, exactly. Without one, an overrun (actual > estimate) is added as a new
entry stamped now (it leaves the window later than the call did: errs on the safe side)
and an over-estimate is not refunded (a refund stamped now would outlive the
reservation it corrects and let the window overshoot).

What the provider tells us (``learn``) is a per-key "no calls before T" mark with an
expiry: a 429's ``Retry-After``, or ``remaining = 0`` with its reset, from an error or
from a successful response's headers. ``acquire`` honours it too, so it holds for every
worker even on a key with no configured limits.

Keys carry the provider key id in a hash tag (``ownkey:rl:{<id>}:req``) so one script's
keys share a Redis Cluster slot, and all expire once idle for a window.
"""

from __future__ import annotations

import math
import re
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import redis

from shared.providers.errors import ProviderError, RateLimited

__all__ = [
    "DEFAULT_429_WAIT_SECONDS",
    "MAX_LEARNED_WAIT_SECONDS",
    "Decision",
    "Limits",
    "RateLimiter",
    "learned_delay",
]

# A 429 that says nothing about when to come back still means the key is saturated:
# every worker pauses this long rather than piling more calls onto it.
DEFAULT_429_WAIT_SECONDS = 1.0
# A provider's reset can be hours away (daily quotas); steps are rescheduled with a
# countdown, which must stay well below the broker's visibility timeout.
MAX_LEARNED_WAIT_SECONDS = 600.0

_US = 1_000_000

# Shared Lua: numbers are doubles in Redis's Lua 5.1, and tostring() prints 14 digits,
# which would round microsecond timestamps: every score is formatted with %.0f.
_ACQUIRE = """
local function fmt(x) return string.format('%.0f', x) end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local window = tonumber(ARGV[1])
local rpm = tonumber(ARGV[2])
local tpm = tonumber(ARGV[3])
local tokens = tonumber(ARGV[4])
local req_member = ARGV[5]
local tok_member = ARGV[6]
local ttl = math.floor(window / 1000) + 1000
local cutoff = '(' .. fmt(now - window)

local blocked = redis.call('PTTL', KEYS[1])
if blocked > 0 then return {blocked * 1000, now} end

local wait = 0
if rpm > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', cutoff)
  local count = redis.call('ZCARD', KEYS[2])
  if count >= rpm then
    -- the entry whose leaving brings the count below rpm (rpm may have been lowered)
    local entry = redis.call('ZRANGE', KEYS[2], count - rpm, count - rpm, 'WITHSCORES')
    wait = tonumber(entry[2]) + window - now + 1
  end
end

if tpm > 0 then
  if tokens > tpm then tokens = tpm end
  local expired = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', cutoff)
  if #expired > 0 then
    local freed = 0
    for i = 1, #expired, 500 do
      local chunk = {}
      for j = i, math.min(i + 499, #expired) do chunk[#chunk + 1] = expired[j] end
      local amounts = redis.call('HMGET', KEYS[4], unpack(chunk))
      for j = 1, #chunk do
        if amounts[j] then freed = freed + tonumber(amounts[j]) end
      end
      redis.call('HDEL', KEYS[4], unpack(chunk))
    end
    redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', cutoff)
    redis.call('HINCRBY', KEYS[4], '#sum', -freed)
  end
  local used = tonumber(redis.call('HGET', KEYS[4], '#sum') or '0')
  if tokens > 0 and used + tokens > tpm then
    local need = used + tokens - tpm
    local entries = redis.call('ZRANGE', KEYS[3], 0, -1, 'WITHSCORES')
    local tok_wait = window
    for i = 1, #entries, 2 do
      need = need - tonumber(redis.call('HGET', KEYS[4], entries[i]) or '0')
      if need <= 0 then
        tok_wait = tonumber(entries[i + 1]) + window - now + 1
        break
      end
    end
    if tok_wait > wait then wait = tok_wait end
  end
end

if wait > 0 then return {wait, now} end

if rpm > 0 then
  redis.call('ZADD', KEYS[2], fmt(now), req_member)
  redis.call('PEXPIRE', KEYS[2], ttl)
end
if tpm > 0 and tokens > 0 then
  local previous = redis.call('HGET', KEYS[4], tok_member)
  if previous then
    -- the same request id reserved before: keep that reservation under another name
    local score = redis.call('ZSCORE', KEYS[3], tok_member)
    local kept = tok_member .. '@' .. score
    redis.call('ZADD', KEYS[3], score, kept)
    redis.call('HSET', KEYS[4], kept, previous)
  end
  redis.call('ZADD', KEYS[3], fmt(now), tok_member)
  redis.call('HSET', KEYS[4], tok_member, tokens)
  redis.call('HINCRBY', KEYS[4], '#sum', tokens)
  redis.call('PEXPIRE', KEYS[3], ttl)
  redis.call('PEXPIRE', KEYS[4], ttl)
end
return {0, now}
"""

_SETTLE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local window = tonumber(ARGV[1])
local tok_member = ARGV[2]
local actual = tonumber(ARGV[3])
local overrun = tonumber(ARGV[4])
local extra_member = ARGV[5]
local ttl = math.floor(window / 1000) + 1000

if tok_member ~= '' then
  local reserved = redis.call('HGET', KEYS[2], tok_member)
  if reserved then
    redis.call('HSET', KEYS[2], tok_member, actual)
    redis.call('HINCRBY', KEYS[2], '#sum', actual - tonumber(reserved))
    return 1
  end
end
if overrun > 0 then
  redis.call('ZADD', KEYS[1], string.format('%.0f', now), extra_member)
  redis.call('HSET', KEYS[2], extra_member, overrun)
  redis.call('HINCRBY', KEYS[2], '#sum', overrun)
  redis.call('PEXPIRE', KEYS[1], ttl)
  redis.call('PEXPIRE', KEYS[2], ttl)
end
return 0
"""

_BLOCK = """
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], '1', 'PX', ARGV[1])
  return 1
end
return 0
"""


@dataclass(frozen=True)
class Limits:
    """A key's configured limits; None means no limit of that kind."""

    rpm: int | None = None
    tpm: int | None = None


@dataclass(frozen=True)
class Decision:
    """The outcome of one acquisition: ``wait`` is 0.0 when admitted, else the seconds
    until the budget (or the provider's own block) would admit it. ``server_time`` is
    Redis's clock at the decision, in seconds since the epoch."""

    wait: float
    server_time: float

    @property
    def admitted(self) -> bool:
        return self.wait == 0.0


class RateLimiter:
    """Per-key request and token limits shared by every process that uses `client`."""

    def __init__(
        self,
        client: redis.Redis,
        *,
        prefix: str = "ownkey:rl:",
        window_seconds: float = 60.0,
    ) -> None:
        if window_seconds <= 0:
            raise ValueError("window_seconds must be positive")
        self._client = client
        self._prefix = prefix
        self._window_us = round(window_seconds * _US)
        self._acquire = client.register_script(_ACQUIRE)
        self._settle = client.register_script(_SETTLE)
        self._block = client.register_script(_BLOCK)

    def _keys(self, key_id: str) -> tuple[str, str, str, str]:
        base = f"{self._prefix}{{{key_id}}}"
        return f"{base}:block", f"{base}:req", f"{base}:tok", f"{base}:tokamt"

    def try_acquire(
        self, key_id: str, limits: Limits, *, tokens: int, request_id: str | None = None
    ) -> Decision:
        """`acquire`, also returning Redis's time of the decision."""
        nonce = uuid.uuid4().hex
        result: Any = self._acquire(
            keys=list(self._keys(key_id)),
            args=[
                self._window_us,
                limits.rpm or 0,
                limits.tpm or 0,
                max(0, tokens),
                nonce,
                f"r:{request_id}" if request_id else f"n:{nonce}",
            ],
        )
        wait_us, now_us = int(result[0]), int(result[1])
        return Decision(wait=wait_us / _US if wait_us > 0 else 0.0, server_time=now_us / _US)

    def acquire(
        self, key_id: str, limits: Limits, *, tokens: int, request_id: str | None = None
    ) -> float:
        """Take one request and `tokens` tokens if both windows allow; return 0.0.

        Otherwise take nothing and return the seconds until they would allow it (> 0),
        which includes any wait the provider asked for (`learn`). Pass the same
        `request_id` to `settle` to correct this very reservation.
        """
        return self.try_acquire(key_id, limits, tokens=tokens, request_id=request_id).wait

    def settle(
        self,
        key_id: str,
        limits: Limits,
        *,
        estimated: int,
        actual: int,
        request_id: str | None = None,
    ) -> None:
        """After the call: replace the token reservation by the provider's count.

        The window may end up over `tpm` (a call used more than estimated): later
        acquisitions then wait longer. See the module docstring for calls settled
        without `request_id`.
        """
        if not limits.tpm:
            return
        reserved = min(max(0, estimated), limits.tpm)
        _, _, tok, amounts = self._keys(key_id)
        self._settle(
            keys=[tok, amounts],
            args=[
                self._window_us,
                f"r:{request_id}" if request_id else "",
                max(0, actual),
                max(0, actual - reserved),
                f"n:{uuid.uuid4().hex}",
            ],
        )

    def learn(self, key_id: str, error_or_headers: ProviderError | Mapping[str, str]) -> float:
        """Record what the provider said about its own limits; return the wait recorded
        (0.0 if nothing to learn). Every worker then waits that long before calling
        with this key, whatever limits the user configured."""
        delay = learned_delay(error_or_headers)
        if delay is None or delay <= 0:
            return 0.0
        delay = min(delay, MAX_LEARNED_WAIT_SECONDS)
        block, _, _, _ = self._keys(key_id)
        self._block(keys=[block], args=[max(1, math.ceil(delay * 1000))])
        return delay

    def learned_wait(self, key_id: str) -> float:
        """Seconds to wait because of what the provider told us; 0.0 if none."""
        block, _, _, _ = self._keys(key_id)
        remaining_ms = int(self._client.pttl(block))
        return remaining_ms / 1000 if remaining_ms > 0 else 0.0


_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def _reset_seconds(value: str | None, *, now: float) -> float | None:
    """A reset header as seconds from now: plain seconds, OpenAI's Go-style duration
    ("6m0s", "20ms") or Anthropic's RFC 3339 time."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    parts = _DURATION_PART.findall(value)
    if parts and "".join(n + u for n, u in parts) == value:
        return sum(float(n) * _UNIT_SECONDS[u] for n, u in parts)
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - now)


def _exhausted(remaining: str | None) -> bool:
    try:
        return remaining is not None and float(remaining) <= 0
    except ValueError:
        return False


def learned_delay(
    source: ProviderError | Mapping[str, str], *, now: float | None = None
) -> float | None:
    """How long the provider asked every caller of this key to hold off, or None.

    `source` is a provider error (only `RateLimited` teaches anything) or the headers
    of a successful response (lower- or mixed-case names).
    """
    now = time.time() if now is None else now
    waits: list[float] = []
    if isinstance(source, RateLimited):
        headers = source.rate_limit_headers
        if source.retry_after is not None:
            waits.append(source.retry_after)
    elif isinstance(source, ProviderError):
        return None
    else:
        headers = {k.lower(): v for k, v in source.items()}
    for remaining, reset in (
        ("x-ratelimit-remaining-requests", "x-ratelimit-reset-requests"),
        ("x-ratelimit-remaining-tokens", "x-ratelimit-reset-tokens"),
        ("anthropic-ratelimit-requests-remaining", "anthropic-ratelimit-requests-reset"),
        ("anthropic-ratelimit-tokens-remaining", "anthropic-ratelimit-tokens-reset"),
        ("anthropic-ratelimit-input-tokens-remaining", "anthropic-ratelimit-input-tokens-reset"),
        ("anthropic-ratelimit-output-tokens-remaining", "anthropic-ratelimit-output-tokens-reset"),
    ):
        if _exhausted(headers.get(remaining)):
            seconds = _reset_seconds(headers.get(reset), now=now)
            if seconds is not None:
                waits.append(seconds)
    if waits:
        return max(waits)
    if isinstance(source, RateLimited):
        return DEFAULT_429_WAIT_SECONDS
    return None
