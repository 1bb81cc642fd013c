"""One writer at a time on a SQLite database, handed over without sleeping.

SQLite's busy handler waits for the write lock by sleeping in growing steps (1 ms up
to 100 ms), so writers that contend heavily leave the database idle most of the time.
ownkey's writers queue instead: threads of one process on a `threading.Lock`, processes
on an `flock` of a file beside the database. A process that dies releases its flock.

Both waits are bounded: a writer that cannot get the lock in `LOCK_WAIT_SECONDS` goes
ahead anyway and leaves the arbitration to SQLite's busy timeout, so a transaction left
open by a bug slows writers down but cannot stop them.
"""

from __future__ import annotations

import fcntl
import os
import threading
import time
from pathlib import Path

__all__ = ["WriterLock"]

LOCK_WAIT_SECONDS = 10.0
_MAX_POLL_SECONDS = 0.002


class WriterLock:
    def __init__(self, lock_file: Path | None) -> None:
        self._threads = threading.Lock()
        self._lock_file = lock_file
        self._fd: int | None = None
        self._fd_pid: int | None = None
        self._owner: int | None = None  # the thread that holds it

    def held_here(self) -> bool:
        """Whether the calling thread holds the lock."""
        return self._owner == threading.get_ident()

    def _file_descriptor(self) -> int | None:
        if self._lock_file is None:
            return None
        # Opened per process: a descriptor inherited through fork would share the flock.
        if self._fd is None or self._fd_pid != os.getpid():
            self._fd = os.open(self._lock_file, os.O_RDWR | os.O_CREAT, 0o600)
            self._fd_pid = os.getpid()
        return self._fd

    def acquire(self) -> bool:
        """Take the lock; False if the wait ran out (the caller proceeds unlocked)."""
        deadline = time.monotonic() + LOCK_WAIT_SECONDS
        if not self._threads.acquire(timeout=LOCK_WAIT_SECONDS):
            return False
        fd = self._file_descriptor()
        if fd is None:
            self._owner = threading.get_ident()
            return True
        pause = 0.0001
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                self._owner = threading.get_ident()
                return True
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    self._threads.release()
                    return False
                time.sleep(pause)
                pause = min(pause * 2, _MAX_POLL_SECONDS)

    def take_unless_held(self) -> bool:
        """Take the lock unless this thread already holds it; True if this call took it
        (and so must release it)."""
        return not self.held_here() and self.acquire()

    def release(self) -> None:
        self._owner = None
        fd = self._file_descriptor()
        if fd is not None:
            fcntl.flock(fd, fcntl.LOCK_UN)
        self._threads.release()
