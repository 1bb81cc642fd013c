"""The writer lock excludes threads of one process and separate processes alike."""

from __future__ import annotations

import multiprocessing
import threading
from pathlib import Path

from shared.sqlite_lock import WriterLock


def _bump(lock_file: str, counter: str, times: int) -> None:
    lock = WriterLock(Path(lock_file))
    for _ in range(times):
        assert lock.acquire()
        try:
            path = Path(counter)
            value = int(path.read_text())
            path.write_text(str(value + 1))  # a lost update shows if two hold the lock
        finally:
            lock.release()


def test_processes_and_threads_never_hold_it_together(tmp_path: Path) -> None:
    lock_file, counter = tmp_path / "db.writer-lock", tmp_path / "counter"
    counter.write_text("0")
    context = multiprocessing.get_context("spawn")
    processes = [
        context.Process(target=_bump, args=(str(lock_file), str(counter), 150)) for _ in range(3)
    ]
    threads = [
        threading.Thread(target=_bump, args=(str(lock_file), str(counter), 150)) for _ in range(3)
    ]
    for worker in [*processes, *threads]:
        worker.start()
    for thread in threads:
        thread.join()
    for process in processes:
        process.join(timeout=60)
        assert process.exitcode == 0
    assert int(counter.read_text()) == 6 * 150


def test_a_lock_without_a_file_still_excludes_threads() -> None:
    lock = WriterLock(None)
    assert lock.acquire()
    assert not lock._threads.acquire(blocking=False)
    lock.release()
    assert lock.acquire()
    lock.release()


def test_it_knows_which_thread_holds_it() -> None:
    lock = WriterLock(None)
    assert not lock.held_here()
    assert lock.acquire()
    elsewhere: list[bool] = []
    thread = threading.Thread(target=lambda: elsewhere.append(lock.held_here()))
    thread.start()
    thread.join()
    assert lock.held_here() and elsewhere == [False]
    lock.release()
    assert not lock.held_here()
