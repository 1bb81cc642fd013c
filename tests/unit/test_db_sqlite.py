"""ownkey's SQLite engine under a worker's load: many threads writing at once."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, event, text

from shared.db import engine_for, transaction


def test_waiting_writers_do_not_each_hold_a_connection(sqlite_db: str) -> None:
    """Two hundred threads that queue to write hold one connection between them: the
    pool's twenty are reused, none is opened (and closed again) per waiting writer."""
    engine = engine_for(sqlite_db)
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE bumps (n INTEGER NOT NULL)"))
        connection.execute(text("INSERT INTO bumps VALUES (0)"))
    opened: list[Any] = []
    event.listen(engine, "connect", lambda dbapi, _record: opened.append(dbapi))
    start = threading.Barrier(200)

    def bump() -> None:
        start.wait()
        for _ in range(5):
            with transaction() as connection:
                n = connection.execute(text("SELECT n FROM bumps")).scalar_one()
                connection.execute(text("UPDATE bumps SET n = :n"), {"n": n + 1})

    threads = [threading.Thread(target=bump) for _ in range(200)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    with transaction() as connection:
        assert connection.execute(text("SELECT n FROM bumps")).scalar_one() == 1000
    assert len(opened) <= 20


def test_threads_asking_at_once_share_one_engine(tmp_path: Path) -> None:
    """A worker's first burst asks from every thread at once: one engine, one pool."""
    url = f"sqlite:///{tmp_path / 'first-burst.db'}"
    start = threading.Barrier(50)
    engines: list[Engine] = []

    def ask() -> None:
        start.wait()
        engines.append(engine_for(url))

    threads = [threading.Thread(target=ask) for _ in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(engines) == 50 and len({id(engine) for engine in engines}) == 1
