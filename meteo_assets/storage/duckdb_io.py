"""The DuckDB IO manager, made exact: declared schemas and one transaction per write.

Dagster's `DuckDBIOManager` deletes the partition window and inserts the new rows as separate
autocommitted statements, and lets the first frame decide the column types. Here the contract's
tables are created from their declared schema before anything else, and the delete + insert of a
window commit together, so a failed run leaves the previous partition intact and an empty or
all-null partition is an ordinary one.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager

import duckdb
import pandas as pd
from dagster import InputContext, OutputContext, TableColumn, TableSchema
from dagster._core.storage.db_io_manager import DbIOManager, DbTypeHandler, TableSlice
from dagster._utils.backoff import backoff
from dagster_duckdb import DuckDBIOManager
from dagster_duckdb.io_manager import DuckDbClient

from meteo_assets.transform.contract import CLEAN_COLUMNS, DAILY_COLUMNS

# schema name in DuckDB → declared columns of every table in it
DECLARED_SCHEMAS: dict[str, Mapping[str, str]] = {"clean": CLEAN_COLUMNS, "daily": DAILY_COLUMNS}


def declared_columns(schema: str) -> Mapping[str, str] | None:
    return DECLARED_SCHEMAS.get(schema)


def create_table_sql(schema: str, table: str, columns: Mapping[str, str]) -> str:
    body = ", ".join(f'"{name}" {sql_type}' for name, sql_type in columns.items())
    return f'CREATE TABLE IF NOT EXISTS "{schema}"."{table}" ({body})'


def table_schema(columns: Mapping[str, str]) -> TableSchema:
    return TableSchema(columns=[TableColumn(name=name, type=sql_type) for name, sql_type in columns.items()])


class TransactionalDuckDbClient(DuckDbClient):
    """Runs each IO-manager call in one transaction, with contract tables created up front."""

    @staticmethod
    @contextmanager
    def connect(context, table_slice) -> Iterator[duckdb.DuckDBPyConnection]:
        # Dagster's client leaves the connection (and the file lock) open when a write fails.
        conn = backoff(
            fn=duckdb.connect,
            retry_on=(RuntimeError, duckdb.IOException),
            kwargs={
                "database": context.resource_config["database"],
                "read_only": False,
                "config": {"custom_user_agent": "dagster", **context.resource_config["connection_config"]},
            },
            max_retries=10,
        )
        try:
            conn.execute("SET TimeZone = 'UTC'")
            conn.execute("BEGIN TRANSACTION")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        finally:
            conn.close()

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
            if columns is None:
                connection.execute(f"CREATE TABLE IF NOT EXISTS {target} AS SELECT * FROM frame LIMIT 0")
            connection.execute(f"INSERT INTO {target} BY NAME SELECT * FROM frame")
        finally:
            connection.unregister("frame")
        schema = table_schema(columns) if columns else TableSchema(
            columns=[TableColumn(name=str(n), type=str(t)) for n, t in obj.dtypes.items()]
        )
        return {"dagster/column_schema": schema}

    def load_input(self, context: InputContext, table_slice: TableSlice, connection) -> pd.DataFrame:
        if table_slice.partition_dimensions and len(context.asset_partition_keys) == 0:
            return pd.DataFrame(columns=list(declared_columns(table_slice.schema) or []))
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

    def create_io_manager(self, context) -> DbIOManager:
        return DbIOManager(
            db_client=TransactionalDuckDbClient(),
            database=self.database,
            schema=self.schema_,
            type_handlers=self.type_handlers(),
            default_load_type=self.default_load_type(),
            io_manager_name="MeteoDuckDBIOManager",
        )
