"""The raw layer in an S3 bucket (`METEO_RAW_BUCKET`): the same station-days as `raw_files.py`.

`<station>/<YYYY>/<YYYY-MM-DD>/<dataset>.csv` holds, byte for byte, the header and that day's
lines from one source dataset. Each object is written in one PUT, so it is whole or absent. A day
is replaced by writing its new objects, then deleting the ones the new version no longer has: a
crash in between leaves whole objects of both versions, and the next run of that day fixes it.
A day with no file at all (before the station's start) is kept as a zero-byte `…/<YYYY-MM-DD>/`
marker, so that "stored empty" and "never materialised" stay distinct, as they are on disk.
A range of days costs one listing per year and its objects travel in parallel.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor

from dagster_aws.s3 import S3Resource
from pydantic import PrivateAttr

from meteo_assets.storage.raw_files import DayFiles, RawDaysIOManager, day_path, file_name, missing_partition
from meteo_assets.storage.s3 import S3Bucket

RAW_BUCKET_SETTING = "METEO_RAW_BUCKET"
PARALLEL_REQUESTS = 8  # below botocore's 10 pooled connections per client


class S3RawStore:
    def __init__(self, bucket: S3Bucket):
        self.bucket = bucket

    def day_prefix(self, station: str, day: dt.date) -> str:
        return f"{day_path(station, day)}/"

    def write_days(self, station: str, days: Mapping[dt.date, Mapping[str, bytes]]) -> None:
        """Write a range of days: one listing per year touched, the objects sent in parallel."""
        existing = self._stored(station, days)
        objects, stale = {}, []
        for day, files in days.items():
            prefix = self.day_prefix(station, day)
            written = {prefix + file_name(dataset): content for dataset, content in files.items()} or {prefix: b""}
            objects.update(written)
            stale += [key for key in existing.get(prefix, []) if key not in written]
        with ThreadPoolExecutor(max_workers=PARALLEL_REQUESTS) as pool:
            list(pool.map(lambda item: self.bucket.put(*item), objects.items()))
        if stale:
            self.bucket.delete(stale)

    def read_days(self, station: str, days: Sequence[dt.date]) -> dict[dt.date, DayFiles]:
        existing = self._stored(station, days)
        wanted = {}
        for day in days:
            prefix = self.day_prefix(station, day)
            if prefix not in existing:
                raise missing_partition(station, day, self.bucket.uri(prefix))
            wanted.update({key: day for key in existing[prefix] if key != prefix})

        def fetch(key: str) -> bytes:
            found = self.bucket.get(key)
            if found is None:  # deleted since the listing: the day is being rewritten
                raise missing_partition(station, wanted[key], self.bucket.uri(key))
            return found[0]

        with ThreadPoolExecutor(max_workers=PARALLEL_REQUESTS) as pool:
            contents = dict(zip(wanted, pool.map(fetch, wanted)))
        result: dict[dt.date, DayFiles] = {day: {} for day in days}
        for key in sorted(wanted):
            result[wanted[key]][key.rsplit("/", 1)[1].removesuffix(".csv")] = contents[key]
        return result

    def write_day(self, station: str, day: dt.date, files: Mapping[str, bytes]) -> str:
        self.write_days(station, {day: files})
        return self.bucket.uri(self.day_prefix(station, day))

    def read_day(self, station: str, day: dt.date) -> DayFiles:
        return self.read_days(station, [day])[day]

    def _stored(self, station: str, days: Iterable[dt.date]) -> dict[str, list[str]]:
        """The keys already stored for the days' years, by day prefix (a marker is its own prefix)."""
        by_day: dict[str, list[str]] = {}
        for year in sorted({day.year for day in days}):
            for key in self.bucket.keys(f"{day_path(station, dt.date(year, 1, 1)).parent}/"):
                by_day.setdefault(key[: key.rindex("/") + 1], []).append(key)
        return by_day


class S3RawIOManager(RawDaysIOManager):
    """Stores `raw/<station>` partitions as objects in an S3 bucket (see `s3_raw.py`)."""

    s3: S3Resource
    bucket: str
    create_bucket: bool = False

    _store: S3RawStore | None = PrivateAttr(default=None)

    def store(self) -> S3RawStore:
        if self._store is None:
            bucket = S3Bucket(self.s3.get_client(), self.bucket, RAW_BUCKET_SETTING, self.create_bucket)
            self._store = S3RawStore(bucket.ensure())
        return self._store
