"""Writers first on the DuckDB file: a writer announces itself, readers keep away until it is done.

DuckDB lets a process open the file for writing only while no other process has it open, read-only
included. A writer that finds it busy retries with backoff, but a notebook reading in a loop has the
file open nearly all the time, so every retry can land on a read and the writer gives up. Hence a
writer first takes an exclusive lock on `<database>.write-intent` and keeps it until its connection
is closed; readers look at that lock before each connection (without creating anything, so a
read-only data folder is fine) and wait while it is held. A writer then waits only for the reads
already under way, and writers queue here rather than polling the database file.

The lock is an advisory `flock`: the kernel drops it when its process ends, even by `kill -9`.
Without `fcntl` (Windows) nothing is announced, and DuckDB's own lock and the retries on both
sides are all there is.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Iterator
from contextlib import contextmanager

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

INTENT_SUFFIX = ".write-intent"
WRITER_WAIT_SECONDS = 300.0  # another writer's transaction ends well within this


class WriterBusy(TimeoutError):
    """Another process has held the write intent for longer than a writer waits."""


def intent_path(database: str | os.PathLike) -> str:
    return f"{os.fspath(database)}{INTENT_SUFFIX}"


@contextmanager
def announced_write(database: str | os.PathLike, wait_seconds: float = WRITER_WAIT_SECONDS) -> Iterator[None]:
    """Hold the write intent of `database` for the block, once the writers announced before are done."""
    if fcntl is None:
        yield
        return
    path = intent_path(database)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline, delay = time.monotonic() + wait_seconds, 0.01
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise WriterBusy(
                        f"another process has been writing {os.fspath(database)} for over {wait_seconds:.0f} s "
                        f"(it holds {path}): is a run stuck?"
                    ) from None
                # jitter spreads out queued writers; it is not a security measure
                time.sleep(delay * (0.5 + random.random()))  # noqa: S311
                delay = min(delay * 2, 0.5)
        yield
    finally:
        os.close(fd)  # drops the lock


def write_announced(database: str | os.PathLike) -> bool:
    """Whether a writer holds, or waits for, `database` (never a writer: absence of the file is no)."""
    if fcntl is None:
        return False
    try:
        fd = os.open(intent_path(database), os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False
