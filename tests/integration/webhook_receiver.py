"""A webhook receiver for the tests: a real HTTP server on loopback, in a thread of the
test process, that records every call and can be told to refuse the first K calls to a
path, or all of them."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ALWAYS = -1


@dataclass(frozen=True)
class Call:
    headers: dict[str, str]  # names in lower case
    body: bytes
    status: int  # what the receiver answered


class Receiver:
    def __init__(self, server: ThreadingHTTPServer) -> None:
        self._server = server
        self._lock = threading.Lock()
        self._calls: dict[str, list[Call]] = {}
        self._refusals: dict[str, int] = {}

    def url(self, path: str) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}{path}"

    def refuse(self, path: str, times: int = ALWAYS) -> None:
        """Answer 503 to the next `times` calls to `path` (ALWAYS: until told otherwise)."""
        with self._lock:
            self._refusals[path] = times

    def calls(self, path: str) -> list[Call]:
        with self._lock:
            return list(self._calls.get(path, []))

    def answer(self, path: str, headers: dict[str, str], body: bytes) -> int:
        with self._lock:
            left = self._refusals.get(path, 0)
            status = 503 if left else 200
            if left > 0:
                self._refusals[path] = left - 1
            self._calls.setdefault(path, []).append(Call(headers, body, status))
        return status


@contextmanager
def running_receiver() -> Iterator[Receiver]:
    receiver: Receiver

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            headers = {k.lower(): v for k, v in self.headers.items()}
            status = receiver.answer(self.path, headers, body)
            answer = b"ok" if status == 200 else b"receiver is down for maintenance"
            self.send_response(status)
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, format: str, *args: object) -> None:
            pass  # keep the test output quiet

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    receiver = Receiver(server)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
