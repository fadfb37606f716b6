"""Dagster's SQLite event log, made fit for ranged backfills of a local instance.

A ranged run of one station asset over a year reports 365 materialisations. Stock
`SqliteEventLogStorage` writes each one as four SQLite transactions on fresh engines and
connections (with an fsync and a WAL checkpoint each): ~15 ms an event, most of a backfill's time.
This subclass keeps the schema, files and semantics and changes how they are written:

- one engine per shard, kept (bounded), `synchronous=NORMAL` in WAL mode: a crash of the process
  loses nothing; a power cut may lose the last transactions, never corrupts the file;
- `store_event_batch` writes a batch (Dagster sends the days of a ranged step, and a run's planned
  events, as one batch when `DAGSTER_EVENT_BATCH_SIZE` > 0, as `definitions.py` and the Makefile
  set it) in one transaction per shard, as dagster-postgres does;
- the days of a ranged output are one materialisation repeated with another partition and time:
  the first is serialised, the others are that JSON with their day and time put in (checked
  against a full serialisation once per output; serialising each took ~0.11 ms, ~2.4 s of a
  20-station year); each event's type, asset and partition are read once, straight from its data
  (Dagster's accessors build the type's enum and format a message on every call: ~10 ms of a
  365-day batch's ~40);
- an event Dagster keeps in the run's log only (step starts, outputs, logs: most events of a
  one-day run) is inserted with a statement compiled once: ~0.55 ms instead of ~0.9 ms;
- a check result (600 in a one-day run of 50 stations) is serialised once and its index rows (the
  event, the run's execution row of the check updated) written in one transaction: ~1.6 ms instead
  of ~3 ms, where Dagster serialises it twice and commits the two apart;
- while a step runs in this process, the latest materialisation of an asset's partition is looked
  up once, not once per check result (Dagster asks it for each result of a one-day step to name
  the check's target: 450 look-ups of ~3 ms for a day of 50 stations). A materialisation stored
  here, or the step's start or end, forgets it; one stored meanwhile by another process would
  not be seen, and the step's checks name the materialisation they were computed on;
- an "asset check planned" event is stored once per check and run. Every check of this project is
  unpartitioned (it judges the run's whole window, `checks.py`) and its evaluation is stored
  without a partition; Dagster 1.13 nevertheless files the planned event once per partition of
  the asset, and those rows would stay "planned" forever (a year of 20 stations: 87,600 rows of
  1.5 kB each).

Configured in `dagster_home/dagster.yaml` through `ProjectInstance` (below); the PostgreSQL profile
(`deploy/dagster.yaml`) does not need it. It relies on Dagster internals (`_core.storage`), so the
Dagster version is pinned (`constraints.txt`) and `meteo_assets_tests/test_event_log.py` checks
what the UI and the sensors read back.
"""

from __future__ import annotations

import json
import os
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import sqlalchemy as db
import yaml
from dagster import AssetKey, AssetMaterialization, AssetObservation, DagsterInstance, DagsterInvariantViolationError
from dagster._core.events import (
    ASSET_CHECK_EVENTS,
    ASSET_EVENTS,
    EVENT_TYPE_TO_PIPELINE_RUN_STATUS,
    AssetObservationData,
    DagsterEvent,
    DagsterEventType,
    StepMaterializationData,
)
from dagster._core.events.log import EventLogEntry
from dagster._core.instance.ref import InstanceRef
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus
from dagster._core.storage.event_log import SqliteEventLogStorage
from dagster._core.storage.event_log.base import AssetRecordsFilter, EventRecordsResult
from dagster._core.storage.event_log.schema import (
    AssetCheckExecutionsTable,
    AssetEventTagsTable,
    SqlEventLogStorageTable,
)
from dagster._core.storage.sqlite import SQLITE_BUSY_TIMEOUT_SECONDS
from dagster._core.storage.sqlite_storage import DagsterSqliteStorage
from dagster._serdes.config_class import ConfigurableClassData
from dagster_shared.serdes import serialize_value
from sqlalchemy.engine import Connection, Engine

OPEN_SHARDS = 8  # engines kept: the index and the runs being written or watched
_PLANNED_CHECK = DagsterEventType.ASSET_CHECK_EVALUATION_PLANNED
_BATCHED = {
    DagsterEventType.ASSET_MATERIALIZATION,
    DagsterEventType.ASSET_OBSERVATION,
    DagsterEventType.ASSET_MATERIALIZATION_PLANNED,
    _PLANNED_CHECK,
}
# what Dagster also mirrors in the index shard (assets, checks, run status): stored its way
_INDEXED = ASSET_EVENTS | ASSET_CHECK_EVENTS | set(EVENT_TYPE_TO_PIPELINE_RUN_STATUS)
_STEP_BOUNDS = {
    DagsterEventType.STEP_START,
    DagsterEventType.STEP_SUCCESS,
    DagsterEventType.STEP_FAILURE,
    DagsterEventType.STEP_SKIPPED,
    DagsterEventType.STEP_UP_FOR_RETRY,
}


def _relaxed_sync(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.execute("PRAGMA synchronous=NORMAL")


class BatchingSqliteEventLogStorage(SqliteEventLogStorage):
    """`SqliteEventLogStorage` with kept engines and one transaction per shard per event batch."""

    def __init__(self, base_dir: str, inst_data: Any = None) -> None:
        self._engines: OrderedDict[str, Engine] = OrderedDict()
        self._tables_present: set[str] = set()
        self._schema_present: set[tuple[str, str]] = set()  # ("column" | "index", name) seen in place
        self._step_running = False  # a step of this process is between its start and its end
        self._latest_of_partition: dict[tuple[AssetKey, str], EventRecordsResult] = {}
        self._key_names = _KeyNames()  # a few hundred asset keys at most
        super().__init__(base_dir, inst_data=inst_data)

    @classmethod
    def from_config_value(cls, inst_data: Any, config_value: Any) -> BatchingSqliteEventLogStorage:
        return cls(inst_data=inst_data, **config_value)

    def _engine(self, shard: str) -> Engine:
        engine = self._engines.pop(shard, None)
        if engine is None:
            engine = db.create_engine(
                self.conn_string_for_shard(shard),
                pool_size=2,  # the lock below serialises use; creating the schema takes a second one
                connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS, "check_same_thread": False},
            )
            db.event.listen(engine, "connect", _relaxed_sync)
            if shard not in self._initialized_dbs:
                self._initdb(engine)
                self._initialized_dbs.add(shard)
        self._engines[shard] = engine  # most recently used last
        while len(self._engines) > OPEN_SHARDS:
            self._engines.popitem(last=False)[1].dispose()
        return engine

    @contextmanager
    def _connect(self, shard: str) -> Iterator[Connection]:
        with self._db_lock:
            with self._engine(shard).connect() as conn, conn.begin():
                yield conn

    def _forget_engines(self) -> None:
        with self._db_lock:
            for engine in self._engines.values():
                engine.dispose()
            self._engines.clear()

    def wipe(self) -> None:
        self._forget_engines()  # the run shards' files are about to be unlinked
        self._schema_present.clear()
        super().wipe()

    def dispose(self) -> None:
        self._forget_engines()
        super().dispose()

    def has_table(self, table_name: str) -> bool:
        if table_name not in self._tables_present and super().has_table(table_name):
            self._tables_present.add(table_name)  # tables are never dropped: only "present" is kept
        return table_name in self._tables_present

    # Dagster asks the schema (a reflection of the asset table, a look-up of the migrations table)
    # before most asset queries and each materialisation it stores: ~1.5 ms of every asset-record
    # look-up. Migrations only add columns and indexes, so once present they are remembered; an
    # absence is asked again.
    def has_asset_key_col(self, column_name: str) -> bool:
        return self._present("column", column_name, super().has_asset_key_col)

    def _has_asset_key_col_on_connection(self, conn: Connection, column_name: str) -> bool:
        reflect = super()._has_asset_key_col_on_connection
        return self._present("column", column_name, lambda name: reflect(conn, name))

    def has_secondary_index(self, name: str) -> bool:
        return self._present("index", name, super().has_secondary_index)

    def _present(self, kind: str, name: str, ask: Callable[[str], bool]) -> bool:
        if (kind, name) not in self._schema_present and ask(name):
            self._schema_present.add((kind, name))
        return (kind, name) in self._schema_present

    def _seen(self, events: Sequence[EventLogEntry]) -> None:
        """Forget the looked-up materialisations when a step starts or ends, or one is stored."""
        for event in events:
            kind = event.dagster_event_type
            if kind in _STEP_BOUNDS:
                self._step_running = kind == DagsterEventType.STEP_START
                self._latest_of_partition.clear()
            elif kind == DagsterEventType.ASSET_MATERIALIZATION:
                self._latest_of_partition.clear()

    def fetch_materializations(
        self, records_filter: AssetKey | AssetRecordsFilter, limit: int, cursor: str | None = None, ascending: bool = False
    ) -> EventRecordsResult:
        key = _latest_of_partition_key(records_filter, limit, cursor, ascending) if self._step_running else None
        if key is None:
            return super().fetch_materializations(records_filter, limit, cursor, ascending)
        if key not in self._latest_of_partition:
            self._latest_of_partition[key] = super().fetch_materializations(records_filter, limit, cursor, ascending)
        return self._latest_of_partition[key]

    def store_event(self, event: EventLogEntry) -> None:
        try:
            if event.dagster_event_type == _PLANNED_CHECK:
                self._store_batch([event])
            elif event.dagster_event_type == DagsterEventType.ASSET_CHECK_EVALUATION and event.run_id:
                self._store_check_evaluation(event)
            elif event.dagster_event_type in _INDEXED:
                super().store_event(event)
            else:  # the run's own log only, as Dagster does, with a statement compiled once
                with self.run_connection(event.run_id) as conn:
                    conn.execute(SqlEventLogStorageTable.insert(), self._row(event, serialize_value(event)))
        finally:
            self._seen([event])

    def store_event_batch(self, events: Sequence[EventLogEntry]) -> None:
        try:
            self._store_batch(events)
        finally:
            self._seen(events)

    def _store_batch(self, events: Sequence[EventLogEntry]) -> None:
        # each event's type is read once: Dagster builds the enum on every ask (a year's batches: 22,000 events)
        kinds = [event.dagster_event_type for event in events]
        if not events or any(kind not in _BATCHED for kind in kinds):
            super().store_event_batch(events)
            return
        rows = [self._row(event, text) for event, text in zip(events, _DaysSerializer().serialize(events))]
        for run_id in {event.run_id for event in events}:
            with self.run_connection(run_id) as conn:
                conn.execute(SqlEventLogStorageTable.insert(), [r for r in rows if r["run_id"] == run_id])
        with self.index_transaction() as conn:
            ids = _insert_rows(conn, rows)
            asset_rows = [(e, i, row) for e, i, row, kind in zip(events, ids, rows, kinds) if kind in ASSET_EVENTS]
            if asset_rows:
                self._store_tags(conn, [(e, i) for e, i, _ in asset_rows])
            # the asset table keeps only the latest of each kind and asset anyway
            latest = {(row["dagster_event_type"], row["asset_key"]): (e, i) for e, i, row in asset_rows}
            for event, event_id in latest.values():
                self._store_asset_event(conn, event, event_id)
            planned_checks = [self._planned_check_row(e, row, i) for e, row, i, kind in zip(events, rows, ids, kinds)
                              if kind == _PLANNED_CHECK]
            if planned_checks:
                conn.execute(AssetCheckExecutionsTable.insert(), planned_checks)

    def _store_check_evaluation(self, event: EventLogEntry) -> None:
        """Dagster's way (the event in the run's log and the index, the run's execution row of the
        check updated, or inserted if it has none), with the event serialised once and the index
        written in one transaction instead of two: ~3 ms of each of a one-day run's 600 results."""
        evaluation = event.get_dagster_event().asset_check_evaluation_data
        text = serialize_value(event)
        row = self._row(event, text)
        with self.run_connection(event.run_id) as conn:
            conn.execute(SqlEventLogStorageTable.insert(), row)
        with self.index_transaction() as conn:
            (event_id,) = _insert_rows(conn, [row])
            execution = {
                "execution_status": (AssetCheckExecutionRecordStatus.SUCCEEDED if evaluation.passed
                                     else AssetCheckExecutionRecordStatus.FAILED).value,
                "evaluation_event": text,
                "evaluation_event_timestamp": row["timestamp"],
                "evaluation_event_storage_id": event_id,
                "materialization_event_storage_id": (
                    evaluation.target_materialization_data.storage_id if evaluation.target_materialization_data else None
                ),
            }
            identity = {"asset_key": self._key_names[evaluation.asset_key], "check_name": evaluation.check_name,
                        "run_id": event.run_id, "partition": evaluation.partition}
            of = {f"of_{name}": value for name, value in identity.items()}
            updated = conn.execute(_UPDATE_CHECK_EXECUTION, {**of, **execution}).rowcount
            if updated == 0:  # no planned row (a step launcher's run): Dagster inserts one
                conn.execute(AssetCheckExecutionsTable.insert(), {**identity, **execution})
            elif updated > 1:
                raise DagsterInvariantViolationError(
                    f"Updated {updated} rows for asset check evaluation {evaluation.asset_check_key} "
                    "as a result of duplicate AssetCheckPlanned events."
                )

    def _row(self, entry: EventLogEntry, text: str) -> dict[str, Any]:
        """Dagster's `_event_to_row` for an event already serialised as `text`."""
        event = entry.dagster_event
        asset_key, partition = _asset_and_partition(event) if event else (None, None)
        return {
            "run_id": entry.run_id,
            "event": text,
            "dagster_event_type": event.event_type_value if event else None,
            "timestamp": self._event_insert_timestamp(entry),
            "step_key": event.step_key if event else entry.step_key,
            "asset_key": self._key_names[asset_key] if asset_key else None,
            "partition": partition or None,
        }

    def _store_tags(self, conn: Connection, asset_events: list[tuple[EventLogEntry, int]]) -> None:
        """Dagster's `_store_asset_event_tags` (the indexed tags of each asset event: its data
        version), asking which tags to index once per set of tag names rather than once per event:
        the days of a ranged output share theirs."""
        if not self.has_table(AssetEventTagsTable.name):
            return
        indexed: dict[frozenset[str], set[str]] = {}
        rows = []
        for entry, event_id in asset_events:
            data = entry.get_dagster_event().event_specific_data
            if isinstance(data, StepMaterializationData):
                reported: AssetMaterialization | AssetObservation = data.materialization
            elif isinstance(data, AssetObservationData):
                reported = data.asset_observation
            else:
                continue
            tags = reported.tags or {}
            keep = indexed.get(frozenset(tags))
            if keep is None:
                keep = indexed[frozenset(tags)] = self.get_asset_tags_to_index(set(tags))
            if keep:
                asset, stamp = self._key_names[reported.asset_key], self._event_insert_timestamp(entry)
                rows.extend({"event_id": event_id, "asset_key": asset, "key": key, "value": value,
                             "event_timestamp": stamp} for key, value in tags.items() if key in keep)
        if rows:
            conn.execute(AssetEventTagsTable.insert(), rows)

    def _planned_check_row(self, event: EventLogEntry, row: dict[str, Any], event_id: int) -> dict[str, Any]:
        planned = event.get_dagster_event().asset_check_planned_data
        return {
            "asset_key": planned.asset_key.to_string(),
            "check_name": planned.check_name,
            "partition": None,  # see the module docstring: checks here are unpartitioned
            "run_id": event.run_id,
            "execution_status": AssetCheckExecutionRecordStatus.PLANNED.value,
            "evaluation_event": row["event"],  # the event's JSON, serialised once
            "evaluation_event_timestamp": row["timestamp"],
            "evaluation_event_storage_id": event_id,
        }


# Dagster's `_update_asset_check_evaluation` statement, built once: the execution row the run's
# planned event created for this check (and partition, NULL for an unpartitioned one); the columns
# set are the parameters named as columns
_CHECKS = AssetCheckExecutionsTable.c
_UPDATE_CHECK_EXECUTION = AssetCheckExecutionsTable.update().where(
    _CHECKS.asset_key == db.bindparam("of_asset_key"),
    _CHECKS.check_name == db.bindparam("of_check_name"),
    _CHECKS.run_id == db.bindparam("of_run_id"),
    db.or_(_CHECKS.partition == db.bindparam("of_partition"),
           db.and_(_CHECKS.partition.is_(None), db.bindparam("of_partition").is_(None))),
)


def _insert_rows(conn: Connection, rows: list[dict[str, Any]]) -> list[int]:
    """Insert event rows; their ids, in order. From its first row the transaction holds SQLite's
    write lock, so the rows get consecutive ids that end at `last_insert_rowid()` (an INSERT …
    RETURNING in parameter order took SQLAlchemy 40 ms a thousand rows instead of 23)."""
    conn.execute(SqlEventLogStorageTable.insert(), rows)
    last = conn.exec_driver_sql("SELECT last_insert_rowid()").scalar_one()
    return list(range(last - len(rows) + 1, last + 1))


def _latest_of_partition_key(
    records_filter: AssetKey | AssetRecordsFilter, limit: int, cursor: str | None, ascending: bool
) -> tuple[AssetKey, str] | None:
    """(asset, partition) when the query asks the latest materialisation of one partition, as a
    check result does; None for any other query."""
    if limit != 1 or cursor is not None or ascending or not isinstance(records_filter, AssetRecordsFilter):
        return None
    partitions = records_filter.asset_partitions or []
    if len(partitions) != 1:
        return None
    if records_filter != AssetRecordsFilter(asset_key=records_filter.asset_key, asset_partitions=partitions):
        return None
    return records_filter.asset_key, partitions[0]


_DAY_MARK = "meteo-assets-day-f3b1c"  # stands for the partition in a template: a text no event carries
_TIME_MARK = 2.5e-300  # stands for the timestamp: no event time is this float


def _day_and_time(entry: EventLogEntry, day: str, timestamp: float) -> EventLogEntry:
    """The same event with another partition and time (`_replace` keeps every other value as is)."""
    event = entry.dagster_event
    data = event.event_specific_data
    return entry._replace(
        timestamp=timestamp,
        dagster_event=event._replace(event_specific_data=data._replace(
            materialization=data.materialization._replace(partition=day))),
    )


def _asset_and_partition(event: DagsterEvent) -> tuple[AssetKey | None, str | None]:
    """`event.asset_key` and `event.partition`, read straight from a materialisation: Dagster's
    accessors check the event's type, formatting their error message, on every call."""
    data = event.event_specific_data
    if isinstance(data, StepMaterializationData):
        return data.materialization.asset_key, data.materialization.partition
    return event.asset_key, event.partition


def _day_of(entry: EventLogEntry) -> str | None:
    """The partition of a materialisation event (None for any other event)."""
    event = entry.dagster_event
    if event is None or not isinstance(event.event_specific_data, StepMaterializationData):
        return None
    return event.event_specific_data.materialization.partition


class _DaysSerializer:
    """The JSON of a batch's events, serialising a ranged output's days once.

    Dagster reports a ranged output as one materialisation per day that differ only in their
    partition and timestamp. The first day of such a run of events is serialised with marks in
    their place and split there; the next days are that template with their own values put in.
    The first day is also serialised in full and compared with its filled-in template: on any
    difference (a Dagster upgrade changing the encoding, say) the run falls back to serialising
    every event.
    """

    def __init__(self) -> None:
        self._shape: EventLogEntry | None = None  # the template's event, with the marks
        self._parts: tuple[str, str, str] | None = None  # its JSON around the day and the time
        self._checked = False

    def serialize(self, events: Sequence[EventLogEntry]) -> list[str]:
        return [self._one(entry) for entry in events]

    def _one(self, entry: EventLogEntry) -> str:
        day = _day_of(entry)
        if day is None:
            return serialize_value(entry)
        shape = _day_and_time(entry, _DAY_MARK, _TIME_MARK)
        if shape != self._shape:
            self._shape, self._parts, self._checked = shape, self._split(shape), False
        if self._parts is None:
            return serialize_value(entry)
        before, between, after = self._parts
        text = f"{before}{json.dumps(day)}{between}{float.__repr__(entry.timestamp)}{after}"
        if not self._checked:
            self._checked = True
            full = serialize_value(entry)
            if full != text:
                self._parts = None
                return full
        return text

    @staticmethod
    def _split(shape: EventLogEntry) -> tuple[str, str, str] | None:
        text = serialize_value(shape)
        day, time = json.dumps(_DAY_MARK), float.__repr__(_TIME_MARK)
        if text.count(day) != 1 or text.count(time) != 1 or text.index(day) > text.index(time):
            return None
        before, rest = text.split(day)
        between, after = rest.split(time)
        return before, between, after


class _KeyNames(dict):
    """Asset keys' stored texts (a JSON list each), each worked out once."""

    def __missing__(self, key: AssetKey) -> str:
        self[key] = key.to_string()
        return self[key]


class ProjectSqliteStorage(DagsterSqliteStorage):
    """Dagster's SQLite storage in the instance folder (same files), with the batching event log."""

    def __init__(self, base_dir: str, inst_data: Any = None) -> None:
        super().__init__(base_dir, inst_data=inst_data)
        self._event_log_storage = BatchingSqliteEventLogStorage(self._event_log_dir)

    @property
    def _event_log_dir(self) -> str:
        return os.path.join(self.base_dir, "history", "runs")

    @classmethod
    def from_config_value(cls, inst_data: Any, config_value: Any) -> ProjectSqliteStorage:
        return cls.from_local(inst_data=inst_data, **config_value)

    @property
    def event_storage_data(self) -> ConfigurableClassData:
        return ConfigurableClassData(__name__, BatchingSqliteEventLogStorage.__name__,
                                     yaml.dump({"base_dir": self._event_log_dir}))


class ProjectInstance(DagsterInstance):
    """The instance class named in `dagster_home/dagster.yaml`: Dagster's defaults, except that its
    SQLite storage is `ProjectSqliteStorage`. An instance class is the one place Dagster hands the
    instance folder to a storage, so every process (webserver, daemon, run workers, tools opening
    the folder) finds the same files whatever its `DAGSTER_HOME`."""

    @classmethod
    def config_schema(cls) -> dict:
        return {}

    @staticmethod
    def config_defaults(base_dir: str) -> Mapping[str, ConfigurableClassData | None]:
        return {
            **InstanceRef.config_defaults(base_dir),
            "storage": ConfigurableClassData(__name__, ProjectSqliteStorage.__name__, yaml.dump({"base_dir": base_dir})),
        }
