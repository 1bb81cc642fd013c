"""The `ownkey` command: one entry point for every role of the platform."""

from __future__ import annotations

import socket
import sys
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer

from shared.cli_batch import batch_app
from shared.config import get_settings
from shared.log_setup import configure_logging, logging_config
from shared.models import Role

if TYPE_CHECKING:
    from celery import Celery

app = typer.Typer(
    help="ownkey: bring-your-own-key AI agent workflows on your own servers.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
token_app = typer.Typer(help="API tokens.", no_args_is_help=True)
user_app = typer.Typer(help="Users of the web UI and their roles.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(token_app, name="token")
app.add_typer(user_app, name="user")
app.add_typer(batch_app, name="batch")


def _fail(message: str) -> NoReturn:
    typer.echo(f"ownkey: {message}", err=True)
    raise typer.Exit(2)


def _celery_or_fail() -> Celery:
    from worker.celery_app import BrokerNotConfigured, get_celery

    try:
        return get_celery()
    except BrokerNotConfigured as exc:
        _fail(str(exc))
        raise


def _leave_logging_to_ownkey() -> None:
    """Celery configures logging unless a receiver of its `setup_logging` signal exists:
    with one, its loggers write through the handler `main()` installed."""
    from celery.signals import setup_logging

    setup_logging.connect(_logging_is_configured, weak=False)


def _logging_is_configured(**_: object) -> None:
    """Logging was configured by `main()`."""


def _celery_quiet() -> list[str]:
    """Celery prints its start-up banner straight to stdout, bypassing logging: in JSON
    mode it would be the one multi-line, non-JSON block of the log."""
    return ["--quiet"] if get_settings().log_format == "json" else []


def _serve_metrics_on_init(host: str, port: int) -> None:
    """Serve /metrics from the worker's main process, once Celery starts it."""
    from celery.signals import worker_init

    from worker.metrics_server import start_metrics_server

    def serve(**_: object) -> None:
        start_metrics_server(host, port, get_settings().metrics_token)

    worker_init.connect(serve, weak=False)


@app.command()
def up(
    port: Annotated[int, typer.Option(help="API port")] = 8000,
    concurrency: Annotated[
        int | None,
        typer.Option(
            help="provider calls in flight in the worker [default: OWNKEY_WORKER_CONCURRENCY, 200]"
        ),
    ] = None,
    flower: Annotated[bool, typer.Option(help="also start Flower")] = True,
) -> None:
    """Run everything on this machine: SQLite, a private Redis, API, worker, beat, Flower."""
    from shared.launcher import PortInUse, run_stack

    settings = get_settings()
    try:
        code = run_stack(
            settings,
            port=port,
            concurrency=concurrency or settings.worker_concurrency,
            with_flower=flower,
        )
    except PortInUse as exc:
        _fail(str(exc))
    raise typer.Exit(code)


@app.command()
def api(
    host: Annotated[str | None, typer.Option(help="bind address")] = None,
    port: Annotated[int | None, typer.Option(help="port")] = None,
    workers: Annotated[int, typer.Option(help="uvicorn worker processes")] = 1,
) -> None:
    """Serve the HTTP API."""
    import uvicorn

    settings = get_settings()
    _celery_or_fail()
    uvicorn.run(
        "api.app:create_app",
        factory=True,
        host=host or settings.api_host,
        port=port or settings.api_port,
        workers=workers,
        log_level=settings.log_level.lower(),
        # The same handler and formatter as every ownkey process, in uvicorn's worker
        # processes too (they apply this dictionary themselves).
        log_config=logging_config(settings.log_format, settings.log_level),
        access_log=False,
        proxy_headers=True,
    )


@app.command()
def worker(
    queues: Annotated[str | None, typer.Option(help="comma-separated queues to consume")] = None,
    concurrency: Annotated[int | None, typer.Option(help="provider calls in flight")] = None,
    pool: Annotated[str | None, typer.Option(help="threads (default), prefork or solo")] = None,
    hostname: Annotated[str | None, typer.Option(help="worker node name")] = None,
    metrics_port: Annotated[
        int | None,
        typer.Option(help="serve this worker's /metrics on this port [default: off]"),
    ] = None,
) -> None:
    """Run a Celery worker that executes steps."""
    from worker.celery_app import worker_queues

    settings = get_settings()
    pool = pool or settings.worker_pool
    port = settings.worker_metrics_port if metrics_port is None else metrics_port
    if port and pool == "prefork":
        _fail(
            "worker metrics need the threads or solo pool: with prefork the counters live "
            "in the child processes, which /metrics cannot see"
        )
    celery = _celery_or_fail()
    _leave_logging_to_ownkey()
    if port:
        _serve_metrics_on_init(settings.metrics_host, port)
    celery.worker_main(
        [
            *_celery_quiet(),
            "worker",
            f"--pool={pool}",
            f"--concurrency={concurrency or settings.worker_concurrency}",
            f"--queues={worker_queues(queues or settings.worker_queues)}",
            f"--hostname={hostname or 'ownkey@' + socket.gethostname()}",
            f"--loglevel={settings.log_level}",
            "--without-mingle",
            "--without-gossip",
        ]
    )


@app.command()
def beat() -> None:
    """Run Celery beat (exactly one per cluster): the reconciler and schedules."""
    settings = get_settings()
    celery = _celery_or_fail()
    settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    _leave_logging_to_ownkey()
    celery.start(
        [
            *_celery_quiet(),
            "beat",
            f"--schedule={settings.data_dir / 'celerybeat-schedule'}",
            f"--loglevel={settings.log_level}",
        ]
    )


@app.command()
def flower(
    port: Annotated[int | None, typer.Option(help="port")] = None,
    address: Annotated[str, typer.Option(help="bind address")] = "127.0.0.1",
    url_prefix: Annotated[str, typer.Option(help="path prefix behind a proxy")] = "",
) -> None:
    """Run Flower, the Celery monitoring dashboard, behind basic auth."""
    settings = get_settings()
    auth = settings.flower_basic_auth.get_secret_value()
    if not auth or ":" not in auth:
        _fail("set OWNKEY_FLOWER_BASIC_AUTH=user:password; Flower never runs without a login")
    celery = _celery_or_fail()
    _leave_logging_to_ownkey()
    args = [
        "flower",
        f"--port={port or settings.flower_port}",
        f"--address={address}",
        f"--basic-auth={auth}",
    ]
    if url_prefix:
        args.append(f"--url-prefix={url_prefix}")
    celery.start(args)


@app.command("fake-llm")
def fake_llm(
    port: Annotated[int, typer.Option(help="port")] = 9100,
    host: Annotated[str, typer.Option(help="bind address")] = "127.0.0.1",
    latency: Annotated[float, typer.Option(help="seconds before each answer")] = 0.0,
    valid_key: Annotated[
        list[str] | None, typer.Option(help="accept only these keys (repeatable)")
    ] = None,
    input_tokens: Annotated[int | None, typer.Option(help="fixed input token count")] = None,
    output_tokens: Annotated[int | None, typer.Option(help="fixed output token count")] = None,
    cached_tokens: Annotated[int, typer.Option(help="cached input tokens to report")] = 0,
    cache_write_tokens: Annotated[
        int, typer.Option(help="cache-write input tokens to report (Anthropic format)")
    ] = 0,
    model: Annotated[
        list[str] | None, typer.Option(help="extra model to list (repeatable)")
    ] = None,
    timeout_sleep: Annotated[
        float, typer.Option(help="how long the fault-timeout model hangs")
    ] = 300.0,
    usage: Annotated[bool, typer.Option(help="report token usage")] = True,
) -> None:
    """Serve a fake LLM provider (OpenAI, Anthropic and Ollama wire formats) for tests and demos."""
    from shared.fake_llm import FakeConfig, run

    config = FakeConfig(
        latency_seconds=latency,
        valid_keys=set(valid_key or []),
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cached_tokens=cached_tokens,
        cache_write_tokens=cache_write_tokens,
        models=tuple(model or ()),
        timeout_sleep_seconds=timeout_sleep,
        report_usage=usage,
    )
    typer.echo(f"fake-llm listening on http://{host}:{port}", err=True)
    run(host, port, config)


@db_app.command("upgrade")
def db_upgrade(revision: Annotated[str, typer.Argument()] = "head") -> None:
    """Create or migrate the database schema."""
    from shared.migrate import upgrade_database

    url = get_settings().resolved_database_url
    upgrade_database(url, revision)
    typer.echo(f"database is at {revision}")


@token_app.command("create")
def token_create(
    name: Annotated[str, typer.Option(help="what the token is for")] = "cli",
    user: Annotated[
        str | None, typer.Option(help="the user it acts as (default: the first admin)")
    ] = None,
) -> None:
    """Create an API token; it is printed once, alone on the last line."""
    from shared.db import session_scope
    from shared.tokens import create_api_token
    from shared.users import default_admin, find_user

    with session_scope() as session:
        owner = default_admin(session) if user is None else find_user(session, user)
        if owner is None:
            _fail(f"no user named '{user}' (see `ownkey user list`)")
        _, token = create_api_token(session, name=name, user_id=owner.id)
        owner_name, owner_role = owner.username, owner.role
    typer.echo(
        f"created API token '{name}' for {owner_name} ({owner_role}); it is shown only now:",
        err=True,
    )
    typer.echo(token)


@user_app.command("create")
def user_create(
    username: Annotated[str, typer.Argument()],
    admin: Annotated[bool, typer.Option("--admin", help="same as --role admin")] = False,
    role: Annotated[Role, typer.Option(help="viewer, member or admin")] = Role.member,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="read the password from stdin")
    ] = False,
) -> None:
    """Create a user who can sign in to the web UI. Without --password-stdin a password is
    generated and printed once, alone on the last line."""
    from shared.db import session_scope
    from shared.users import AccountError, create_user, generate_password

    password = sys.stdin.readline().rstrip("\n") if password_stdin else generate_password()
    try:
        with session_scope() as session:
            create_user(
                session, username=username, role=Role.admin if admin else role, password=password
            )
    except AccountError as exc:
        _fail(str(exc))
    typer.echo(f"created user '{username}' ({Role.admin if admin else role})", err=True)
    if not password_stdin:
        typer.echo("password (shown only now):", err=True)
        typer.echo(password)


@user_app.command("set-password")
def user_set_password(
    username: Annotated[str, typer.Argument()],
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="read the password from stdin")
    ] = False,
) -> None:
    """Give a user a new password (signs them out everywhere); generated unless given."""
    from shared.db import session_scope
    from shared.users import AccountError, find_user, generate_password, set_password

    password = sys.stdin.readline().rstrip("\n") if password_stdin else generate_password()
    try:
        with session_scope() as session:
            found = find_user(session, username)
            if found is None:
                _fail(f"no user named '{username}'")
            set_password(session, found, password)
    except AccountError as exc:
        _fail(str(exc))
    typer.echo(f"new password set for '{username}'", err=True)
    if not password_stdin:
        typer.echo("password (shown only now):", err=True)
        typer.echo(password)


@user_app.command("list")
def user_list() -> None:
    """Users, their roles, and whether they can sign in."""
    from sqlmodel import select

    from shared.db import read_session
    from shared.models import User

    with read_session() as session:
        for found in session.exec(select(User).order_by(User.username)).all():
            state = (
                "disabled"
                if found.disabled_at
                else ("no password" if found.password_hash is None else "active")
            )
            typer.echo(f"{found.username}\t{found.role}\t{state}")


def main() -> None:
    settings = get_settings()
    configure_logging(settings.log_format, settings.log_level)
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
