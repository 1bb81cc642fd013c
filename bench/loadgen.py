"""A small, cheap HTTP/1.1 load generator: N keep-alive connections on one event loop.

On a 2-core machine the client must cost far less than the server it measures, so this
writes pre-built request bytes on raw asyncio streams (uvloop when installed) and parses
only the status line and Content-Length; per request it spends a few tens of
microseconds, where an httpx.AsyncClient spends about a millisecond. ``wrk`` would do as
well but is not installed on these machines.
"""

from __future__ import annotations

import asyncio
import importlib.util
import itertools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

__all__ = ["LoadResult", "post_load"]


@dataclass
class LoadResult:
    elapsed: float = 0.0
    latencies: list[float] = field(default_factory=list)  # seconds, successful requests
    errors: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    error_samples: list[str] = field(default_factory=list)

    @property
    def ok(self) -> int:
        return len(self.latencies)

    @property
    def rps(self) -> float:
        return self.ok / self.elapsed if self.elapsed else 0.0


def _request(host: str, path: str, headers: dict[str, str], body: bytes) -> bytes:
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}", "Content-Type: application/json"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    status_line = await reader.readline()
    if not status_line:
        raise ConnectionError("server closed the connection")
    status = int(status_line.split(b" ", 2)[1])
    length = 0
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b"\n", b""):
            break
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    body = await reader.readexactly(length) if length else b""
    return status, body


async def _connection(
    url: str,
    headers: dict[str, str],
    make_body: Callable[[int], dict[str, Any]],
    counter: itertools.count[int],
    *,
    total: int | None,
    deadline: float | None,
    result: LoadResult,
) -> None:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    path = parts.path or "/"
    reader: asyncio.StreamReader | None = None
    writer: asyncio.StreamWriter | None = None
    try:
        while True:
            if deadline is not None and time.perf_counter() >= deadline:
                return
            n = next(counter)
            if total is not None and n >= total:
                return
            payload = json.dumps(make_body(n), separators=(",", ":")).encode()
            request = _request(f"{host}:{port}", path, headers, payload)
            started = time.perf_counter()
            try:
                if writer is None:
                    reader, writer = await asyncio.open_connection(host, port)
                assert reader is not None
                writer.write(request)
                status, body = await _read_response(reader)
            except (OSError, ConnectionError, asyncio.IncompleteReadError, ValueError) as exc:
                result.errors += 1
                if len(result.error_samples) < 5:
                    result.error_samples.append(f"{type(exc).__name__}: {exc}")
                if writer is not None:
                    writer.close()
                reader = writer = None
                continue
            elapsed = time.perf_counter() - started
            result.statuses[status] = result.statuses.get(status, 0) + 1
            if 200 <= status < 300:
                result.latencies.append(elapsed)
            else:
                result.errors += 1
                if len(result.error_samples) < 5:
                    result.error_samples.append(f"{status}: {body[:200]!r}")
    finally:
        if writer is not None:
            writer.close()


async def _load(
    url: str,
    headers: dict[str, str],
    make_body: Callable[[int], dict[str, Any]],
    *,
    clients: int,
    total: int | None,
    duration: float | None,
) -> LoadResult:
    result = LoadResult()
    counter = itertools.count()
    started = time.perf_counter()
    deadline = None if duration is None else started + duration
    await asyncio.gather(
        *(
            _connection(
                url, headers, make_body, counter, total=total, deadline=deadline, result=result
            )
            for _ in range(clients)
        )
    )
    result.elapsed = time.perf_counter() - started
    return result


def post_load(
    url: str,
    make_body: Callable[[int], dict[str, Any]],
    *,
    headers: dict[str, str] | None = None,
    clients: int,
    total: int | None = None,
    duration: float | None = None,
) -> LoadResult:
    """POST JSON bodies from ``clients`` keep-alive connections, either ``total`` requests
    or for ``duration`` seconds. ``make_body(n)`` builds the n-th body."""
    if (total is None) == (duration is None):
        raise ValueError("give exactly one of total and duration")
    coroutine = _load(
        url, headers or {}, make_body, clients=clients, total=total, duration=duration
    )
    if importlib.util.find_spec("uvloop"):
        import uvloop

        return uvloop.run(coroutine)
    return asyncio.run(coroutine)
