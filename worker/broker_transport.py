"""kombu's Redis transport, with one client per channel instead of one per message.

kombu builds a new `redis.Redis` object for every message it records as unacked and
again for every ack (`Channel.conn_or_acquire`). With redis-py 5 and later that object
costs about 65 µs of CPU to build (it fills a case-insensitive table of ~200 response
callbacks), twice per step, on the worker's one GIL: a tenth of a worker's CPU at full
throughput in scenario 2's profile (BENCHMARKS.md). A `redis.Redis` object holds no
connection of its own (it borrows one from the channel's pool per command), so sharing
one between threads is safe, as redis-py documents; pipelines are still made per call.

Only the sync client is shared: the asynchronous one that BRPOPs belongs to the event
loop and kombu already builds it once. Only `redis://` URLs use this transport: kombu
decides TLS for `rediss://` from the scheme name, so those (and sentinel://) keep
kombu's own class.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from kombu.transport import redis as kombu_redis

TRANSPORT = f"{__name__}:Transport"


class Channel(kombu_redis.Channel):
    _shared_client: Any = None

    def _create_client(self, asynchronous: bool = False) -> Any:
        if asynchronous:
            return super()._create_client(asynchronous=True)  # type: ignore[no-untyped-call]
        client = self._shared_client
        # A channel that reconnected has a new pool: its client must use that one.
        if client is None or client.connection_pool is not self.pool:
            client = self._shared_client = super()._create_client()  # type: ignore[no-untyped-call]
        return client


class Transport(kombu_redis.Transport):
    Channel = Channel


def transport_for(broker_url: str) -> str | None:
    """The `broker_transport` setting for this URL: ours for redis://, None (kombu picks
    by scheme) for anything else."""
    return TRANSPORT if urlsplit(broker_url).scheme == "redis" else None
