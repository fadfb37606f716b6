"""The Parquet lake in `METEO_LAKE_BUCKET`: the pipeline's tables, each a Hive-partitioned Parquet table.

    clean/station=<key>/year=YYYY/month=MM/part.parquet
    daily/station=<key>/year=YYYY/month=MM/part.parquet
    <asset key>/year=YYYY/month=MM/part.parquet   (any other partitioned table, e.g. network/daily)
    <asset key>/part.parquet                      (an unpartitioned one: the station catalogue)

Athena, Spark, DuckDB and pyarrow read each folder as one table, with `station`, `year` and `month`
as partition columns (the files do not repeat them). There is at most one file per station-month:
writing a range of days reads each touched month, replaces those days' rows, and writes the month
back once, sorted by time (read–merge–write). The new file is built in memory and sent in one PUT,
which S3 makes visible whole or not at all, so a writer killed mid-upload leaves the previous month
file as it was. The PUT is conditional on the version that was read (its ETag): when two runs
rewrite the same month, the later one re-reads and merges again instead of dropping the other's days.

Columns are the contract's (`CLEAN_COLUMNS`, `DAILY_COLUMNS`). Timestamps are stored in microseconds
(what Spark and Athena read); frames come back with the dtypes the DuckDB tables give, so both
storage modes load identical tables.
"""

from __future__ import annotations

import datetime as dt
import io
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import groupby
from urllib.parse import urlsplit

import boto3
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pyarrow import fs as arrow_fs
from dagster import ConfigurableIOManager, InputContext, MetadataValue, OutputContext, TableSchema
from dagster_aws.s3 import S3Resource
from pydantic import PrivateAttr

from meteo_assets.storage.duckdb_io import table_schema
from meteo_assets.storage.s3 import CREDENTIALS_HINT, ConcurrentChange, S3Bucket, S3StorageError
from meteo_assets.transform.contract import CLEAN_COLUMNS, DAILY_COLUMNS

LAKE_BUCKET_SETTING = "METEO_LAKE_BUCKET"
PARTITION_COLUMN = "station"
FILE_NAME = "part.parquet"
SWAP_ATTEMPTS = 5  # conditional rewrites of one month before giving up on a concurrently busy month

ARROW_TYPES: dict[str, pa.DataType] = {
    "VARCHAR": pa.string(),
    "TIMESTAMPTZ": pa.timestamp("us", tz="UTC"),
    "TIMESTAMP": pa.timestamp("us"),
    "DATE": pa.date32(),
    "DOUBLE": pa.float64(),
    "INTEGER": pa.int32(),
}


@dataclass(frozen=True)
class LakeTable:
    """A partitioned table of the lake: its declared columns, and which column says a row's Paris day."""

    name: str  # its folder in the bucket
    columns: Mapping[str, str]
    day_column: str  # the row's Paris day: the clean table's wall-clock time, the daily table's date
    order_columns: tuple[str, ...]  # rows are stored in this order within a month file
    by_station: bool = True  # one folder per station (`station=<key>`), the column left out of the files

    @property
    def file_schema(self) -> pa.Schema:
        return pa.schema([(n, ARROW_TYPES[t]) for n, t in self.columns.items() if not self._is_partition(n)])

    def prefix(self, station: str | None) -> str:
        return f"{self.name}/{PARTITION_COLUMN}={station}/" if self.by_station else f"{self.name}/"

    def month_key(self, station: str | None, year: int, month: int) -> str:
        return f"{self.prefix(station)}year={year:04d}/month={month:02d}/{FILE_NAME}"

    def _is_partition(self, column: str) -> bool:
        return self.by_station and column == PARTITION_COLUMN


LAKE_TABLES = {
    "clean": LakeTable("clean", CLEAN_COLUMNS, day_column="local_time", order_columns=("observed_at",)),
    "daily": LakeTable("daily", DAILY_COLUMNS, day_column="date", order_columns=("date",)),
}


def lake_table(name: str) -> LakeTable:
    if name not in LAKE_TABLES:
        raise ValueError(f"the lake has no station table {name!r} (known: {', '.join(LAKE_TABLES)})")
    return LAKE_TABLES[name]


def table_of_asset(path: Sequence[str], metadata: Mapping[str, object]) -> tuple[LakeTable, str | None]:
    """The lake table and station of a partitioned asset: `clean/<station>` and `daily/<station>`
    are the station tables; any other asset (e.g. `network/daily`) is a table of its own in the
    folder of its key, declared by its `partition_expr` and `dagster/column_schema` metadata."""
    if len(path) == 2 and path[0] in LAKE_TABLES:
        return LAKE_TABLES[path[0]], path[1]
    schema, day = (_plain(metadata.get(name)) for name in ("dagster/column_schema", "partition_expr"))
    if not isinstance(schema, TableSchema) or not isinstance(day, str):
        raise ValueError(f"{'/'.join(path)}: a partitioned asset stored in the lake needs `partition_expr` "
                         "and `dagster/column_schema` metadata")
    columns = {column.name: column.type for column in schema.columns}
    unknown = sorted(set(columns.values()) - set(ARROW_TYPES))
    if unknown:
        raise ValueError(f"{'/'.join(path)}: no Parquet type for {', '.join(unknown)} (known: {', '.join(ARROW_TYPES)})")
    order = tuple(name for name in (day, PARTITION_COLUMN) if name in columns)
    return LakeTable("/".join(path), columns, day_column=day, order_columns=order, by_station=False), None


def _plain(value: object) -> object:
    """A metadata entry as given (`TableSchema`, `str`), whether or not Dagster wrapped it."""
    return getattr(value, "value", value)


def describe(table: LakeTable, station: str | None) -> str:
    return f"{table.name}/{station}" if table.by_station else table.name


def to_arrow(frame: pd.DataFrame, table: LakeTable, station: str | None) -> pa.Table:
    """The frame as the lake file stores it: declared types, no partition column."""
    missing = [name for name in table.columns if name not in frame.columns]
    if missing:
        raise ValueError(f"{describe(table, station)}: the frame lacks the declared columns {', '.join(missing)}")
    stations = set(frame[PARTITION_COLUMN].dropna().unique()) if table.by_station else set()
    if stations - {station}:
        others = sorted(stations - {station})
        raise ValueError(f"{describe(table, station)}: the frame holds rows of other stations: {others}")
    schema = table.file_schema
    arrays = [pa.array(frame[field.name], from_pandas=True).cast(field.type) for field in schema]
    return pa.Table.from_arrays(arrays, schema=schema)


def to_frame(data: pa.Table, table: LakeTable, station: str | None = None) -> pd.DataFrame:
    """A lake table (with `station` as a column, or given for one station's file) as the DuckDB
    tables load: DATE as datetime64[us], the declared column order."""
    if table.by_station and station is not None:
        data = data.append_column(PARTITION_COLUMN, pa.array([station] * data.num_rows, pa.string()))
    for name, sql_type in table.columns.items():
        if sql_type == "DATE":
            data = data.set_column(data.schema.get_field_index(name), name, data[name].cast(pa.timestamp("us")))
    return data.select(list(table.columns)).to_pandas()


def row_days(data: pa.Table, table: LakeTable) -> pa.ChunkedArray:
    """The Paris day of every row."""
    return data[table.day_column].cast(pa.date32(), safe=False)


def whole_frame(data: pa.Table) -> pd.DataFrame:
    """An unpartitioned table as DuckDB loads it (plain `str` objects, not pandas' string dtype)."""
    return data.to_pandas(ignore_metadata=True)


def parquet_bytes(data: pa.Table) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(data, buffer, compression="snappy")
    return buffer.getvalue()


def months(days: Sequence[dt.date]) -> list[tuple[tuple[int, int], list[dt.date]]]:
    """The days grouped by (year, month), in order."""
    return [(ym, list(group)) for ym, group in groupby(sorted(days), key=lambda d: (d.year, d.month))]


def days_between(first: dt.date, last: dt.date) -> list[dt.date]:
    return [first + dt.timedelta(days=i) for i in range((last - first).days + 1)]


class LakeStore:
    def __init__(self, bucket: S3Bucket):
        self.bucket = bucket

    def write_days(
        self, table: LakeTable, station: str | None, days: Sequence[dt.date], frame: pd.DataFrame
    ) -> dict[str, int]:
        """Replace the rows of `days` with `frame`, each touched month file written once; returns
        the rows of every written file by key."""
        new = to_arrow(frame, table, station)
        new_days = row_days(new, table)
        outside = pc.invert(pc.is_in(new_days, pa.array(days, pa.date32())))
        if pc.any(outside).as_py():
            first = pc.min(pc.filter(new_days, outside)).as_py()
            raise ValueError(
                f"{describe(table, station)}: {pc.sum(outside).as_py()} rows are outside the partitions "
                f"{min(days)}…{max(days)} being written (first: {first})"
            )
        written = {}
        for (year, month), month_days in months(days):
            in_month = pc.and_(pc.equal(pc.year(new_days), year), pc.equal(pc.month(new_days), month))
            key = table.month_key(station, year, month)
            written[key] = self._merge_month(table, key, month_days, new.filter(in_month))
        return written

    def read_days(self, table: LakeTable, station: str | None, first: dt.date, last: dt.date) -> pa.Table:
        """One station's rows of the days `first`…`last`, reading only the month files they touch."""
        parts = []
        for (year, month), _ in months(days_between(first, last)):
            key = table.month_key(station, year, month)
            found = self.bucket.get(key)
            if found is not None:
                data = self._parse(found[0], key, table)
                day = row_days(data, table)
                parts.append(data.filter(pc.and_(pc.greater_equal(day, first), pc.less_equal(day, last))))
        return pa.concat_tables(parts) if parts else table.file_schema.empty_table()

    def write_whole(self, name: str, frame: pd.DataFrame) -> str:
        key = f"{name}/{FILE_NAME}"
        self.bucket.put(key, parquet_bytes(pa.Table.from_pandas(frame, preserve_index=False)))
        return key

    def read_whole(self, name: str) -> pd.DataFrame:
        key = f"{name}/{FILE_NAME}"
        found = self.bucket.get(key)
        if found is None:
            raise FileNotFoundError(f"{self.bucket.uri(key)} does not exist: materialise {name} first")
        return whole_frame(pq.read_table(pa.BufferReader(found[0])))

    def _merge_month(self, table: LakeTable, key: str, days: list[dt.date], rows: pa.Table) -> int:
        attempt = 1
        while True:
            current = self.bucket.get(key)
            kept = []
            if current is not None:
                old = self._parse(current[0], key, table)
                kept.append(old.filter(pc.invert(pc.is_in(row_days(old, table), pa.array(days, pa.date32())))))
            merged = pa.concat_tables([*kept, rows]).sort_by([(name, "ascending") for name in table.order_columns])
            try:
                self.bucket.swap(key, parquet_bytes(merged), None if current is None else current[1])
                return merged.num_rows
            except ConcurrentChange as exc:
                if attempt == SWAP_ATTEMPTS:
                    raise ConcurrentChange(
                        f"{self.bucket.uri(key)} kept changing during {SWAP_ATTEMPTS} read–merge–write attempts: "
                        "is another run writing the same station-month?"
                    ) from exc
                attempt += 1

    def _parse(self, body: bytes, key: str, table: LakeTable) -> pa.Table:
        data = pq.read_table(pa.BufferReader(body))
        if not data.schema.equals(table.file_schema, check_metadata=False):
            raise S3StorageError(
                f"{self.bucket.uri(key)} does not have the declared {table.name} schema "
                f"(found {data.schema.names}); rewrite it from raw"
            )
        return data


def read_lake(
    table_name: str,
    bucket: str,
    endpoint_url: str | None,
    stations: Sequence[str],
    first: dt.date | None,
    last: dt.date | None,
) -> pd.DataFrame:
    """Stations' rows between two Paris days from the lake: only the stations' folders are listed,
    and only the month files that can hold the days are read, each in one GET. A writer replaces a
    file with one PUT, so a read sees the old file or the new one; pyarrow's ranged reads of a file
    could mix the two."""
    table = lake_table(table_name)
    filesystem = arrow_filesystem(endpoint_url, bucket)
    parts = []
    for station in stations:
        folder = arrow_fs.FileSelector(f"{bucket}/{table.prefix(station)}".rstrip("/"), allow_not_found=True, recursive=True)
        for info in filesystem.get_file_info(folder):
            month = MONTH_FILE.search(info.path)
            if info.type != arrow_fs.FileType.File or month is None:
                continue
            year_month = (int(month["year"]), int(month["month"]))
            if (first and year_month < (first.year, first.month)) or (last and year_month > (last.year, last.month)):
                continue
            data = _read_whole_file(filesystem, info.path)
            days = row_days(data, table)
            keep = pc.and_(pc.greater_equal(days, first or dt.date.min), pc.less_equal(days, last or dt.date.max))
            data = data.filter(keep).select(table.file_schema.names)
            parts.append(data.append_column(PARTITION_COLUMN, pa.array([station] * data.num_rows, pa.string())))
    schema = table.file_schema.append(pa.field(PARTITION_COLUMN, pa.string()))
    rows = pa.concat_tables(parts) if parts else schema.empty_table()
    order = [(name, "ascending") for name in (PARTITION_COLUMN, *table.order_columns)]
    return to_frame(rows.sort_by(order), table)


MONTH_FILE = re.compile(rf"/year=(?P<year>[0-9]{{4}})/month=(?P<month>[0-9]{{2}})/{re.escape(FILE_NAME)}$")


def _read_whole_file(filesystem: arrow_fs.FileSystem, path: str) -> pa.Table:
    with filesystem.open_input_stream(path) as stream:
        return pq.read_table(pa.BufferReader(stream.readall()))


def read_whole(name: str, bucket: str, endpoint_url: str | None) -> pd.DataFrame:
    """An unpartitioned table of the lake (`stations`)."""
    path = f"{bucket}/{name}/{FILE_NAME}"
    try:
        return whole_frame(_read_whole_file(arrow_filesystem(endpoint_url, bucket), path))
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"s3://{path} does not exist: materialise {name} first") from exc


def arrow_filesystem(endpoint_url: str | None, bucket: str | None = None) -> arrow_fs.S3FileSystem:
    """pyarrow's S3 client with the credentials and region that boto3's standard chain resolves,
    so that readers and writers agree and nothing probes further; checks that `bucket` exists."""
    session = boto3.session.Session()
    credentials = session.get_credentials()
    if credentials is None:
        raise S3StorageError(f"no AWS credentials found to read the lake ({CREDENTIALS_HINT})")
    frozen = credentials.get_frozen_credentials()
    options = {}
    if endpoint_url:
        parts = urlsplit(endpoint_url)
        options = {"endpoint_override": parts.netloc + parts.path.rstrip("/"), "scheme": parts.scheme or "https"}
    filesystem = arrow_fs.S3FileSystem(
        access_key=frozen.access_key,
        secret_key=frozen.secret_key,
        session_token=frozen.token,
        region=session.region_name or "us-east-1",
        **options,
    )
    if bucket is not None and filesystem.get_file_info(bucket).type == arrow_fs.FileType.NotFound:
        where = endpoint_url or "AWS"
        raise S3StorageError(f"S3 bucket {bucket!r} ({LAKE_BUCKET_SETTING}) does not exist at {where}: "
                             "materialise some assets first, or check the settings")
    return filesystem


class ParquetLakeIOManager(ConfigurableIOManager):
    """Stores tables as Parquet in an S3 bucket, one file per station-month for the clean and daily
    tables, per month for other partitioned ones, one file for unpartitioned ones (see `lake.py`);
    handles single-run partition ranges and partition windows on input."""

    s3: S3Resource
    bucket: str
    create_bucket: bool = False

    _store: LakeStore | None = PrivateAttr(default=None)

    def store(self) -> LakeStore:
        if self._store is None:
            bucket = S3Bucket(self.s3.get_client(), self.bucket, LAKE_BUCKET_SETTING, self.create_bucket)
            self._store = LakeStore(bucket.ensure())
        return self._store

    def handle_output(self, context: OutputContext, obj: pd.DataFrame) -> None:
        store, path = self.store(), context.asset_key.path
        if not context.has_asset_partitions:
            key = store.write_whole("/".join(path), obj)
            context.add_output_metadata({"location": MetadataValue.path(store.bucket.uri(key))})
            return
        table, station = table_of_asset(path, context.definition_metadata)
        days = [dt.date.fromisoformat(key) for key in context.asset_partition_keys]
        written = store.write_days(table, station, days, obj)
        context.add_output_metadata(
            {
                "location": MetadataValue.path(store.bucket.uri(table.prefix(station))),
                "files_written": MetadataValue.md(
                    "| file | rows |\n|---|---|\n" + "\n".join(f"| `{key}` | {rows:,} |" for key, rows in written.items())
                ),
                "dagster/column_schema": table_schema(table.columns),
            }
        )

    def load_input(self, context: InputContext) -> pd.DataFrame:
        store, path = self.store(), context.asset_key.path
        if not context.has_asset_partitions:
            return store.read_whole("/".join(path))
        upstream = context.upstream_output.definition_metadata if context.upstream_output else {}
        table, station = table_of_asset(path, upstream)
        if not context.asset_partition_keys:  # the whole window lies before the first partition
            return to_frame(table.file_schema.empty_table(), table, station)
        window = context.asset_partitions_time_window
        first, last = window.start.date(), (window.end - dt.timedelta(days=1)).date()
        return to_frame(store.read_days(table, station, first, last), table, station)
