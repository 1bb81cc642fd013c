"""Sign-in throttling in Redis, shared by every API process.

Failed sign-ins are counted per (username, client address) and per client address in
fixed windows. Past the limit, sign-in is refused, with the wait, until the window
ends; a successful sign-in clears that user's count from that address. Counting per
address as well stops one client trying many usernames.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import redis

__all__ = ["LoginThrottle"]

PREFIX = "ownkey:login"


def _key(*parts: str) -> str:
    # Hashed: usernames and addresses need not sit in Redis in clear.
    digest = hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:32]
    return f"{PREFIX}:{digest}"


@dataclass(frozen=True)
class LoginThrottle:
    client: redis.Redis
    per_user: int = 5
    per_address: int = 30
    window_seconds: int = 900

    def _keys(self, username: str, address: str) -> tuple[str, str]:
        return _key("user", username.lower(), address), _key("addr", address)

    def retry_after(self, username: str, address: str) -> int | None:
        """Seconds to wait before trying again, or None if a try is allowed now."""
        user_key, address_key = self._keys(username, address)
        pipe = self.client.pipeline()
        pipe.get(user_key)
        pipe.ttl(user_key)
        pipe.get(address_key)
        pipe.ttl(address_key)
        user_count, user_ttl, address_count, address_ttl = pipe.execute()
        waits = []
        if user_count is not None and int(user_count) >= self.per_user:
            waits.append(max(int(user_ttl), 1))
        if address_count is not None and int(address_count) >= self.per_address:
            waits.append(max(int(address_ttl), 1))
        return max(waits) if waits else None

    def failed(self, username: str, address: str) -> None:
        pipe = self.client.pipeline()
        for key in self._keys(username, address):
            pipe.incr(key)
            pipe.expire(key, self.window_seconds, nx=True)
        pipe.execute()

    def succeeded(self, username: str, address: str) -> None:
        self.client.delete(self._keys(username, address)[0])
