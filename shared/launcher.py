"""`ownkey up`: the whole platform on one machine, stopped cleanly by Ctrl-C.

Starts a private Redis (unless OWNKEY_REDIS_URL is set), migrates the SQLite (or
configured) database, then runs the API, one worker, beat and Flower as child
processes, each in its own process group so that stopping ownkey leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from shared.config import Settings
from shared.db import session_scope
from shared.embedded_redis import EmbeddedRedis, free_port, start_redis
from shared.keystore import get_secret_box
from shared.migrate import upgrade_database
from shared.tokens import create_api_token, token_is_valid
from shared.users import default_admin, ensure_first_admin

__all__ = ["PortInUse", "admin_token", "ensure_port_free", "first_admin_login", "run_stack"]

ADMIN_TOKEN_FILE = "admin.token"


def write_private_file(path: Path, content: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(content)


def admin_token(settings: Settings) -> str:
    """The embedded default's admin token: created once, kept 0600 beside the database,
    so every `ownkey up` can print it again."""
    path = settings.data_dir / ADMIN_TOKEN_FILE
    with session_scope() as session:
        if path.exists():
            token = path.read_text().strip()
            if token and token_is_valid(session, token):
                return token
        owner = default_admin(session)
        _, token = create_api_token(session, name="admin (ownkey up)", user_id=owner.id)
    write_private_file(path, token + "\n")
    return token


def first_admin_login() -> tuple[str, str] | None:
    """(username, password) of the admin created on first start, to print once; None
    once an admin can sign in."""
    with session_scope() as session:
        created = ensure_first_admin(session)
        return None if created is None else (created[0].username, created[1])


@dataclass
class Stack:
    children: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    redis: EmbeddedRedis | None = None

    def spawn(self, name: str, args: list[str], env: dict[str, str]) -> None:
        self.children[name] = subprocess.Popen(
            [sys.executable, "-m", "shared.cli", *args], env=env, start_new_session=True
        )

    def first_exit(self) -> str | None:
        for name, child in self.children.items():
            if child.poll() is not None:
                return name
        return None

    def stop(self, grace_seconds: float = 15.0) -> None:
        for child in self.children.values():
            _signal_group(child, signal.SIGTERM)
        deadline = time.monotonic() + grace_seconds
        for child in self.children.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(timeout=max(0.1, deadline - time.monotonic()))
            _signal_group(child, signal.SIGKILL)
            child.wait()
        if self.redis is not None:
            self.redis.stop()


def _interrupt(_signum: int, _frame: object) -> None:
    """SIGTERM stops `ownkey up` the same way Ctrl-C does."""
    raise KeyboardInterrupt


def _signal_group(child: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(child.pid, sig)


class PortInUse(RuntimeError):
    pass


def ensure_port_free(host: str, port: int, *, what: str, setting: str) -> None:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            raise PortInUse(
                f"port {port} ({what}) is already in use on {host}; choose another with {setting}"
            ) from None


def run_stack(settings: Settings, *, port: int, concurrency: int, with_flower: bool) -> int:
    # A shell starts background jobs with SIGINT ignored; Ctrl-C (or kill -INT) must
    # still stop ownkey, so take the default handler back.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    ensure_port_free(settings.api_host, port, what="the API", setting="--port / PORT=")
    if with_flower:
        ensure_port_free(
            "127.0.0.1", settings.flower_port, what="Flower", setting="OWNKEY_FLOWER_PORT"
        )
    stack = Stack()
    env = dict(os.environ)
    data_dir = settings.data_dir.resolve()
    # The database, the master key and the admin token live here: private when created.
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    env["OWNKEY_DATA_DIR"] = str(data_dir)
    try:
        if not settings.redis_url:
            stack.redis = start_redis(data_dir / "redis")
            env["OWNKEY_REDIS_URL"] = stack.redis.url
        logging.getLogger("alembic").setLevel(logging.WARNING)
        upgrade_database(settings.resolved_database_url)
        get_secret_box()  # creates the master key file on first start
        login = first_admin_login()
        token = admin_token(settings)
        flower_auth = settings.flower_basic_auth.get_secret_value() or (
            "admin:" + secrets.token_urlsafe(12)
        )
        env["OWNKEY_FLOWER_BASIC_AUTH"] = flower_auth
        stack.spawn("api", ["api", "--port", str(port)], env)
        # The worker's /metrics: the configured port, else any free one (printed below).
        metrics_port = settings.worker_metrics_port or free_port()
        stack.spawn(
            "worker",
            ["worker", "--concurrency", str(concurrency), "--metrics-port", str(metrics_port)],
            env,
        )
        stack.spawn("beat", ["beat"], env)
        if with_flower:
            stack.spawn("flower", ["flower"], env)
        _print_banner(
            settings,
            port,
            token,
            flower_auth if with_flower else None,
            env,
            login,
            metrics_port=metrics_port,
        )
        previous = signal.signal(signal.SIGTERM, _interrupt)
        try:
            while (exited := stack.first_exit()) is None:
                time.sleep(0.5)
            print(f"ownkey: {exited} stopped unexpectedly; stopping everything", file=sys.stderr)
            return 1
        finally:
            signal.signal(signal.SIGTERM, previous)
    except KeyboardInterrupt:
        print("\nownkey: stopping...", file=sys.stderr)
        return 0
    finally:
        stack.stop()


def _print_banner(
    settings: Settings,
    port: int,
    token: str,
    flower_auth: str | None,
    env: dict[str, str],
    login: tuple[str, str] | None,
    *,
    metrics_port: int,
) -> None:
    host = settings.api_host
    lines = [
        "",
        "ownkey is up.",
        f"  Web UI:    http://{host}:{port}/",
    ]
    if login is not None:
        lines.append(
            f"             first sign-in: user {login[0]}, password {login[1]}"
            "   (shown only now; change it under Settings)"
        )
    lines += [
        f"  API:       http://{host}:{port}/api/v1   (docs: http://{host}:{port}/docs)",
        f"  Database:  {settings.resolved_database_url}",
        f"  Redis:     {env['OWNKEY_REDIS_URL']}",
        f"  Metrics:   http://{host}:{port}/metrics (API), "
        f"http://{settings.metrics_host}:{metrics_port}/metrics (worker)",
    ]
    if flower_auth:
        lines.append(
            f"  Flower:    http://127.0.0.1:{settings.flower_port}   (login {flower_auth})"
        )
    lines += [
        f"  Admin token (also in {settings.data_dir / ADMIN_TOKEN_FILE}):",
        f"    export OWNKEY_TOKEN={token}",
        "Press Ctrl-C to stop.",
        "",
    ]
    print("\n".join(lines), flush=True)
