"""A worker's own /metrics endpoint, served from a thread of the worker's main process,
and /health for a container healthcheck (worker.heartbeat.health).

Started from Celery's `worker_init` signal (`ownkey worker --metrics-port N`). Only the
threads and solo pools run steps in that process; the CLI refuses a metrics port with
prefork, whose counters would live in the child processes and never be seen here.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import make_wsgi_app
from pydantic import SecretStr

from shared.metrics_auth import metrics_allowed
from worker import heartbeat
from worker.metrics import REGISTRY

__all__ = ["start_metrics_server"]

log = logging.getLogger(__name__)
TEXT = ("Content-Type", "text/plain")


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        """A scrape every few seconds is not worth a log line."""


def metrics_app(token: SecretStr) -> Callable[..., Iterable[bytes]]:
    """The registry's WSGI app on /metrics only, behind the token when one is set."""
    exposition = make_wsgi_app(REGISTRY)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == "/health":  # no data: open, for healthchecks
            ok, detail = heartbeat.health()
            start_response("200 OK" if ok else "503 Service Unavailable", [TEXT])
            return [detail.encode() + b"\n"]
        if environ.get("PATH_INFO") != "/metrics":
            start_response("404 Not Found", [TEXT])
            return [b"not found: try /metrics or /health\n"]
        if not metrics_allowed(token, environ.get("HTTP_AUTHORIZATION")):
            start_response(
                "401 Unauthorized",
                [("Content-Type", "text/plain"), ("WWW-Authenticate", "Bearer")],
            )
            return [b"a valid bearer token is required\n"]
        result: Iterable[bytes] = exposition(environ, start_response)
        return result

    return app


def start_metrics_server(host: str, port: int, token: SecretStr) -> WSGIServer:
    server = make_server(
        host, port, metrics_app(token), server_class=_ThreadingServer, handler_class=_QuietHandler
    )
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    log.info("worker metrics on http://%s:%s/metrics", host, server.server_port)
    return server
