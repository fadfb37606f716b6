"""Writers first on the DuckDB file: a writer announces itself, readers keep away until it is done.

DuckDB lets a process open the file for writing only while no other process has it open, read-only
included. A writer that finds it busy retries with backoff, but a notebook reading in a loop has the
file open nearly all the time, so every retry can land on a read and the writer gives up. Hence a
writer first takes an exclusive lock on `<database>.write-intent` and keeps it until its connection
is closed; readers look at that lock before each connection (without creating anything, so a
read-only data folder is fine) and wait while it is held. A writer then waits only for the reads
already under way, and writers queue here rather than polling the database file.

A writer may keep the file a little after its write, for the next write of its run
(`duckdb_io.py`). Whoever waits for the file (a reader, another writer) holds a shared lock on
`<database>.waiting` meanwhile, and a writer that sees it held lets the file go after its write.

The locks are advisory `flock`s: the kernel drops them when their process ends, even by `kill -9`.
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
WAITING_SUFFIX = ".waiting"
WRITER_WAIT_SECONDS = 300.0  # another writer's transaction ends well within this


class WriterBusy(TimeoutError):
    """Another process has held the write intent for longer than a writer waits."""


def intent_path(database: str | os.PathLike) -> str:
    return f"{os.fspath(database)}{INTENT_SUFFIX}"


def waiting_path(database: str | os.PathLike) -> str:
    return f"{os.fspath(database)}{WAITING_SUFFIX}"


@contextmanager
def waiting_for(database: str | os.PathLike) -> Iterator[None]:
    """Say, for the block, that this process waits for `database` (nothing when no writer ever made
    `<database>.waiting`: then no writer keeps the file after its writes)."""
    try:
        fd = os.open(waiting_path(database), os.O_RDONLY) if fcntl is not None else None
    except FileNotFoundError:
        fd = None
    try:
        if fd is not None:
            fcntl.flock(fd, fcntl.LOCK_SH)
        yield
    finally:
        if fd is not None:
            os.close(fd)


def someone_waits(database: str | os.PathLike) -> bool:
    """Whether a reader or another writer waits for `database` (see `waiting_for`)."""
    return fcntl is None or _held(waiting_path(database), fcntl.LOCK_EX)  # without locks nobody could say


@contextmanager
def announced_write(database: str | os.PathLike, wait_seconds: float = WRITER_WAIT_SECONDS) -> Iterator[None]:
    """Hold the write intent of `database` for the block, once the writers announced before are done."""
    if fcntl is None:
        yield
        return
    path = intent_path(database)
    os.close(os.open(waiting_path(database), os.O_RDWR | os.O_CREAT, 0o644))
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            with waiting_for(database):
                _wait_for_intent(fd, path, database, wait_seconds)
        yield
    finally:
        os.close(fd)  # drops the lock


def _wait_for_intent(fd: int, path: str, database: str | os.PathLike, wait_seconds: float) -> None:
    deadline, delay = time.monotonic() + wait_seconds, 0.01
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() > deadline:
                raise WriterBusy(
                    f"another process has been writing {os.fspath(database)} for over {wait_seconds:.0f} s "
                    f"(it holds {path}): is a run stuck?"
                ) from None
            # jitter spreads out queued writers; it is not a security measure
            time.sleep(delay * (0.5 + random.random()))  # noqa: S311
            delay = min(delay * 2, 0.5)


def write_announced(database: str | os.PathLike) -> bool:
    """Whether a writer holds, or waits for, `database` (never a writer: absence of the file is no)."""
    return fcntl is not None and _held(intent_path(database), fcntl.LOCK_SH)


def _held(path: str, mode: int) -> bool:
    """Whether another open file holds a lock on `path` that a `mode` lock would wait for (opened
    read-only, so a read-only data folder is fine; a missing file is no)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, mode | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False
