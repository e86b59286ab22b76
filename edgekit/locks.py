"""Exclusive locks between edgekit processes: a bundle's ``--out`` while a run writes it, a stage's cache
entry while a run trains it. Without them two runs on the same folder both succeed and one silently
replaces the other's files.

``fcntl.flock`` on a lock file: the kernel drops the lock when the process dies (a killed run never
leaves a stale lock). The lock file is removed on release, so the folder next to it stays as it was;
because a waiter may then hold a lock on a file that is no longer there, acquiring checks that the
locked file is still the one at the path and retries otherwise.
"""

from __future__ import annotations

import fcntl
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


class FileLock:
    """An exclusive lock on ``path`` (created on demand, removed on release)."""

    def __init__(self, path: Path):
        self.path = path
        self._fd: int | None = None

    def acquire(self, wait: bool) -> bool:
        """True once held; False at once when another process holds it and ``wait`` is False."""
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError:
                os.close(fd)
                return False
            try:
                current = os.stat(self.path).st_ino
            except FileNotFoundError:
                current = None
            if current == os.fstat(fd).st_ino:
                self._fd = fd
                return True
            os.close(fd)  # the previous holder removed the file while we waited: lock the new one

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)
        finally:
            os.close(self._fd)
            self._fd = None


@contextmanager
def held(path: Path) -> Iterator[None]:
    """Waits for and holds the lock on ``path`` for the block (a second run on the same cache entry waits
    for the first, then resumes from what it left)."""
    lock = FileLock(path)
    lock.acquire(wait=True)
    try:
        yield
    finally:
        lock.release()
