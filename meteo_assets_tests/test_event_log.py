"""The project's event log storage (`storage/event_log.py`) and what a ranged run leaves in it.

Runs go through the project's `dagster_home/dagster.yaml` (the stand-in copies it), so these are the
records the UI and the sensors read after a backfill.
"""

import datetime as dt
import shutil

import pytest
from dagster import AssetCheckKey, AssetKey, AssetRecordsFilter, DagsterEventType, DagsterInstance
from dagster._core.instance.ref import InstanceRef
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus
from dagster._core.storage.event_log import SqliteEventLogStorage
from dagster._core.storage.event_log.schema import (
    AssetCheckExecutionsTable,
    AssetEventTagsTable,
    SqlEventLogStorageTable,
)
from dagster_shared.serdes import deserialize_value, serialize_value
from sqlalchemy import select

from meteo_assets.config import PROJECT_ROOT, station_key
from meteo_assets.definitions import PIPELINE_JOB, build_definitions
from meteo_assets.run import main as run_main
from meteo_assets.storage import event_log
from meteo_assets.storage.event_log import BatchingSqliteEventLogStorage, ProjectInstance
from meteo_assets_tests.fake_portal import FakePortal, default_network
from meteo_assets_tests.stand_in import stand_in

SPECS = default_network(2, "2021-03-01", "2021-04-15", seed=5, quirks=False)
FIRST, LAST = dt.date(2021, 3, 20), dt.date(2021, 3, 31)  # the DST change of 28 March inside
DAYS = {(FIRST + dt.timedelta(days=i)).isoformat() for i in range((LAST - FIRST).days + 1)}
STATION = station_key(SPECS[0].dataset_id)


def run_range(first: dt.date, last: dt.date):
    job = build_definitions().resolve_job_def(PIPELINE_JOB)
    return job.execute_in_process(
        instance=DagsterInstance.get(),
        tags={"dagster/asset_partition_range_start": first.isoformat(), "dagster/asset_partition_range_end": last.isoformat()},
    )


@pytest.fixture(scope="module")
def backfilled(tmp_path_factory):
    with stand_in(tmp_path_factory.mktemp("event-log"), FakePortal(SPECS), SPECS) as env, env.activated():
        result = run_range(FIRST, LAST)
        assert result.success
        yield DagsterInstance.get(), result.run_id


def test_the_project_instance_uses_the_batching_storage(backfilled):
    instance, _ = backfilled
    assert type(instance.event_log_storage) is BatchingSqliteEventLogStorage


@pytest.mark.parametrize("layer", ["raw", "clean", "daily"])
def test_every_day_of_a_ranged_run_is_materialised_once(backfilled, layer):
    instance, run_id = backfilled
    key = AssetKey([layer, STATION])
    assert instance.get_materialized_partitions(key) == DAYS
    records = instance.fetch_materializations(key, limit=100).records
    assert sorted(r.partition_key for r in records) == sorted(DAYS)
    assert {r.run_id for r in records} == {run_id}
    assert instance.get_latest_materialization_event(key).dagster_event.partition == LAST.isoformat()


def test_the_run_figures_are_on_its_last_day_and_the_other_days_stay_small(backfilled):
    instance, _ = backfilled
    records = instance.fetch_materializations(AssetKey(["daily", STATION]), limit=100).records
    by_day = {r.partition_key: r.asset_materialization.metadata for r in records}
    last = by_day.pop(LAST.isoformat())
    assert last["run_row_count"].value == len(DAYS)
    assert {"preview", "plot", "days_complete", "run_range"} <= set(last)
    # the other days: the range, and where the IO manager wrote it (table and query)
    assert {day: sorted(metadata) for day, metadata in by_day.items()} == {
        day: ["Query", "dagster/table_name", "run_range"] for day in by_day
    }
    assert last["run_range"].value == f"{FIRST} … {LAST} ({len(DAYS)} days)"


def test_the_stored_events_are_dagsters_own_serialisation(backfilled):
    """The days of a ranged output are written from one template (`_DaysSerializer`): byte for byte
    what Dagster's serialisation gives, and the row columns what its `_event_to_row` gives."""
    instance, run_id = backfilled
    storage = instance.event_log_storage
    with storage.index_connection() as conn:
        texts = [row.event for row in conn.execute(
            select(SqlEventLogStorageTable.c.event).where(SqlEventLogStorageTable.c.run_id == run_id))]
    entries = [deserialize_value(text) for text in texts]
    assert sum(e.dagster_event_type == "ASSET_MATERIALIZATION" for e in entries) == 6 * len(DAYS)
    assert texts == [serialize_value(e) for e in entries]
    assert [storage._row(e, serialize_value(e)) for e in entries] == [storage._event_to_row(e) for e in entries]


def test_the_indexed_tags_are_those_dagster_stores(backfilled):
    """Each materialisation's data version goes to the tags table (the UI's staleness reads it),
    row for row as Dagster's own `_store_asset_event_tags` would write it."""
    instance, run_id = backfilled
    storage = instance.event_log_storage
    with storage.index_connection() as conn:
        stored = {tuple(row) for row in conn.execute(select(
            AssetEventTagsTable.c.event_id, AssetEventTagsTable.c.asset_key, AssetEventTagsTable.c.key,
            AssetEventTagsTable.c.value, AssetEventTagsTable.c.event_timestamp))}
        events = [(row.id, deserialize_value(row.event)) for row in conn.execute(  # the index's ids
            select(SqlEventLogStorageTable.c.id, SqlEventLogStorageTable.c.event).where(
                SqlEventLogStorageTable.c.run_id == run_id,
                SqlEventLogStorageTable.c.dagster_event_type == "ASSET_MATERIALIZATION"))]
    expected = {
        (event_id, entry.dagster_event.asset_key.to_string(), key, value, storage._event_insert_timestamp(entry))
        for event_id, entry in events
        for key, value in SqliteEventLogStorage._tags_for_asset_event(storage, entry).items()
    }
    assert len(events) == 6 * len(DAYS) and len(expected) >= len(events)
    assert {key for _, _, key, _, _ in expected} == {"dagster/data_version"}
    assert {row for row in stored if row[0] in {event_id for event_id, _ in events}} == expected


def test_days_that_differ_in_more_than_day_and_time_are_serialised_apart(backfilled, monkeypatch):
    instance, run_id = backfilled
    entries = [r.event_log_entry for r in instance.get_records_for_run(run_id, limit=10_000).records]
    days = [  # the days of one output but its last, which carries the run's figures
        e for e in entries if e.dagster_event_type == "ASSET_MATERIALIZATION"
        and e.dagster_event.asset_key == AssetKey(["clean", STATION]) and e.dagster_event.partition != LAST.isoformat()
    ]
    assert len(days) == len(DAYS) - 1
    # another description on one day in the middle of its run, and other events interleaved
    odd = days[3]._replace(dagster_event=days[3].dagster_event._replace(message="another message"))
    mixed = [*days[:3], entries[0], odd, *days[4:]]
    expected = [serialize_value(e) for e in mixed]
    calls: list[object] = []
    monkeypatch.setattr(event_log, "serialize_value", lambda value: calls.append(value) or serialize_value(value))
    assert event_log._DaysSerializer().serialize(mixed) == expected
    # a template and its check per run of days (the odd day, and the days after it), and the other event
    assert len(calls) == 2 + 1 + 2 + 2
    # an encoding the template does not foresee: checked on the second day, then serialised in full
    monkeypatch.setattr(event_log.json, "dumps", lambda value: f"'{value}'")
    assert event_log._DaysSerializer().serialize(mixed) == expected


def test_each_check_has_one_execution_per_run_and_none_left_planned(backfilled):
    instance, run_id = backfilled
    for layer, name in [("raw", "bytes_parse"), ("clean", "rejected_share"), ("daily", "coverage")]:
        history = instance.event_log_storage.get_asset_check_execution_history(
            AssetCheckKey(AssetKey([layer, STATION]), name), limit=50
        )
        assert [(h.run_id, h.status) for h in history] == [(run_id, AssetCheckExecutionRecordStatus.SUCCEEDED)]
        assert history[0].evaluation.passed


def test_a_check_result_is_stored_as_dagster_stores_it(backfilled, tmp_path):
    """Check results go in one index transaction, serialised once (`_store_check_evaluation`); the
    rows are Dagster's: the run's events replayed through either path leave the same tables. The
    results replayed again under another run, which planned nothing, take Dagster's insert path."""
    instance, run_id = backfilled
    entries = [r.event_log_entry for r in instance.get_records_for_run(run_id, limit=10_000).records]
    evaluations = [e for e in entries if e.dagster_event_type == DagsterEventType.ASSET_CHECK_EVALUATION]
    assert len(evaluations) == 9 * len(SPECS)
    unplanned = [e._replace(run_id="not-planned") for e in evaluations]

    def replay(folder, dagsters_way: bool):
        storage = BatchingSqliteEventLogStorage(str(folder))
        for entry in entries + unplanned:
            if dagsters_way and entry.dagster_event_type == DagsterEventType.ASSET_CHECK_EVALUATION:
                SqliteEventLogStorage.store_event(storage, entry)
            else:
                storage.store_event(entry)
        with storage.index_connection() as conn:
            executions = sorted(tuple(row) for row in conn.execute(select(
                *(c for c in AssetCheckExecutionsTable.c if c.name not in ("id", "create_timestamp")))))
            events = [tuple(row)[1:] for row in conn.execute(select(SqlEventLogStorageTable).order_by("id"))]
        with storage.run_connection("not-planned") as conn:
            events += [tuple(row)[1:] for row in conn.execute(select(SqlEventLogStorageTable).order_by("id"))]
        storage.dispose()
        return executions, events

    ours, dagsters = replay(tmp_path / "ours", False), replay(tmp_path / "dagster", True)
    assert ours == dagsters
    executions, _ = ours
    statuses = [(row[3], row[4]) for row in executions]  # run id, status
    assert statuses.count((run_id, "SUCCEEDED")) == len(evaluations)
    assert statuses.count(("not-planned", "SUCCEEDED")) == len(evaluations)


def test_the_checks_of_a_one_day_step_look_their_target_up_once_and_name_it(tmp_path, monkeypatch):
    looked_up: list[AssetRecordsFilter] = []
    original = SqliteEventLogStorage.fetch_materializations
    monkeypatch.setattr(SqliteEventLogStorage, "fetch_materializations",
                        lambda self, query, *args, **kwargs: looked_up.append(query) or original(self, query, *args, **kwargs))
    day = LAST.isoformat()
    with stand_in(tmp_path, FakePortal(SPECS), SPECS) as env, env.activated():
        instance = DagsterInstance.get()
        job = build_definitions().resolve_job_def(PIPELINE_JOB)
        run_id = job.execute_in_process(instance=instance, tags={"dagster/partition": day}).run_id
        records = instance.get_records_for_run(run_id, limit=1000).records
        asset_keys = {r.event_log_entry.dagster_event.asset_key for r in records
                      if r.event_log_entry.dagster_event_type == DagsterEventType.ASSET_MATERIALIZATION}
        assert len(asset_keys) == 3 * len(SPECS)
        in_run = len(looked_up)
        # outside a step nothing is remembered: each look-up reaches the database
        materialised = {}
        for key in asset_keys:
            latest = instance.fetch_materializations(AssetRecordsFilter(asset_key=key, asset_partitions=[day]), limit=1)
            assert latest.records[0].run_id == run_id
            materialised[key] = latest.records[0].storage_id
        assert len(looked_up) == in_run + len(asset_keys)
    evaluations = [r.event_log_entry.dagster_event.asset_check_evaluation_data for r in records
                   if r.event_log_entry.dagster_event_type == DagsterEventType.ASSET_CHECK_EVALUATION]
    assert len(evaluations) > len(materialised)  # several checks per asset
    assert all(e.target_materialization_data.storage_id == materialised[e.asset_key] for e in evaluations)
    # inside the run: one look-up of the day's latest materialisation per asset, whatever its number of checks
    assert sorted(q.asset_key.to_user_string() for q in looked_up[:in_run] if q.asset_partitions == [day]) == sorted(
        key.to_user_string() for key in materialised)


def test_the_run_summary_reads_the_figures_of_a_range(tmp_path, capsys):
    with stand_in(tmp_path, FakePortal(SPECS), SPECS) as env, env.activated():
        assert run_main(["--start", "2021-03-27", "--end", "2021-03-29"]) == 0
    line = next(line for line in capsys.readouterr().out.splitlines() if line.startswith(STATION))
    # 96 + 92 (spring forward) + 96 slots; every day complete
    assert line.split()[1:3] == ["284", "284"] and "3/3" in line and line.endswith("ok")


def test_an_instance_keeps_its_history_when_it_switches_to_the_project_storage(tmp_path):
    with stand_in(tmp_path, FakePortal(SPECS), SPECS) as env, env.activated():
        home = env.folder / "dagster_home"
        (home / "dagster.yaml").unlink()  # Dagster's stock SQLite storage first
        assert run_range(FIRST, FIRST).success
        assert type(DagsterInstance.get().event_log_storage) is SqliteEventLogStorage
        shutil.copy(PROJECT_ROOT / "dagster_home" / "dagster.yaml", home / "dagster.yaml")
        assert run_range(LAST, LAST).success
        instance = DagsterInstance.get()
        assert type(instance.event_log_storage) is BatchingSqliteEventLogStorage
        key = AssetKey(["clean", STATION])
        assert instance.get_materialized_partitions(key) == {FIRST.isoformat(), LAST.isoformat()}
        assert len(instance.get_run_records()) == 2


def test_a_tool_opening_the_folder_reads_that_folder_whatever_dagster_home_says(backfilled, tmp_path, monkeypatch):
    instance, run_id = backfilled
    home = instance.root_directory
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))  # e.g. a test or a script with its own setting
    opened = DagsterInstance.from_ref(InstanceRef.from_dir(home))
    assert type(opened) is ProjectInstance
    assert opened.get_materialized_partitions(AssetKey(["daily", STATION])) == DAYS
    assert [r.dagster_run.run_id for r in opened.get_run_records()] == [run_id]
    assert not list(tmp_path.iterdir())


def test_schema_answers_are_remembered_once_present_and_asked_again_while_absent(tmp_path, monkeypatch):
    storage = BatchingSqliteEventLogStorage(str(tmp_path))
    asked: list[str] = []
    reflected: list[str] = []
    for method in ("has_asset_key_col", "has_secondary_index"):
        original = getattr(SqliteEventLogStorage, method)
        monkeypatch.setattr(SqliteEventLogStorage, method, lambda self, name, _o=original: asked.append(name) or _o(self, name))
    reflect = SqliteEventLogStorage._has_asset_key_col_on_connection
    monkeypatch.setattr(SqliteEventLogStorage, "_has_asset_key_col_on_connection",
                        lambda self, conn, name: reflected.append(name) or reflect(self, conn, name))
    with storage.index_connection() as conn:  # as Dagster asks before storing a materialisation
        assert storage._has_asset_key_index_cols_on_connection(conn) is True
        assert storage._has_asset_key_index_cols_on_connection(conn) is True
    assert reflected == ["last_materialization_timestamp"]
    assert storage.has_asset_key_col("last_materialization_timestamp") is True
    assert storage.has_asset_key_col("last_materialization_timestamp") is True
    assert storage.has_asset_key_col("no_such_column") is False
    assert storage.has_asset_key_col("no_such_column") is False
    assert storage.has_secondary_index("no_such_migration") is False
    assert asked == ["no_such_column", "no_such_column", "no_such_migration"]
    assert reflected == ["last_materialization_timestamp", "no_such_column", "no_such_column"]
    storage.wipe()
    assert storage.has_asset_key_col("last_materialization_timestamp") is True
    assert asked[-1] == "last_materialization_timestamp"  # a wiped storage asks again
