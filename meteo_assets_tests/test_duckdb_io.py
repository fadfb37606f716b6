"""The DuckDB IO manager round trip: declared schemas, exact replacement, atomic writes."""

import subprocess
import sys
import time

import duckdb
import pandas as pd
import pytest
from dagster import (
    AssetKey,
    BackfillPolicy,
    DailyPartitionsDefinition,
    DagsterInstance,
    asset,
    materialize,
)

from meteo_assets.storage import duckdb_io
from meteo_assets.storage.duckdb_io import MeteoDuckDBIOManager
from meteo_assets.storage.write_intent import write_announced
from meteo_assets.transform.contract import CLEAN_COLUMNS, empty_clean_frame

PARTITIONS = DailyPartitionsDefinition(start_date="2020-10-20", end_date="2020-10-31", timezone="Europe/Paris")


def observations(local_times: list[str], temperature: float | None = 12.5) -> pd.DataFrame:
    local = pd.to_datetime(local_times)
    frame = empty_clean_frame().reindex(range(len(local)))
    frame["station"] = "st42_x"
    frame["local_time"] = local
    frame["observed_at"] = local.tz_localize("Europe/Paris", ambiguous=[True] * len(local)).tz_convert("UTC")
    frame["temperature_c"] = temperature
    frame["qc_flags"] = ""
    return frame


def build(frames: dict[str, pd.DataFrame]):
    @asset(
        key=AssetKey(["clean", "st42_x"]),
        partitions_def=PARTITIONS,
        backfill_policy=BackfillPolicy.single_run(),
        metadata={"partition_expr": "local_time"},
    )
    def clean(context) -> pd.DataFrame:
        return frames[context.partition_key_range.start]

    return clean


def run(tmp_path, frames, first, last=None, instance=None):
    database = tmp_path / "meteo.duckdb"
    return materialize(
        [build(frames)],
        instance=instance or DagsterInstance.ephemeral(),
        resources={"io_manager": MeteoDuckDBIOManager(database=str(database))},
        tags={"dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last or first},
        raise_on_error=False,
    )


def rows(tmp_path) -> pd.DataFrame:
    with duckdb.connect(str(tmp_path / "meteo.duckdb"), read_only=True) as conn:
        return conn.execute('SELECT * FROM clean.st42_x ORDER BY observed_at').fetchdf()


def test_empty_first_partition_creates_the_declared_table(tmp_path):
    assert run(tmp_path, {"2020-10-24": empty_clean_frame()}, "2020-10-24").success
    with duckdb.connect(str(tmp_path / "meteo.duckdb"), read_only=True) as conn:
        types = dict(conn.execute("SELECT column_name, data_type FROM information_schema.columns WHERE table_name='st42_x'").fetchall())
    assert types["observed_at"] == "TIMESTAMP WITH TIME ZONE"
    assert list(types) == list(CLEAN_COLUMNS)


def test_all_null_measurements_then_values_insert_fine(tmp_path):
    assert run(tmp_path, {"2020-10-24": observations(["2020-10-24 10:00"], None)}, "2020-10-24").success
    assert run(tmp_path, {"2020-10-25": observations(["2020-10-25 10:00"], 11.0)}, "2020-10-25").success
    assert rows(tmp_path)["temperature_c"].tolist()[1] == 11.0


def test_rematerialising_a_range_replaces_exactly_that_window(tmp_path):
    frames = {"2020-10-24": observations(["2020-10-24 00:00", "2020-10-25 02:30", "2020-10-25 23:45", "2020-10-26 00:00"])}
    assert run(tmp_path, frames, "2020-10-24", "2020-10-26").success
    assert len(rows(tmp_path)) == 4
    # the fall-back day again, now with one row: days 24 and 26 untouched
    assert run(tmp_path, {"2020-10-25": observations(["2020-10-25 12:00"], 20.0)}, "2020-10-25").success
    got = rows(tmp_path)
    assert got["local_time"].dt.strftime("%Y-%m-%d %H:%M").tolist() == [
        "2020-10-24 00:00", "2020-10-25 12:00", "2020-10-26 00:00"
    ]
    assert got["observed_at"].dt.tz_convert("UTC").dt.strftime("%Y-%m-%d %H:%M").tolist() == [
        "2020-10-23 22:00", "2020-10-25 11:00", "2020-10-25 23:00"
    ]


def test_a_failed_write_leaves_the_previous_partition(tmp_path):
    assert run(tmp_path, {"2020-10-25": observations(["2020-10-25 12:00"], 20.0)}, "2020-10-25").success
    broken = observations(["2020-10-25 13:00"])
    broken["temperature_c"] = "not a number"
    result = run(tmp_path, {"2020-10-25": broken}, "2020-10-25")
    assert not result.success
    assert rows(tmp_path)["temperature_c"].tolist() == [20.0]


def test_loading_a_partition_range_reads_the_window(tmp_path):
    frames = {"2020-10-24": observations(["2020-10-24 09:00", "2020-10-25 09:00", "2020-10-26 09:00"])}
    run(tmp_path, frames, "2020-10-24", "2020-10-26")
    from dagster import Definitions

    defs = Definitions(assets=[build(frames)], resources={"io_manager": MeteoDuckDBIOManager(database=str(tmp_path / "meteo.duckdb"))})
    loaded = defs.load_asset_value(AssetKey(["clean", "st42_x"]), partition_key="2020-10-25")
    assert loaded["local_time"].dt.strftime("%Y-%m-%d %H:%M").tolist() == ["2020-10-25 09:00"]


def test_the_file_is_released_after_each_write_and_files_do_not_mix(tmp_path):
    """Writes attach the file to an in-memory DuckDB kept by the process: after each write the file
    must be free for another process, and two databases written in turn keep their own rows."""
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir()
    second.mkdir()
    assert run(first, {"2020-10-24": observations(["2020-10-24 10:00"], 1.0)}, "2020-10-24").success
    assert run(second, {"2020-10-24": observations(["2020-10-24 10:00"], 2.0)}, "2020-10-24").success
    assert run(first, {"2020-10-25": observations(["2020-10-25 10:00"], 3.0)}, "2020-10-25").success
    # a writer in another process (a notebook, the next run) gets the file at once
    script = "import duckdb, sys; c = duckdb.connect(sys.argv[1]); print(c.execute('SELECT count(*) FROM clean.st42_x').fetchone()[0])"
    for folder, count in ((first, 2), (second, 1)):
        done = subprocess.run([sys.executable, "-c", script, str(folder / "meteo.duckdb")], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == str(count)
    assert rows(first)["temperature_c"].tolist() == [1.0, 3.0]
    assert rows(second)["temperature_c"].tolist() == [2.0]
    assert not list(first.glob("*.wal")) and not list(second.glob("*.wal"))  # detaching checkpointed the writes


class CountingHost:
    """A host connection that counts the ATTACHes it is asked for."""

    def __init__(self, host):
        self.host, self.attaches = host, 0

    def execute(self, sql, *args):
        self.attaches += sql.startswith("ATTACH")
        return self.host.execute(sql, *args)

    def cursor(self):
        return self.host.cursor()


@pytest.fixture
def counting_host(monkeypatch):
    hosts = {}
    real_host = duckdb_io._host
    monkeypatch.setattr(duckdb_io, "_host", lambda config: hosts.setdefault("host", CountingHost(real_host(config))))
    yield hosts
    duckdb_io.release_duckdb_files()


def write(database: str, table: str) -> None:
    with duckdb_io.connect_for_write(database, {}) as conn:
        conn.execute(f"CREATE TABLE {table} AS SELECT '{table}' AS name")


def test_consecutive_writes_share_one_attachment_released_when_unused_or_failed(tmp_path, counting_host):
    """The DuckDB steps of a run follow one another: they share one attachment (one ATTACH, one
    checkpoint), announced to readers meanwhile. The file is free again once no write has used it
    for `LINGER_SECONDS`, and at once after a failed write."""
    database = str(tmp_path / "meteo.duckdb")
    for table in ("a", "b", "c"):
        write(database, table)
    assert counting_host["host"].attaches == 1 and write_announced(database)
    time.sleep(duckdb_io.LINGER_SECONDS + 0.5)
    assert not write_announced(database) and not (tmp_path / "meteo.duckdb.wal").exists()
    with pytest.raises(duckdb.CatalogException):
        with duckdb_io.connect_for_write(database, {}) as conn:
            conn.execute("SELECT * FROM missing_table")
    assert counting_host["host"].attaches == 2 and not write_announced(database)
    with duckdb.connect(database, read_only=True) as conn:
        assert conn.execute("SELECT name FROM a UNION ALL SELECT name FROM b UNION ALL SELECT name FROM c").fetchall() == [
            ("a",), ("b",), ("c",)]


WAITING_READER = """
import sys, time
from meteo_assets.storage.write_intent import waiting_for, write_announced
with waiting_for(sys.argv[1]):
    print("waiting", flush=True)
    while write_announced(sys.argv[1]):
        time.sleep(0.01)
print("free", flush=True)
"""


def test_a_writer_lets_the_file_go_after_its_write_when_someone_waits(tmp_path, counting_host, monkeypatch):
    """A notebook (or another run) waiting for the file says so: the next write then detaches at its
    end instead of keeping the file for a write that may follow."""
    monkeypatch.setattr(duckdb_io, "LINGER_SECONDS", 60)  # the reader finds the file kept
    database = str(tmp_path / "meteo.duckdb")
    write(database, "a")
    reader = subprocess.Popen([sys.executable, "-c", WAITING_READER, database], stdout=subprocess.PIPE, text=True,
                              cwd=duckdb_io.Path(__file__).parents[1])
    try:
        assert reader.stdout.readline().strip() == "waiting"
        write(database, "b")
        assert counting_host["host"].attaches == 1  # b used the attachment a kept
        assert not write_announced(database)  # and let it go at once
        assert reader.stdout.readline().strip() == "free"
    finally:
        reader.kill()
        reader.wait()


def test_the_file_is_released_as_soon_as_the_run_ends(tmp_path):
    """A run's end (the IO manager's teardown) detaches the file it wrote: a notebook or the next run
    can take it at once, with nothing left in the write-ahead log."""
    assert run(tmp_path, {"2020-10-24": observations(["2020-10-24 10:00"])}, "2020-10-24").success
    assert not write_announced(tmp_path / "meteo.duckdb") and not list(tmp_path.glob("*.wal"))
