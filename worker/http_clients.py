"""One httpx.Client per worker thread.

A single shared client queues a couple of hundred waiting threads on its connection
pool (measured: p50 doubled and 1% of calls failed with pool timeouts). A client per
thread has its own pool; all of them share one SSLContext, because building a context
costs tens of milliseconds of CPU.
"""

from __future__ import annotations

import ssl
import threading
from functools import lru_cache

import httpx

_local = threading.local()


@lru_cache(maxsize=1)
def _ssl_context() -> ssl.SSLContext:
    return httpx.create_ssl_context()


def thread_client() -> httpx.Client:
    client: httpx.Client | None = getattr(_local, "client", None)
    if client is None:
        client = httpx.Client(
            verify=_ssl_context(),
            limits=httpx.Limits(max_connections=16, max_keepalive_connections=8),
            follow_redirects=False,
        )
        _local.client = client
    return client
