"""The raw layer on a local disk: what the portal sent, byte for byte, one folder per station-day.

`raw/<station>/<YYYY>/<YYYY-MM-DD>/<dataset>.csv` holds the header and the lines of that day from
one source dataset (the live one, or an archive covering the day). A day is replaced as a whole:
the new folder is written aside, then swapped in, so a crash never leaves a half-written day.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import uuid
from collections.abc import Mapping
from pathlib import Path

from dagster import ConfigurableIOManager, InputContext, OutputContext

from meteo_assets.config import DATASET_ID, STATION_KEY

DayFiles = dict[str, bytes]  # source dataset id → CSV bytes (header + that day's lines)
RawDays = dict[str, DayFiles]  # partition key (YYYY-MM-DD) → the day's files


class MissingRawPartition(FileNotFoundError):
    pass


class RawStore:
    def __init__(self, root: Path | str):
        self.root = Path(root)

    def day_dir(self, station: str, day: dt.date) -> Path:
        if not STATION_KEY.match(station):
            raise ValueError(f"invalid station key {station!r}")
        return self.root / station / f"{day:%Y}" / day.isoformat()

    def write_day(self, station: str, day: dt.date, files: Mapping[str, bytes]) -> Path:
        target = self.day_dir(station, day)
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
        staging.mkdir()
        try:
            for dataset, content in files.items():
                if not DATASET_ID.match(dataset):
                    raise ValueError(f"invalid dataset id {dataset!r}")
                with open(staging / f"{dataset}.csv", "wb") as handle:
                    handle.write(content)
                    handle.flush()
                    os.fsync(handle.fileno())
            retired = None
            if target.exists():
                retired = target.with_name(f".{target.name}.{uuid.uuid4().hex}.old")
                target.rename(retired)
            staging.rename(target)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        if retired is not None:
            shutil.rmtree(retired, ignore_errors=True)
        return target

    def read_day(self, station: str, day: dt.date) -> DayFiles:
        folder = self.day_dir(station, day)
        if not folder.is_dir():
            raise MissingRawPartition(
                f"raw/{station} has no stored partition {day.isoformat()} (expected {folder}); "
                "materialise raw first"
            )
        return {path.stem: path.read_bytes() for path in sorted(folder.glob("*.csv"))}


class RawFilesIOManager(ConfigurableIOManager):
    """Stores `raw/<station>` partitions as files; handles single-run partition ranges."""

    base_dir: str

    def _station(self, context: OutputContext | InputContext) -> str:
        return context.asset_key.path[-1]

    def handle_output(self, context: OutputContext, obj: RawDays) -> None:
        store, station = RawStore(self.base_dir), self._station(context)
        expected = set(context.asset_partition_keys)
        if set(obj) != expected:
            raise ValueError(f"raw/{station}: output has days {sorted(obj)[:3]}…, expected the run's {len(expected)} days")
        for key, files in obj.items():
            store.write_day(station, dt.date.fromisoformat(key), files)

    def load_input(self, context: InputContext) -> RawDays:
        store, station = RawStore(self.base_dir), self._station(context)
        return {key: store.read_day(station, dt.date.fromisoformat(key)) for key in context.asset_partition_keys}
