"""Fixtures for every test: a clean environment and a private database."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlmodel import SQLModel

from shared.config import get_settings


def _reset_caches() -> None:
    from shared.keystore import get_secret_box
    from shared.prices_store import forget_cached_prices
    from worker.celery_app import reset_celery

    get_settings.cache_clear()
    get_secret_box.cache_clear()
    forget_cached_prices()
    reset_celery()


@pytest.fixture(autouse=True)
def clean_environ(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """No developer setting leaks into a test: every OWNKEY_* variable is cleared and the
    data directory is the test's own."""
    for name in list(os.environ):
        if name.startswith("OWNKEY_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("OWNKEY_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("OWNKEY_ENVIRONMENT", "test")
    monkeypatch.chdir(tmp_path)
    _reset_caches()
    yield
    _reset_caches()


@pytest.fixture
def sqlite_db(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    """A fresh SQLite database with every table, configured as ownkey's database."""
    from shared.db import engine_for

    url = f"sqlite:///{tmp_path / 'unit.db'}"
    monkeypatch.setenv("OWNKEY_DATABASE_URL", url)
    get_settings.cache_clear()
    SQLModel.metadata.create_all(engine_for(url))
    return url
