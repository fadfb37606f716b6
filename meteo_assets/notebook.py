"""Load the tables in a notebook, in one call, from the storage the pipeline writes to.

    import meteo_assets
    df = meteo_assets.load_daily(stations=["st42_toulouse_parc_compans_cafarelli"], start="2020-10-01", end="2020-10-31")
    obs = meteo_assets.load_clean(stations=42, start="2020-10-25", end="2020-10-25")

Stations may be given as keys, dataset ids or numbers (None = every configured station); `start`
and `end` are Paris days, both inclusive, as strings, dates or datetimes. The loaders read where
the pipeline writes (the same settings): with `METEO_STORAGE=s3`, the Parquet lake as a pyarrow
dataset, listing only the stations' folders and opening only the months that hold the days;
otherwise the DuckDB file, opened read-only for the time of one query and closed, so a notebook
never holds the lock a running pipeline needs. Both give the same frames.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Iterable
from typing import TypeVar

import duckdb
import pandas as pd

from meteo_assets.config import Network, Settings, load_network
from meteo_assets.storage.write_intent import write_announced
from meteo_assets.transform.contract import CLEAN_COLUMNS, DAILY_COLUMNS, empty_clean_frame, empty_daily_frame

DateLike = str | dt.date | dt.datetime | None
StationRefs = str | int | Iterable[str | int] | None
LOCK_WAIT_SECONDS = 60.0
T = TypeVar("T")


def load_daily(stations: StationRefs = None, start: DateLike = None, end: DateLike = None) -> pd.DataFrame:
    """Daily summaries (one row per station and Paris day) between `start` and `end` inclusive."""
    return _load("daily", DAILY_COLUMNS, empty_daily_frame, "date", stations, start, end)


def load_clean(stations: StationRefs = None, start: DateLike = None, end: DateLike = None) -> pd.DataFrame:
    """Clean 15-minute observations whose Paris day is between `start` and `end` inclusive."""
    return _load("clean", CLEAN_COLUMNS, empty_clean_frame, "local_time", stations, start, end)


def load_stations() -> pd.DataFrame:
    """The station catalogue (positions, altitude, local climate zone) as materialised by `stations`."""
    settings = Settings.from_env()
    if settings.storage == "s3":
        from meteo_assets.storage import lake  # imported on use: it brings Dagster and pyarrow's S3 client

        return lake.read_whole("stations", settings.lake_bucket, settings.s3_endpoint_url).sort_values(
            "station", ignore_index=True
        )
    return _read(settings, lambda conn: conn.execute('SELECT * FROM "main"."stations" ORDER BY station').fetchdf())


def _load(schema, columns, empty_frame, day_column, stations, start, end) -> pd.DataFrame:
    settings = Settings.from_env()
    keys = _station_keys(load_network(settings.datasets_file), stations)
    first, last = _day(start), _day(end)
    if settings.storage == "s3":
        from meteo_assets.storage import lake  # imported on use: it brings Dagster and pyarrow's S3 client

        return lake.read_lake(schema, settings.lake_bucket, settings.s3_endpoint_url, keys, first, last)
    where, params = [], []
    if first is not None:
        where.append(f'"{day_column}" >= ?')
        params.append(dt.datetime.combine(first, dt.time()))
    if last is not None:
        where.append(f'"{day_column}" < ?')
        params.append(dt.datetime.combine(last + dt.timedelta(days=1), dt.time()))
    condition = f" WHERE {' AND '.join(where)}" if where else ""
    column_list = ", ".join(f'"{c}"' for c in columns)
    order = "station, date" if schema == "daily" else "station, observed_at"

    def fetch(conn: duckdb.DuckDBPyConnection) -> pd.DataFrame | None:
        existing = {
            name
            for (name,) in conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = ?", [schema]
            ).fetchall()
        }
        # table names are station keys validated by load_network; values are bound parameters
        parts = [f'SELECT {column_list} FROM "{schema}"."{k}"{condition}' for k in keys if k in existing]  # noqa: S608
        if not parts:
            return None
        return conn.execute(" UNION ALL ".join(parts) + f" ORDER BY {order}", params * len(parts)).fetchdf()

    frame = _read(settings, fetch)
    return empty_frame() if frame is None else frame


def _read(settings: Settings, fetch: Callable[[duckdb.DuckDBPyConnection], T]) -> T:
    """Run `fetch` on a short-lived read-only connection, keeping away while a writer has announced
    itself or holds the file (see `storage/write_intent.py`), so a run is never starved by reads."""
    path = settings.duckdb_path
    if not path.exists():
        raise FileNotFoundError(f"no database at {path}: materialise some assets first (make run), or set METEO_DATA_DIR")
    deadline = time.monotonic() + LOCK_WAIT_SECONDS
    delay = 0.02
    while True:
        if not write_announced(path):
            try:
                with duckdb.connect(str(path), read_only=True) as conn:
                    conn.execute("SET TimeZone = 'UTC'")  # timestamps come back as UTC, whatever the machine's zone
                    return fetch(conn)
            except duckdb.IOException as exc:
                if "lock" not in str(exc).lower():
                    raise
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} has been busy with writes for over {LOCK_WAIT_SECONDS:.0f} s; try again")
        time.sleep(delay)
        delay = min(delay * 2, 0.25)  # short: a run leaves the file free between its writes


def _station_keys(network: Network, stations: StationRefs) -> list[str]:
    if stations is None:
        return [s.key for s in network.stations]
    if isinstance(stations, (str, int)):
        stations = [stations]
    return [network.station(ref).key for ref in stations]


def _day(value: DateLike) -> dt.date | None:
    if value is None or isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return value
    if isinstance(value, dt.datetime):
        return value.date()
    return dt.date.fromisoformat(str(value)[:10])
