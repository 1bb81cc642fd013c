"""Serving the fake LLM: in the foreground (``ownkey fake-llm``) or in a background thread
for tests and benchmarks that drive it with real sockets and sync httpx clients.

uvloop and httptools are used when installed (``uvicorn[standard]``): on two cores the
pure-Python h11 parser is the first thing a zero-latency benchmark saturates.
"""

from __future__ import annotations

import contextlib
import importlib.util
import socket
import threading
import time
from collections.abc import Iterator
from typing import Literal

import uvicorn

from shared.fake_llm.app import FakeConfig, create_app

__all__ = ["run", "running_fake_llm", "uvicorn_config"]


def _fast_loop() -> Literal["uvloop", "asyncio"]:
    return "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"


def _fast_http() -> Literal["httptools", "h11"]:
    return "httptools" if importlib.util.find_spec("httptools") else "h11"


def uvicorn_config(host: str, port: int, config: FakeConfig) -> uvicorn.Config:
    return uvicorn.Config(
        create_app(config),
        host=host,
        port=port,
        loop=_fast_loop(),
        http=_fast_http(),
        access_log=False,
        log_level="warning",
        lifespan="off",
        backlog=4096,  # 1000 clients connecting at once must not hit a full accept queue
        timeout_keep_alive=30,  # benchmark clients reuse connections between bursts
        timeout_graceful_shutdown=1,  # a hanging "timeout" fault must not block shutdown
    )


def run(host: str, port: int, config: FakeConfig) -> None:
    """Serve until interrupted. Loopback by default: the fake accepts any key."""
    uvicorn.Server(uvicorn_config(host, port, config)).run()


@contextlib.contextmanager
def running_fake_llm(config: FakeConfig | None = None, host: str = "127.0.0.1") -> Iterator[str]:
    """Run the fake on a free port in a daemon thread; yields its base URL."""
    # proto must be IPPROTO_TCP, not 0: asyncio only sets TCP_NODELAY on accepted sockets
    # whose proto says TCP, and without it every call waits ~40 ms for a delayed ACK.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn_config(host, port, config or FakeConfig()))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the fake LLM server did not start")
        time.sleep(0.01)
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
