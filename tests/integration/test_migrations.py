"""The Alembic migrations build exactly the schema the SQLModel models describe, on
SQLite and PostgreSQL, and running them again changes nothing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, inspect, text
from sqlmodel import SQLModel

import shared.models  # noqa: F401  (registers the tables on SQLModel.metadata)
from shared.db import engine_for
from shared.migrate import alembic_config, upgrade_database
from tests.integration.conftest import postgres_url


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'migrations.db'}"
        yield url
        engine_for(url).dispose()
        return
    databases = postgres_url()
    url = next(databases)
    try:
        yield url
    finally:
        engine_for(url).dispose()  # the migration's pooled connections, before the DROP
        next(databases, None)


def differences(url: str) -> list[Any]:
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(
                connection, opts={"compare_type": True, "compare_server_default": False}
            )
            return list(compare_metadata(context, SQLModel.metadata))
    finally:
        engine.dispose()


def current_revision(url: str) -> str | None:
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()


def test_migrations_match_the_models(database_url: str) -> None:
    upgrade_database(database_url)
    diff = differences(database_url)
    assert diff == [], "models and migrations differ; add a migration:\n" + "\n".join(
        map(repr, diff)
    )
    head = ScriptDirectory.from_config(alembic_config(database_url)).get_current_head()
    assert head is not None and current_revision(database_url) == head
    engine = create_engine(database_url)
    try:
        tables = set(inspect(engine).get_table_names())
    finally:
        engine.dispose()
    assert set(SQLModel.metadata.tables) <= tables
    assert "alembic_version" in tables


def test_a_second_upgrade_is_harmless(database_url: str) -> None:
    upgrade_database(database_url)
    engine = create_engine(database_url)
    try:
        with engine.begin() as db:
            db.execute(
                text(
                    "INSERT INTO provider_keys (id, provider, name, base_url, key_hint, created_at)"
                    " VALUES ('k1', 'ollama', 'kept', 'http://localhost:11434', '', "
                    "CURRENT_TIMESTAMP)"
                )
            )
        upgrade_database(database_url)
        with engine.connect() as db:
            assert db.execute(text("SELECT name FROM provider_keys")).scalars().all() == ["kept"]
            versions = db.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
    finally:
        engine.dispose()
    assert len(versions) == 1
    assert differences(database_url) == []


def test_tokens_made_before_users_existed_get_a_password_less_admin(database_url: str) -> None:
    upgrade_database(database_url, "0002")
    engine = create_engine(database_url)
    try:
        with engine.begin() as db:
            for token_id in ("t1", "t2"):
                db.execute(
                    text(
                        "INSERT INTO api_tokens (id, name, token_hash, created_at) "
                        "VALUES (:id, 'old', :hash, CURRENT_TIMESTAMP)"
                    ),
                    {"id": token_id, "hash": token_id * 32},
                )
        upgrade_database(database_url)
        with engine.connect() as db:
            users = db.execute(text("SELECT id, username, role, password_hash FROM users")).all()
            owners = set(db.execute(text("SELECT user_id FROM api_tokens")).scalars())
    finally:
        engine.dispose()
    assert [(u.username, u.role, u.password_hash) for u in users] == [("admin", "admin", None)]
    assert owners == {users[0].id}
    assert differences(database_url) == []
