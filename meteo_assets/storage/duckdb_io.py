"""The DuckDB IO manager, made exact: declared schemas and one transaction per write.

Dagster's `DuckDBIOManager` deletes the partition window and inserts the new rows as separate
autocommitted statements, and lets the first frame decide the column types. Here the contract's
tables are created from their declared schema before anything else, and the delete + insert of a
window commit together, so a failed run leaves the previous partition intact and an empty or
all-null partition is an ordinary one.
"""

from __future__ import annotations

import atexit
import os
import random
import re
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pandas as pd
from dagster import InputContext, OutputContext, TableColumn, TableSchema, TimeWindow
from dagster._core.storage.db_io_manager import DbIOManager, DbTypeHandler, TableSlice
from dagster._utils.backoff import backoff, exponential_delay_generator
from dagster_duckdb import DuckDBIOManager
from dagster_duckdb.io_manager import DuckDbClient

from meteo_assets.config import STATION_KEY
from meteo_assets.storage.preflight import StorageUnavailable, ensure_writable
from meteo_assets.storage.write_intent import announced_write, someone_waits
from meteo_assets.transform.contract import CLEAN_COLUMNS, DAILY_COLUMNS
from meteo_assets.transform.network import NETWORK_DAILY_COLUMNS

# schema name in DuckDB → declared columns of every table in it
DECLARED_SCHEMAS: dict[str, Mapping[str, str]] = {
    "clean": CLEAN_COLUMNS,
    "daily": DAILY_COLUMNS,
    "network": NETWORK_DAILY_COLUMNS,
}
STATION_SCHEMAS = ("clean", "daily")  # one table per station, named by its key


SQL_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")  # schema and table names: nothing to quote, nothing to inject
LOCK_WAIT_RETRIES = 10  # ~100 s of waiting for another process's hold on the file (0.1 s doubling, jittered)


class DatabaseLocked(duckdb.IOException):
    """Another process holds the DuckDB file (a run, or a notebook connection left open)."""


def declared_columns(schema: str) -> Mapping[str, str] | None:
    return DECLARED_SCHEMAS.get(schema)


def check_table_name(schema: str, table: str) -> None:
    """Names come from asset keys (station keys from datasets.toml): refuse anything but plain names."""
    if not SQL_NAME.match(schema) or not SQL_NAME.match(table):
        raise ValueError(f"refusing DuckDB table {schema!r}.{table!r}: names must match {SQL_NAME.pattern}")
    if schema in STATION_SCHEMAS and not STATION_KEY.match(table):
        raise ValueError(f"refusing DuckDB table {schema}.{table}: tables of {schema} are station keys")


# The file is ATTACHed to an in-memory DuckDB kept for the life of the process: opening the file as
# a database of its own costs ~25 ms of DuckDB start-up, where ATTACH costs ~8 ms (a file of 100
# tables). After a write the file stays attached, its write intent held, for LINGER_SECONDS: the
# DuckDB steps of a run follow one another (a layer's 50 stations) and share one attachment and
# one checkpoint (a one-day write of a large table: ~32-38 ms with its own ATTACH and DETACH, which
# checkpoints; ~14 ms attached). It is detached after a write for which someone waits (a reader, or
# another writer: `write_intent.py`), when no write has used it for LINGER_SECONDS, when a write
# fails, when the run ends (the IO manager's teardown) and when the process exits.
TARGET = "target"
LINGER_SECONDS = 0.25
_hosts: dict[tuple, duckdb.DuckDBPyConnection] = {}
_hosts_lock = threading.Lock()  # one attachment at a time in a process; the pool orders processes


@dataclass
class _Attachment:
    database: str
    host: duckdb.DuckDBPyConnection
    intent: ExitStack  # holds the write intent (`write_intent.py`) while attached
    timer: threading.Timer | None = None


_attached: _Attachment | None = None


def _host(config: Mapping[str, object]) -> duckdb.DuckDBPyConnection:
    key = (os.getpid(), tuple(sorted((k, str(v)) for k, v in config.items())))
    if key not in _hosts:
        _hosts[key] = duckdb.connect(":memory:", config=dict(config))
    return _hosts[key]


def _drop_hosts() -> None:
    """Closing the in-memory database closes every file attached to it: the lock is released for sure."""
    for host in _hosts.values():
        host.close()
    _hosts.clear()


def _detach() -> None:
    """Detach the file kept attached and drop its write intent (`_hosts_lock` held)."""
    global _attached
    attached, _attached = _attached, None
    if attached is None:
        return
    if attached.timer is not None:
        attached.timer.cancel()
    try:
        attached.host.execute(f"DETACH {TARGET}")
    except duckdb.Error:  # e.g. no room for the checkpoint: the committed log is replayed on next open
        _drop_hosts()
    finally:
        attached.intent.close()


def release_duckdb_files() -> None:
    """Detach the file the last write kept attached, now (the end of a run, of the process)."""
    with _hosts_lock:
        _detach()


atexit.register(release_duckdb_files)


def _keep(attached: _Attachment) -> None:
    """Keep the file attached for the next write, at most LINGER_SECONDS unused."""

    def unused() -> None:
        with _hosts_lock:
            if _attached is attached and attached.timer is timer:
                _detach()

    timer = threading.Timer(LINGER_SECONDS, unused)
    timer.daemon = True
    attached.timer = timer
    timer.start()


@contextmanager
def connect_for_write(database: str, config: Mapping[str, object]) -> Iterator[duckdb.DuckDBPyConnection]:
    """The file, read-write: announced to readers, then attached, waiting with jittered backoff while
    another process holds it (or the attachment the previous write kept).

    Any other failure (a read-only or missing folder…) is raised at once: waiting would not help.
    """
    global _attached
    quoted = database.replace("'", "''")

    def attempt() -> None:
        try:
            host.execute(f"ATTACH '{quoted}' AS {TARGET}")
        except duckdb.IOException as exc:
            if "could not set lock" in str(exc).lower():
                raise DatabaseLocked(str(exc)) from exc
            raise

    # jitter spreads out processes that wait for the same file; it is not a security measure
    delays = (d * (0.5 + random.random()) for d in exponential_delay_generator())  # noqa: S311
    with _hosts_lock:
        host = _host(config)
        if _attached is not None and (_attached.database, _attached.host) != (database, host):
            _detach()
        if _attached is None:
            with ExitStack() as intent:
                intent.enter_context(announced_write(database))  # readers (notebooks) keep away until detached
                backoff(fn=attempt, retry_on=(DatabaseLocked,), max_retries=LOCK_WAIT_RETRIES, delay_generator=delays)
                _attached = _Attachment(database, host, intent.pop_all())
        elif _attached.timer is not None:
            _attached.timer.cancel()
            _attached.timer = None
        done = False
        try:
            conn = host.cursor()
            try:
                conn.execute(f"USE {TARGET}")
                yield conn
                done = True
            finally:
                conn.close()
        finally:
            if done and not someone_waits(database):
                _keep(_attached)
            else:
                _detach()


def describe_slice(table_slice: TableSlice) -> str:
    """`clean.st42_x, local_time in [2020-10-20 00:00+02:00, 2020-10-25 00:00+02:00)` for messages."""
    windows = [f"{d.partition_expr} in [{d.partitions.start:%Y-%m-%d %H:%M%z}, {d.partitions.end:%Y-%m-%d %H:%M%z})"
               for d in table_slice.partition_dimensions or [] if isinstance(d.partitions, TimeWindow)]
    return ", ".join([f"{table_slice.schema}.{table_slice.table}", *windows])


def create_table_sql(schema: str, table: str, columns: Mapping[str, str]) -> str:
    body = ", ".join(f'"{name}" {sql_type}' for name, sql_type in columns.items())
    return f'CREATE TABLE IF NOT EXISTS "{schema}"."{table}" ({body})'


def table_schema(columns: Mapping[str, str]) -> TableSchema:
    return TableSchema(columns=[TableColumn(name=name, type=sql_type) for name, sql_type in columns.items()])


@contextmanager
def _transaction(
    database: str, connection_config: Mapping[str, object], table_slice: TableSlice
) -> Iterator[duckdb.DuckDBPyConnection]:
    """One transaction on the file, in UTC (Dagster's client leaves the connection, and the file
    lock, open when a write fails)."""
    with connect_for_write(database, {"custom_user_agent": "dagster", **connection_config}) as conn:
        conn.execute("SET TimeZone = 'UTC'")
        conn.execute("BEGIN TRANSACTION")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        try:
            conn.execute("COMMIT")
        except duckdb.Error as exc:  # e.g. a full disk: the log cannot be written
            raise StorageUnavailable(
                f"{describe_slice(table_slice)} in {database}: the write could not be committed ({exc}); "
                "nothing of it was kept, the previous version is intact"
            ) from exc


def read_slice(database: str, table_slice: TableSlice) -> pd.DataFrame:
    """The rows of `table_slice` as a step's input receives them from the IO manager (its default
    connection config, as `resources.py` sets it up), for a step's work started ahead of it
    (`assets/ahead.py`)."""
    check_table_name(table_slice.schema, table_slice.table)
    with _transaction(database, {}, table_slice) as conn:
        return ContractFrameHandler.select(table_slice, conn)


class TransactionalDuckDbClient(DuckDbClient):
    """Runs each IO-manager call in one transaction, with contract tables created up front."""

    @staticmethod
    @contextmanager
    def connect(context, table_slice) -> Iterator[duckdb.DuckDBPyConnection]:
        check_table_name(table_slice.schema, table_slice.table)
        database = context.resource_config["database"]
        if isinstance(context, OutputContext):
            ensure_writable(Path(database).parent, f"{table_slice.schema}.{table_slice.table} in {database}")
        with _transaction(database, context.resource_config["connection_config"], table_slice) as conn:
            yield conn

    @staticmethod
    def ensure_schema_exists(context: OutputContext, table_slice: TableSlice, connection) -> None:
        connection.execute(f'CREATE SCHEMA IF NOT EXISTS "{table_slice.schema}"')
        columns = declared_columns(table_slice.schema)
        if columns is not None:
            connection.execute(create_table_sql(table_slice.schema, table_slice.table, columns))

    @staticmethod
    def delete_table_slice(context: OutputContext, table_slice: TableSlice, connection) -> None:
        if declared_columns(table_slice.schema) is None and not table_slice.partition_dimensions:
            connection.execute(f'DROP TABLE IF EXISTS "{table_slice.schema}"."{table_slice.table}"')
            return
        DuckDbClient.delete_table_slice(context, table_slice, connection)


class ContractFrameHandler(DbTypeHandler[pd.DataFrame]):
    """Inserts frames by column name into the declared tables (any frame for other tables)."""

    def handle_output(self, context: OutputContext, table_slice: TableSlice, obj: pd.DataFrame, connection):
        target = f'"{table_slice.schema}"."{table_slice.table}"'
        columns = declared_columns(table_slice.schema)
        connection.register("frame", obj)
        try:
            # the names were checked by check_table_name when the connection was opened
            if columns is None:
                connection.execute(f"CREATE TABLE IF NOT EXISTS {target} AS SELECT * FROM frame LIMIT 0")  # noqa: S608
            connection.execute(f"INSERT INTO {target} BY NAME SELECT * FROM frame")  # noqa: S608
        finally:
            connection.unregister("frame")
        if columns is not None:
            return {}  # the declared schema is already on the asset definition
        return {"dagster/column_schema": TableSchema(columns=[TableColumn(name=str(n), type=str(t)) for n, t in obj.dtypes.items()])}

    def load_input(self, context: InputContext, table_slice: TableSlice, connection) -> pd.DataFrame:
        if table_slice.partition_dimensions and len(context.asset_partition_keys) == 0:
            return pd.DataFrame(columns=list(declared_columns(table_slice.schema) or []))
        return self.select(table_slice, connection)

    @staticmethod
    def select(table_slice: TableSlice, connection) -> pd.DataFrame:
        return connection.execute(DuckDbClient.get_select_statement(table_slice)).fetchdf()

    @property
    def supported_types(self) -> Sequence[type]:
        return [pd.DataFrame]


class MeteoDuckDBIOManager(DuckDBIOManager):
    """DuckDB IO manager for the clean and daily tables (see the module docstring)."""

    @staticmethod
    def type_handlers() -> Sequence[DbTypeHandler]:
        return [ContractFrameHandler()]

    @staticmethod
    def default_load_type() -> type | None:
        return pd.DataFrame

    def teardown_after_execution(self, context) -> None:
        release_duckdb_files()  # the run is over: none of its steps will use the file kept attached

    def create_io_manager(self, context) -> DbIOManager:
        return DbIOManager(
            db_client=TransactionalDuckDbClient(),
            database=self.database,
            schema=self.schema_,
            type_handlers=self.type_handlers(),
            default_load_type=self.default_load_type(),
            io_manager_name="MeteoDuckDBIOManager",
        )
