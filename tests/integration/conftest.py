"""Integration fixtures: a real Redis, fake-llm, PostgreSQL (when present) and ownkey's
own processes. Started once per session; tests create uniquely named objects."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from shared.embedded_redis import EmbeddedRedis, start_redis
from tests.browser import launch_chromium
from tests.processes import FakeLLM, Stack, start_fake_llm, start_stack

TEST_SECRET_KEY = "integration-tests-master-key-" + "x" * 20
DEFAULT_PG_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def _base_env(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OWNKEY_")}
    env.update(
        OWNKEY_DATA_DIR=str(data_dir),
        OWNKEY_SECRET_KEY=TEST_SECRET_KEY,
        OWNKEY_LOG_LEVEL="DEBUG",
        OWNKEY_ENVIRONMENT="test",
        OWNKEY_REQUEUE_AFTER_SECONDS="60",
    )
    return env


@pytest.fixture(scope="session")
def session_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("integration")


@pytest.fixture(scope="session")
def redis_server(session_dir: Path) -> Iterator[EmbeddedRedis]:
    server = start_redis(session_dir / "redis")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def fake_llm(session_dir: Path) -> Iterator[FakeLLM]:
    fake = start_fake_llm(_base_env(session_dir / "fake"), session_dir)
    yield fake
    fake.proc.stop()


@pytest.fixture(autouse=True)
def _fresh_fake_llm(request: pytest.FixtureRequest) -> None:
    if "fake_llm" in request.fixturenames:
        request.getfixturevalue("fake_llm").reset()


def postgres_url() -> Iterator[str]:
    """A fresh database on the machine's PostgreSQL; skipped without one, except in CI."""
    admin_url = os.environ.get("OWNKEY_TEST_POSTGRES_URL", DEFAULT_PG_ADMIN_URL)
    try:
        admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true but PostgreSQL is unreachable at {admin_url}: {exc}")
        pytest.skip(f"PostgreSQL not reachable at {admin_url}")
    name = f"ownkey_test_{uuid.uuid4().hex[:12]}"
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield str(make_url(admin_url).set(database=name).render_as_string(hide_password=False))
    finally:
        with admin.connect() as connection:
            connection.execute(
                text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n"),
                {"n": name},
            )
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        admin.dispose()


@pytest.fixture(scope="session", params=["sqlite", "postgres"])
def stack(
    request: pytest.FixtureRequest, session_dir: Path, redis_server: EmbeddedRedis
) -> Iterator[Stack]:
    """The API and one worker, on SQLite and on PostgreSQL."""
    backend = request.param
    data_dir = session_dir / backend
    env = _base_env(data_dir)
    # Each backend gets its own Redis database, so their queues never mix.
    env["OWNKEY_REDIS_URL"] = (
        f"redis://127.0.0.1:{redis_server.port}/{1 if backend == 'sqlite' else 2}"
    )
    pg = None
    if backend == "postgres":
        pg = postgres_url()
        env["OWNKEY_DATABASE_URL"] = next(pg)
    else:
        env["OWNKEY_DATABASE_URL"] = f"sqlite:///{data_dir / 'ownkey.db'}"
    data_dir.mkdir(parents=True, exist_ok=True)
    running = start_stack(env, data_dir)
    yield running
    running.stop()
    if pg is not None:
        next(pg, None)


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """Headless Debian chromium, driven by Playwright (one for the whole session)."""
    yield from launch_chromium()
