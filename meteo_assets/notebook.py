"""Load the tables in a notebook, in one call, from the storage the pipeline writes to.

    import meteo_assets
    df = meteo_assets.load_daily(stations=["st42_toulouse_parc_compans_cafarelli"], start="2020-10-01", end="2020-10-31")
    obs = meteo_assets.load_clean(stations=42, start="2020-10-25", end="2020-10-25")
    uhi = meteo_assets.load_network_daily(start="2020-07-01", end="2020-08-31")   # every station, LCZ, heat-island index
    meta = meteo_assets.load_stations()
    df = meteo_assets.load("daily/42", start="2020-10-01", end="2020-10-31")      # any asset by its key
    obs["hour"] = meteo_assets.local_time(obs["observed_at"]).dt.hour             # Paris hour of each observation

Stations may be given as keys, dataset ids or numbers (None = every configured station); `start`
and `end` are Paris days, both inclusive, as strings, dates or datetimes. The loaders read where
the pipeline writes (the same settings): with `METEO_STORAGE=s3`, the Parquet lake as a pyarrow
dataset, listing only the stations' folders and opening only the months that hold the days;
otherwise the DuckDB file, opened read-only for the time of one query and closed, so a notebook
never holds the lock a running pipeline needs. Both give the same frames. While a run writes, a
read waits (up to a minute) for the write under way and then sees the new version whole: a day is
all its rows or none of them, never half.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Iterable, Sequence
from typing import TypeVar

import duckdb
import pandas as pd

from meteo_assets.config import Network, Settings, load_network
from meteo_assets.storage.write_intent import waiting_for, write_announced
from meteo_assets.transform.contract import (
    CLEAN_COLUMNS,
    DAILY_COLUMNS,
    PARIS,
    empty_clean_frame,
    empty_daily_frame,
    pandas_dtypes,
)
from meteo_assets.transform.network import NETWORK_DAILY_COLUMNS

DateLike = str | dt.date | dt.datetime | None
StationRefs = str | int | Iterable[str | int] | None
AssetRef = str | Sequence[str]  # "daily/st42_…", ["daily", "st42_…"], or a Dagster AssetKey
LOCK_WAIT_SECONDS = 60.0
LAKE_READ_ATTEMPTS = 5
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

        return _from_lake(lambda: lake.read_whole("stations", settings.lake_bucket, settings.s3_endpoint_url)).sort_values(
            "station", ignore_index=True
        )

    def fetch(conn: duckdb.DuckDBPyConnection) -> pd.DataFrame:
        if not _tables(conn, "main") & {"stations"}:
            raise FileNotFoundError(f"stations is not materialised in {settings.duckdb_path}: run `make run` "
                                    "(or the station_catalogue job) first")
        return conn.execute('SELECT * FROM "main"."stations" ORDER BY station').fetchdf()

    return _read(settings, fetch)


def load_network_daily(stations: StationRefs = None, start: DateLike = None, end: DateLike = None) -> pd.DataFrame:
    """`network/daily`: every station's daily row with its local climate zone (`lcz`) and heat-island
    index (mean temperature minus the network median of the day), ordered by day then station.

    `stations` None: every station in the table. Days that `network/daily` has not been
    materialised for are absent (the `network_daily_when_stations_in` sensor fills them in).
    """
    settings = Settings.from_env()
    network = load_network(settings.datasets_file)
    keys = None if stations is None else _station_keys(network, stations)
    first, last = _days(start, end)
    if settings.storage == "s3":
        frame = _read_lake_network(settings, network, first, last)
        if keys is not None:
            frame = frame[frame["station"].isin(keys)].reset_index(drop=True)
        return frame
    where, params = _day_window("date", first, last)
    if keys is not None:
        where.append(f"station IN ({', '.join('?' for _ in keys)})")
        params += keys
    condition = f" WHERE {' AND '.join(where)}" if where else ""
    column_list = ", ".join(f'"{c}"' for c in NETWORK_DAILY_COLUMNS)

    def fetch(conn: duckdb.DuckDBPyConnection) -> pd.DataFrame:
        if not _tables(conn, "network") & {"daily"}:
            return _empty(NETWORK_DAILY_COLUMNS)
        # the condition holds placeholders only; values are bound parameters
        query = f'SELECT {column_list} FROM "network"."daily"{condition} ORDER BY date, station'  # noqa: S608
        return conn.execute(query, params).fetchdf()

    return _read(settings, fetch)


def load(asset: AssetRef, start: DateLike = None, end: DateLike = None) -> pd.DataFrame | dict[dt.date, dict[str, bytes]]:
    """Any asset by its key, e.g. `load("daily/42", start="2020-10-01", end="2020-10-31")`.

    `clean/<station>`, `daily/<station>` (the station as key, dataset id or number; `clean` or
    `daily` alone: every station), `network/daily` and `stations` give the frames of the loaders
    above. `raw/<station>` gives the portal's bytes as stored, `{day: {dataset id: CSV bytes}}`, for
    the days `start`…`end` (`end` defaults to `start`); a day not materialised raises
    FileNotFoundError naming it. The key may also be a list of its parts or a Dagster `AssetKey`.
    """
    path = _asset_path(asset)
    name = "/".join(path)
    if path == ["stations"]:
        if start is not None or end is not None:
            raise ValueError("stations is one table, not daily partitions: call load('stations') without start/end")
        return load_stations()
    if path == ["network", "daily"]:
        return load_network_daily(start=start, end=end)
    if path[0] in ("clean", "daily") and len(path) <= 2:
        loader = load_daily if path[0] == "daily" else load_clean
        return loader(stations=path[1] if len(path) == 2 else None, start=start, end=end)
    if path[0] == "raw" and len(path) == 2:
        return _load_raw(path[1], start, end)
    if path == ["raw"]:
        raise ValueError("raw is kept per station: load('raw/<station>', start=…, end=…)")
    if path == ["dashboard"]:
        raise ValueError("dashboard is a static site, not a table: open dashboard/index.html in METEO_DATA_DIR "
                         "(`make dashboard` rebuilds it)")
    raise KeyError(f"no asset {name!r}: load takes clean/<station>, daily/<station>, raw/<station>, clean, daily, "
                   "network/daily or stations (a station as key, dataset id or number)")


def local_time(values):
    """UTC instants (the `observed_at` column, an index, one timestamp) as tz-aware Europe/Paris times.

    `local_time(obs["observed_at"]).dt.hour` is the Paris hour of each observation, unambiguous on
    the night clocks go back (the tables' naive `local_time` column repeats 02:00–03:00 then).
    Naive values are taken as UTC.
    """
    times = pd.to_datetime(values, utc=True)
    return times.dt.tz_convert(PARIS) if isinstance(times, pd.Series) else times.tz_convert(PARIS)


def _load(schema, columns, empty_frame, day_column, stations, start, end) -> pd.DataFrame:
    settings = Settings.from_env()
    keys = _station_keys(load_network(settings.datasets_file), stations)
    first, last = _days(start, end)
    if settings.storage == "s3":
        from meteo_assets.storage import lake  # imported on use: it brings Dagster and pyarrow's S3 client

        return _from_lake(lambda: lake.read_lake(schema, settings.lake_bucket, settings.s3_endpoint_url, keys, first, last))
    where, params = _day_window(day_column, first, last)
    condition = f" WHERE {' AND '.join(where)}" if where else ""
    column_list = ", ".join(f'"{c}"' for c in columns)
    order = "station, date" if schema == "daily" else "station, observed_at"

    def fetch(conn: duckdb.DuckDBPyConnection) -> pd.DataFrame | None:
        existing = _tables(conn, schema)
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
    with waiting_for(path):  # a writer keeping the file for its next write lets it go after this one
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


def _from_lake(read: Callable[[], T]) -> T:
    """Read the lake again when a file came back torn. Each file is read in one GET, which S3 serves
    whole even while a writer replaces the file; S3-compatible servers that replace objects in
    place (moto, which the tests use, and some gateways) can serve a half-written body."""
    import pyarrow as pa

    for attempt in range(1, LAKE_READ_ATTEMPTS):
        try:
            return read()
        except (pa.ArrowInvalid, OSError):
            time.sleep(0.1 * attempt)
    return read()


def _station_keys(network: Network, stations: StationRefs) -> list[str]:
    if stations is None:
        return [s.key for s in network.stations]
    if isinstance(stations, (str, int)):
        stations = [stations]
    return [network.station(ref).key for ref in stations]


def _day(value: DateLike) -> dt.date | None:
    """The Paris day of a date, a datetime (an aware one is converted to Paris time first) or an ISO string."""
    if value is None or isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return value
    if isinstance(value, dt.datetime):
        return (value.astimezone(PARIS) if value.tzinfo is not None else value).date()
    return dt.date.fromisoformat(str(value)[:10])


def _days(start: DateLike, end: DateLike) -> tuple[dt.date | None, dt.date | None]:
    first, last = _day(start), _day(end)
    if first is not None and last is not None and last < first:
        raise ValueError(f"end {last} is before start {first} (both are Paris days, end inclusive)")
    return first, last


def _day_window(day_column: str, first: dt.date | None, last: dt.date | None) -> tuple[list[str], list]:
    """SQL conditions (with their parameters) keeping the rows whose Paris day is in `first`…`last`."""
    where, params = [], []
    if first is not None:
        where.append(f'"{day_column}" >= ?')
        params.append(dt.datetime.combine(first, dt.time()))
    if last is not None:
        where.append(f'"{day_column}" < ?')
        params.append(dt.datetime.combine(last + dt.timedelta(days=1), dt.time()))
    return where, params


def _tables(conn: duckdb.DuckDBPyConnection, schema: str) -> set[str]:
    query = "SELECT table_name FROM information_schema.tables WHERE table_schema = ?"
    return {name for (name,) in conn.execute(query, [schema]).fetchall()}


def _empty(columns: dict[str, str]) -> pd.DataFrame:
    return pd.DataFrame({name: pd.Series(dtype=dtype) for name, dtype in pandas_dtypes(columns).items()})


def _asset_path(asset: AssetRef) -> list[str]:
    path = getattr(asset, "path", asset)  # a Dagster AssetKey
    parts = path.strip().strip("/").split("/") if isinstance(path, str) else [str(part) for part in path]
    if not parts or not all(parts):
        raise KeyError(f"not an asset key: {asset!r}")
    return parts


def _load_raw(station: str, start: DateLike, end: DateLike) -> dict[dt.date, dict[str, bytes]]:
    first, last = _days(start, end)
    if first is None:
        raise ValueError(f"raw/{station} is stored one folder per Paris day: give start= (and end=, default start)")
    settings = Settings.from_env()
    key = load_network(settings.datasets_file).station(station).key
    days = [first + dt.timedelta(days=i) for i in range(((last or first) - first).days + 1)]
    if settings.storage == "s3":
        from meteo_assets.resources import build_resources  # imported on use: it brings Dagster and boto3

        store = build_resources(settings)["raw_io_manager"].store()
    else:
        from meteo_assets.storage.raw_files import RawStore

        store = RawStore(settings.raw_dir)
    return store.read_days(key, days)


def _read_lake_network(settings: Settings, network: Network, first: dt.date | None, last: dt.date | None) -> pd.DataFrame:
    """`network/daily` from the lake: the month files of the days asked for (by default, from the
    network's first day to today), read by the lake IO manager's own store."""
    from meteo_assets.resources import build_resources  # imported on use: it brings Dagster and boto3
    from meteo_assets.storage import lake
    from meteo_assets.storage.duckdb_io import table_schema

    table, _ = lake.table_of_asset(
        ["network", "daily"], {"partition_expr": "date", "dagster/column_schema": table_schema(NETWORK_DAILY_COLUMNS)}
    )
    first = first or min([network.start_date, *(s.start_date for s in network.stations)])
    last = last or dt.datetime.now(PARIS).date()
    if last < first:
        return _empty(NETWORK_DAILY_COLUMNS)
    data = build_resources(settings)["io_manager"].store().read_days(table, None, first, last)
    return lake.to_frame(data, table).sort_values(["date", "station"], ignore_index=True)
