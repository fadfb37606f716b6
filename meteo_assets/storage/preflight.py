"""Checks made before a write starts, so that an unwritable or full data dir fails once, clearly, and
before anything is half-written (a write that fails later still leaves the previous version intact)."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterable
from pathlib import Path

HEADROOM_BYTES = 64 * 1024  # folders, DuckDB's own growth, other writers: a margin, not an exact figure


class StorageUnavailable(RuntimeError):
    """The data dir cannot take this write; the message names the data, the folder and the cause."""


def ensure_writable(directory: Path, what: str) -> None:
    """`directory` exists (created if needed) and this process may create files in it."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StorageUnavailable(
            f"{what}: cannot create {directory} ({exc.strerror}); nothing was written. Check METEO_DATA_DIR."
        ) from exc
    if not os.access(directory, os.W_OK | os.X_OK):
        read_only = _read_only_filesystem(directory)
        raise StorageUnavailable(
            f"{what}: {directory} is not writable ({'read-only file system' if read_only else 'permission denied'}); "
            "nothing was written. Check METEO_DATA_DIR."
        )


def ensure_room(directory: Path, file_sizes: Iterable[int], what: str) -> None:
    """`directory` is writable and its file system has room for files of `file_sizes` bytes."""
    ensure_writable(directory, what)
    stats = os.statvfs(directory)
    block = stats.f_frsize or 4096
    needed = sum(-(-size // block) * block + block for size in file_sizes) + HEADROOM_BYTES
    free = stats.f_bavail * stats.f_frsize
    if needed > free:
        raise StorageUnavailable(
            f"{what}: needs about {_size(needed)} in {directory}, only {_size(free)} free "
            f"({os.strerror(errno.ENOSPC).lower()}); nothing was written. Free some space or point "
            "METEO_DATA_DIR elsewhere."
        )


def _read_only_filesystem(directory: Path) -> bool:
    return bool(os.statvfs(directory).f_flag & os.ST_RDONLY)


def _size(n: int) -> str:
    return f"{n / 1024:,.0f} KiB" if n < 1024**2 else f"{n / 1024**2:,.1f} MiB"
