"""Database engines and sessions.

SQLite is the embedded default and several worker processes write to it at once, so
every connection runs in WAL mode with a busy timeout, and every transaction starts
with `BEGIN IMMEDIATE`: a deferred transaction that reads and then writes can fail at
once with SQLITE_BUSY_SNAPSHOT in WAL mode, which no busy timeout can cure.

Writers also queue on a `WriterLock` (shared/sqlite_lock.py) before `BEGIN IMMEDIATE`:
SQLite's own busy handler sleeps in growing steps, and two hundred worker threads
contending for the write lock left it idle most of the time (measured: 52 steps/s with
the busy handler alone, about 120 with the lock). The worker's transactions take that
lock before they take a connection from the pool: two hundred threads waiting to write
then hold one connection between them, not two hundred. The pool keeps twenty; the
rest were closed when handed back and opened again (with their PRAGMAs) for the next
burst, which cost scenario 3 about 5% of its wall time (BENCHMARKS.md).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, event
from sqlalchemy.engine import make_url
from sqlmodel import Session, create_engine

from shared.config import get_settings
from shared.sqlite_lock import WriterLock

__all__ = [
    "READ_ONLY_OPTION",
    "engine_for",
    "get_engine",
    "read_session",
    "session_scope",
    "transaction",
]

SQLITE_BUSY_TIMEOUT_MS = 30_000
# A thread that waits this long for a pooled PostgreSQL connection gets an error, which
# the worker treats like a database outage (worker/db_retry.py).
PG_POOL_TIMEOUT_SECONDS = 60
MAX_ENGINES = 8
_engines: dict[str, Engine] = {}
_engines_lock = threading.Lock()
# Each SQLite engine's WriterLock, for as long as `_engines` holds the engine.
_writer_locks: dict[Engine, WriterLock] = {}


def _serialized_connection_class(lock: WriterLock) -> type[sqlite3.Connection]:
    class SerializedConnection(sqlite3.Connection):
        """A sqlite3 connection whose write transactions hold the database's WriterLock."""

        _holds_lock = False

        def begin_read(self) -> None:
            """A deferred transaction: in WAL mode a reader neither waits for nor blocks
            the writer, so reads take no lock at all."""
            self.execute("BEGIN")

        def begin_immediate(self) -> None:
            # `transaction()` may have taken the lock already, before the connection.
            self._holds_lock = lock.take_unless_held()
            try:
                self.execute("BEGIN IMMEDIATE")
            except BaseException:
                self._release()
                raise

        def _release(self) -> None:
            if self._holds_lock:
                self._holds_lock = False
                lock.release()

        def commit(self) -> None:
            try:
                super().commit()
            finally:
                self._release()

        def rollback(self) -> None:
            try:
                super().rollback()
            finally:
                self._release()

        def close(self) -> None:
            try:
                super().close()
            finally:
                self._release()

    return SerializedConnection


def _prepare_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event below issue BEGIN itself.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        dbapi_connection = connection.connection.dbapi_connection
        if connection.get_execution_options().get(READ_ONLY_OPTION):
            dbapi_connection.begin_read()
        else:
            dbapi_connection.begin_immediate()


def engine_for(url: str) -> Engine:
    """One engine per database URL and process. Built under a lock: a worker's first
    burst of steps asks from two hundred threads at once, and each would otherwise build
    an engine (and a pool, and connections) of its own. Found without one: every
    transaction asks."""
    engine = _engines.get(url)
    if engine is None:
        with _engines_lock:
            engine = _engines.get(url)
            if engine is None:
                if len(_engines) >= MAX_ENGINES:  # tests make many databases: drop the oldest
                    _writer_locks.pop(_engines.pop(next(iter(_engines))), None)
                engine = _engines[url] = _new_engine(url)
    return engine


def _new_engine(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        lock_file = None
        if parsed.database and parsed.database != ":memory:":
            # The database holds prompts and outputs: a folder ownkey creates is private.
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            lock_file = Path(f"{parsed.database}.writer-lock")
        lock = WriterLock(lock_file)
        engine = create_engine(
            url,
            connect_args={
                "check_same_thread": False,
                "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000,
                "factory": _serialized_connection_class(lock),
            },
            pool_size=20,
            max_overflow=200,
        )
        _prepare_sqlite(engine)
        _writer_locks[engine] = lock
        return engine
    if parsed.drivername == "postgresql":
        url = str(parsed.set(drivername="postgresql+psycopg"))
    return create_engine(
        url,
        pool_size=get_settings().database_pool_size,
        max_overflow=0,  # an overflow connection is closed when returned: opened per burst
        pool_timeout=PG_POOL_TIMEOUT_SECONDS,
        pool_pre_ping=True,
        pool_recycle=1800,
    )


READ_ONLY_OPTION = "ownkey_read_only"


def get_engine() -> Engine:
    return engine_for(get_settings().resolved_database_url)


@lru_cache(maxsize=8)
def _read_engine_for(url: str) -> Engine:
    return engine_for(url).execution_options(**{READ_ONLY_OPTION: True})


@contextmanager
def read_session() -> Iterator[Session]:
    """A session that only reads. On SQLite it takes no write lock, so reads never queue
    behind (or hold up) the workers' writes."""
    with Session(
        _read_engine_for(get_settings().resolved_database_url), expire_on_commit=False
    ) as session:
        yield session


@contextmanager
def transaction() -> Iterator[Connection]:
    """A plain connection in a transaction, for the worker's hot path: the same
    all-or-nothing commit as session_scope without the ORM session's bookkeeping.
    On SQLite the writer lock comes first, the connection second."""
    engine = get_engine()
    with _writer_lock_held(engine), engine.begin() as connection:
        yield connection


@contextmanager
def _writer_lock_held(engine: Engine) -> Iterator[None]:
    lock = _writer_locks.get(engine)
    held = lock is not None and lock.take_unless_held()
    try:
        yield
    finally:
        if held and lock is not None:
            lock.release()


@contextmanager
def session_scope() -> Iterator[Session]:
    """A session whose transaction commits on success and rolls back on error."""
    with Session(get_engine(), expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
