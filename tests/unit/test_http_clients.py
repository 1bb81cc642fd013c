"""The worker's per-thread HTTP client, against a real HTTP server on loopback."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from worker.http_clients import thread_client


class _SetsCookies(BaseHTTPRequestHandler):
    seen: list[str | None] = []

    def do_GET(self) -> None:
        _SetsCookies.seen.append(self.headers.get("Cookie"))
        self.send_response(200)
        self.send_header("Set-Cookie", "__cf_bm=tenant-a; Path=/")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _SetsCookies)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _SetsCookies.seen = []
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_a_cookie_set_by_one_call_is_not_sent_with_the_next(server_url: str) -> None:
    """Two calls on one thread may be for two users' keys: no state rides along."""
    client = thread_client()
    first = client.get(f"{server_url}/v1/a")
    assert first.headers["set-cookie"].startswith("__cf_bm=")
    client.get(f"{server_url}/v1/b")
    assert _SetsCookies.seen == [None, None]
    assert not client.cookies


def test_each_thread_has_its_own_client() -> None:
    mine = thread_client()
    assert thread_client() is mine
    other: list[object] = []
    thread = threading.Thread(target=lambda: other.append(thread_client()))
    thread.start()
    thread.join()
    assert other and other[0] is not mine
