"""The raw layer on a local disk: what the portal sent, byte for byte, one folder per station-day.

`raw/<station>/<YYYY>/<YYYY-MM-DD>/<dataset>.csv` holds the header and the lines of that day from
one source dataset (the live one, or an archive covering the day). A day is replaced as a whole:
the new folder is written aside, then swapped in, so a crash never leaves a half-written day.
"""

from __future__ import annotations

import ctypes
import datetime as dt
import errno
import os
import shutil
import sys
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Protocol

from dagster import ConfigurableIOManager, InputContext, OutputContext

from meteo_assets.config import DATASET_ID, STATION_KEY
from meteo_assets.storage.preflight import ensure_room

DayFiles = dict[str, bytes]  # source dataset id → CSV bytes (header + that day's lines)
RawDays = dict[str, DayFiles]  # partition key (YYYY-MM-DD) → the day's files
ABANDONED_AFTER = dt.timedelta(hours=1)  # a staged day older than this belongs to a killed writer


class MissingRawPartition(FileNotFoundError):
    pass


def day_path(station: str, day: dt.date) -> PurePosixPath:
    """`<station>/<YYYY>/<YYYY-MM-DD>`: where a station-day lives, on disk or in a bucket."""
    if not STATION_KEY.match(station):
        raise ValueError(f"invalid station key {station!r}")
    return PurePosixPath(station, f"{day:%Y}", day.isoformat())


def file_name(dataset: str) -> str:
    """`<dataset>.csv`, for a valid portal dataset id only (it becomes part of a path)."""
    if not DATASET_ID.match(dataset):
        raise ValueError(f"invalid dataset id {dataset!r}")
    return f"{dataset}.csv"


def missing_partition(station: str, day: dt.date, where: str) -> MissingRawPartition:
    return MissingRawPartition(
        f"raw/{station} has no stored partition {day.isoformat()} (expected {where}); materialise raw first"
    )


def swap_in(staging: Path, target: Path) -> Path | None:
    """Move the folder `staging` to `target`; returns where the previous version now is, to delete.

    On Linux an existing folder is exchanged with the new one in one atomic step (renameat2
    RENAME_EXCHANGE): a reader, a concurrent writer or a `kill -9` sees the old day or the new one,
    never none. Elsewhere the old folder is renamed aside first, leaving a moment without the day.
    """
    try:
        staging.rename(target)
        return None
    except OSError as exc:
        if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
            raise
    if _exchange(staging, target):
        return staging
    retired = target.with_name(f".{target.name}.{uuid.uuid4().hex}.old")
    target.rename(retired)
    staging.rename(target)
    return retired


_AT_FDCWD, _RENAME_EXCHANGE = -100, 2
_libc = ctypes.CDLL(None, use_errno=True) if sys.platform == "linux" else None
_renameat2 = getattr(_libc, "renameat2", None)
_syncfs = getattr(_libc, "syncfs", None)
if _renameat2 is not None:
    _renameat2.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint)


def sync_file_system(folder: Path) -> None:
    """Flush what was written to the file system holding `folder` (Linux `syncfs`; elsewhere, all)."""
    if _syncfs is None:
        os.sync()
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        if _syncfs(fd) != 0:
            code = ctypes.get_errno()
            raise OSError(code, os.strerror(code), str(folder))
    finally:
        os.close(fd)


def _exchange(a: Path, b: Path) -> bool:
    """Atomically exchange two paths; False when the system or file system cannot."""
    if _renameat2 is None:
        return False
    if _renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), str(b))


class RawStore:
    def __init__(self, root: Path | str):
        self.root = Path(root)

    def day_dir(self, station: str, day: dt.date) -> Path:
        return self.root / day_path(station, day)

    def write_day(self, station: str, day: dt.date, files: Mapping[str, bytes]) -> Path:
        self.write_days(station, {day: files})
        return self.day_dir(station, day)

    def read_day(self, station: str, day: dt.date) -> DayFiles:
        folder = self.day_dir(station, day)
        if not folder.is_dir():
            raise missing_partition(station, day, str(folder))
        return {path.stem: path.read_bytes() for path in sorted(folder.glob("*.csv"))}

    def write_days(self, station: str, days: Mapping[dt.date, Mapping[str, bytes]]) -> None:
        """Write every day aside, make it durable with one `syncfs` (not one fsync per file: a year
        is 700 files), then swap the days in one by one."""
        staged: list[tuple[Path, Path]] = []
        swapped = 0
        years: set[Path] = set()
        try:
            for day, files in days.items():
                target = self.day_dir(station, day)
                if target.parent not in years:
                    target.parent.mkdir(parents=True, exist_ok=True)
                    remove_abandoned(target.parent)
                    years.add(target.parent)
                staging = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
                staging.mkdir()
                staged.append((staging, target))
                for dataset, content in files.items():
                    (staging / file_name(dataset)).write_bytes(content)
            sync_file_system(self.root)  # the new days' bytes are on disk before any rename can be
            for staging, target in staged:
                retired = swap_in(staging, target)
                swapped += 1
                if retired is not None:
                    shutil.rmtree(retired, ignore_errors=True)
        finally:
            for staging, _ in staged[swapped:]:  # a failure before the swap: the previous days stay
                shutil.rmtree(staging, ignore_errors=True)

    def read_days(self, station: str, days: Sequence[dt.date]) -> dict[dt.date, DayFiles]:
        return {day: self.read_day(station, day) for day in days}


def remove_abandoned(folder: Path, older_than: dt.timedelta = ABANDONED_AFTER) -> None:
    """Delete the staged and retired day folders a killed writer left in `folder` (a writer still
    at work touches its own within seconds, so only old ones go)."""
    limit = dt.datetime.now().timestamp() - older_than.total_seconds()
    for entry in os.scandir(folder):
        if entry.name.startswith(".") and entry.name.endswith((".tmp", ".old")) and entry.stat().st_mtime < limit:
            shutil.rmtree(entry.path, ignore_errors=True)


class DayStore(Protocol):
    """Where raw station-days are kept: `RawStore` (a folder) or `S3RawStore` (a bucket)."""

    def write_days(self, station: str, days: Mapping[dt.date, Mapping[str, bytes]]) -> None: ...

    def read_days(self, station: str, days: Sequence[dt.date]) -> dict[dt.date, DayFiles]: ...


def read_raw_days(store: DayStore, station: str, days: Sequence[dt.date]) -> RawDays:
    """A station's stored days, keyed by partition, as a clean step receives them."""
    return {day.isoformat(): files for day, files in store.read_days(station, days).items()}


class RawDaysIOManager(ConfigurableIOManager):
    """Stores `raw/<station>` partitions one station-day at a time; handles single-run partition ranges."""

    def store(self) -> DayStore:
        raise NotImplementedError

    def _station(self, context: OutputContext | InputContext) -> str:
        return context.asset_key.path[-1]

    def handle_output(self, context: OutputContext, obj: RawDays) -> None:
        store, station = self.store(), self._station(context)
        expected = set(context.asset_partition_keys)
        if set(obj) != expected:
            raise ValueError(f"raw/{station}: output has days {sorted(obj)[:3]}…, expected the run's {len(expected)} days")
        store.write_days(station, {dt.date.fromisoformat(key): files for key, files in obj.items()})

    def load_input(self, context: InputContext) -> RawDays:
        days = [dt.date.fromisoformat(key) for key in context.asset_partition_keys]
        return read_raw_days(self.store(), self._station(context), days)


class RawFilesIOManager(RawDaysIOManager):
    """Stores `raw/<station>` partitions as files under `base_dir`."""

    base_dir: str

    def store(self) -> RawStore:
        return RawStore(self.base_dir)

    def handle_output(self, context: OutputContext, obj: RawDays) -> None:
        # a full or read-only disk is reported before the first day is written, not halfway through the range
        keys = sorted(obj)
        span = keys[0] if len(keys) == 1 else f"{keys[0]}…{keys[-1]}" if keys else "no partition"
        sizes = [len(content) for files in obj.values() for content in files.values()]
        ensure_room(Path(self.base_dir), sizes, f"raw/{self._station(context)}, partition {span}")
        super().handle_output(context, obj)
