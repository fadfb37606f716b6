"""Clean and daily steps worked ahead in a worker process (`assets/ahead.py`): same result as the
step's own work, used only for the very bytes or rows the step was handed, and a pipeline run that
relies on it."""

import datetime as dt
import os
import subprocess
import sys
import time

import duckdb
import pandas as pd
import pytest
from dagster import TimeWindow
from dagster._core.storage.db_io_manager import TablePartitionDimension, TableSlice

from meteo_assets.assets.ahead import WorkAhead, raw_digest
from meteo_assets.assets.stations import clean_days, summarise_days
from meteo_assets.config import PROJECT_ROOT, load_network
from meteo_assets.portal import PortalClient
from meteo_assets.portal.days import split_by_day
from meteo_assets.storage.duckdb_io import create_table_sql, read_slice
from meteo_assets.storage.raw_files import RawStore
from meteo_assets.transform import CLEAN_COLUMNS
from meteo_assets.transform.contract import PARIS
from meteo_assets_tests.fake_portal import FakePortal, default_network
from meteo_assets_tests.stand_in import stand_in
from meteo_assets_tests.test_pipeline import run_range, table

SPECS = default_network(3, "2021-03-20", "2021-04-05", seed=5)
DAYS = [dt.date(2021, 3, 27) + dt.timedelta(days=i) for i in range(4)]  # the spring DST change inside
WINDOW = (dt.datetime(2021, 3, 26, 23, tzinfo=dt.timezone.utc), dt.datetime(2021, 3, 30, 22, tzinfo=dt.timezone.utc))


def worker_pid(station, raw, days, window) -> int:
    return os.getpid()


def failing_work(station, raw, days, window):
    raise ValueError(f"{station.key}: cannot")


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    """Each station's raw days as the raw step stores them (from the stand-in portal's exports)."""
    folder = tmp_path_factory.mktemp("ahead")
    portal = FakePortal(SPECS)
    with stand_in(folder, portal, SPECS) as env:
        stations = load_network(env.folder / "datasets.toml").stations
        store, raws = RawStore(folder / "raw"), {}
        for station in stations:
            days: dict[dt.date, dict[str, bytes]] = {day: {} for day in DAYS}
            for dataset in station.datasets:
                content = PortalClient(env.portal.url).export_csv(dataset, *WINDOW).content
                for day, part in split_by_day(content, DAYS).items():
                    days[day][dataset] = part
            store.write_days(station.key, days)
            raws[station.key] = {day.isoformat(): files for day, files in days.items()}
    return folder / "raw", stations, raws


@pytest.fixture
def ahead(stored):
    resource = WorkAhead(raw_dir=str(stored[0]))
    assert resource.started(timeout=60)
    yield resource
    resource.teardown_after_execution(None)


def test_the_worker_cleans_exactly_as_the_step_would(ahead, stored):
    _, stations, raws = stored
    ahead.submit("run-1", clean_days, [(s, DAYS, WINDOW) for s in stations])
    for station in stations:
        worked = ahead.take("run-1", station.key, DAYS, raws[station.key])
        own = clean_days(station, raws[station.key], DAYS, WINDOW)
        assert worked is not None, station.key
        pd.testing.assert_frame_equal(worked.frame, own.frame)
        assert len(own.frame) > 300 and worked.figures == own.figures and worked.verdicts == own.verdicts
        ahead.submit("run-1", clean_days, [(s, DAYS, WINDOW) for s in stations if s.key > station.key])


def test_work_runs_in_another_process_and_only_for_the_bytes_the_step_holds(ahead, stored):
    _, stations, raws = stored
    first, second = stations[:2]
    ahead.submit("run-1", worker_pid, [(first, DAYS, WINDOW), (second, DAYS, WINDOW)])
    assert ahead.take("run-1", first.key, DAYS, raws[first.key]) not in (None, os.getpid())
    changed = {day: dict(files) for day, files in raws[second.key].items()}
    changed[DAYS[1].isoformat()][second.dataset] += b"2021-03-28T10:00:00+00:00;junk\n"
    assert raw_digest(changed) != raw_digest(raws[second.key])
    assert ahead.take("run-1", second.key, DAYS, changed) is None  # other bytes: the step works itself
    assert ahead.take("run-1", second.key, DAYS, raws[second.key]) is None  # taken once only


def test_a_failure_or_another_run_or_range_gets_nothing(ahead, stored):
    _, stations, raws = stored
    station = stations[0]
    ahead.submit("run-1", failing_work, [(station, DAYS, WINDOW)])
    assert ahead.take("run-1", station.key, DAYS, raws[station.key]) is None
    ahead.submit("run-1", worker_pid, [(station, DAYS, WINDOW)])
    assert ahead.take("run-2", station.key, DAYS, raws[station.key]) is None
    assert ahead.take("run-1", station.key, DAYS[:2], raws[station.key]) is None
    assert ahead.take("run-1", station.key, DAYS, raws[station.key]) is not None


def test_only_the_next_depth_stations_are_worked_ahead(stored):
    raw_dir, stations, raws = stored
    ahead = WorkAhead(raw_dir=str(raw_dir), depth=1)
    assert ahead.started(timeout=60)
    try:
        ahead.submit("run-1", worker_pid, [(s, DAYS, WINDOW) for s in stations])
        assert ahead.take("run-1", stations[1].key, DAYS, raws[stations[1].key]) is None  # beyond the depth
        # the first station's step did not come (its raw step failed): its work is dropped
        ahead.submit("run-1", worker_pid, [(s, DAYS, WINDOW) for s in stations[2:]])
        assert ahead.take("run-1", stations[0].key, DAYS, raws[stations[0].key]) is None
        assert ahead.take("run-1", stations[2].key, DAYS, raws[stations[2].key]) is not None
    finally:
        ahead.teardown_after_execution(None)


def test_without_a_raw_folder_every_step_cleans_its_own_days(stored):
    _, stations, raws = stored
    ahead = WorkAhead()  # S3 storage
    assert not ahead.started(timeout=5)
    ahead.submit("run-1", worker_pid, [(stations[0], DAYS, WINDOW)])
    assert ahead.take("run-1", stations[0].key, DAYS, raws[stations[0].key]) is None


def test_a_pipeline_run_works_ahead_and_gets_the_same_tables(tmp_path, monkeypatch):
    specs = default_network(4, "2020-10-01", "2020-10-20", seed=8)
    served: dict[str, list[bool]] = {"clean": [], "daily": []}
    take, take_daily, setup = WorkAhead.take, WorkAhead.take_daily, WorkAhead.setup_for_execution

    def spied(take, layer):
        def spy(self, *args):
            result = take(self, *args)
            served[layer].append(result is not None)
            return result

        return spy

    def set_up_and_wait(self, context):
        setup(self, context)
        assert self.started(timeout=60)  # a short run's clean steps would otherwise come before the worker

    tables = []
    monkeypatch.setattr(WorkAhead, "take", spied(take, "clean"))
    monkeypatch.setattr(WorkAhead, "take_daily", spied(take_daily, "daily"))
    monkeypatch.setattr(WorkAhead, "setup_for_execution", set_up_and_wait)
    for ahead in (True, False):
        if not ahead:
            monkeypatch.setattr(WorkAhead, "submit", lambda self, *args: None)
            monkeypatch.setattr(WorkAhead, "submit_daily", lambda self, *args: None)
            monkeypatch.setattr(WorkAhead, "setup_for_execution", setup)
        with stand_in(tmp_path / f"ahead-{ahead}", FakePortal(specs), specs) as env, env.activated():
            assert run_range(dt.date(2020, 10, 5), dt.date(2020, 10, 15)).success
            keys = [s.key for s in load_network(env.folder / "datasets.toml").stations]
            tables.append({key: (table("clean", key), table("daily", key)) for key in keys})
        for layer in ("clean", "daily"):  # the first step of a layer does its own work
            assert served[layer] == ([False, True, True, True] if ahead else [False] * 4), layer
            served[layer].clear()
    assert sum(len(clean) for clean, _ in tables[0].values()) > 3000
    for key, (clean, daily) in tables[0].items():
        pd.testing.assert_frame_equal(clean, tables[1][key][0])
        pd.testing.assert_frame_equal(daily, tables[1][key][1])


@pytest.fixture(scope="module")
def cleaned(stored, tmp_path_factory):
    """The stations' clean rows in a DuckDB file, as the clean steps leave them."""
    _, stations, raws = stored
    database = tmp_path_factory.mktemp("daily-ahead") / "meteo.duckdb"
    with duckdb.connect(str(database)) as conn:
        conn.execute("CREATE SCHEMA clean")
        for station in stations:
            frame = clean_days(station, raws[station.key], DAYS, WINDOW).frame
            conn.execute(create_table_sql("clean", station.key, CLEAN_COLUMNS))
            conn.register("frame", frame)
            conn.execute(f'INSERT INTO clean."{station.key}" BY NAME SELECT * FROM frame')  # noqa: S608
            conn.unregister("frame")
    return str(database), stations


# a daily step's input window: its days and the day on each side (the Météo-France windows)
DAILY_INPUT = TimeWindow(dt.datetime(2021, 3, 26, tzinfo=PARIS), dt.datetime(2021, 4, 1, tzinfo=PARIS))


def daily_input(database: str, key: str) -> pd.DataFrame:
    """The clean rows a daily step of DAYS receives, read the way the IO manager reads them."""
    return read_slice(database, TableSlice(table=key, schema="clean", partition_dimensions=[
        TablePartitionDimension(partition_expr="local_time", partitions=DAILY_INPUT)]))


def test_the_worker_summarises_exactly_as_the_daily_step_would_and_only_for_the_rows_it_was_sent(cleaned):
    database, stations = cleaned
    ahead = WorkAhead(database=database)
    assert ahead.started(timeout=60)
    try:
        ahead.submit_daily("run-1", summarise_days, stations, DAYS, DAILY_INPUT)
        first, second = stations[:2]
        clean = daily_input(database, first.key)
        assert len(clean) > 300
        worked, own = ahead.take_daily("run-1", first.key, DAYS, clean), summarise_days(first, clean, DAYS)
        assert worked is not None
        pd.testing.assert_frame_equal(worked.frame, own.frame)
        assert worked.figures == own.figures and worked.verdicts == own.verdicts
        assert ahead.take_daily("run-1", first.key, DAYS, clean) is None  # taken once only
        changed = daily_input(database, second.key)
        changed.loc[10, "temperature_c"] += 0.1  # another run rewrote a slot since it was sent
        assert ahead.take_daily("run-1", second.key, DAYS, changed) is None
        ahead.submit_daily("run-1", summarise_days, stations[2:], DAYS, DAILY_INPUT)
        third = daily_input(database, stations[2].key)
        assert ahead.take_daily("run-2", stations[2].key, DAYS, third) is None  # another run's step
        assert ahead.take_daily("run-1", stations[2].key, DAYS[:2], third) is None  # another range
        assert ahead.take_daily("run-1", stations[2].key, DAYS, third) is not None
    finally:
        ahead.teardown_after_execution(None)


KILLED_RUN = """
import multiprocessing.forkserver, os, sys
from meteo_assets.assets.ahead import WorkAhead
ahead = WorkAhead(raw_dir=sys.argv[1])
assert ahead.started(timeout=60)
worker = ahead._pool.submit(os.getpid).result()
print(worker, multiprocessing.forkserver._forkserver._forkserver_pid, flush=True)
sys.stdin.read()  # until killed
"""


def test_a_killed_run_leaves_no_worker_behind(tmp_path):
    """`kill -9` of a run cannot shut its pool down: the worker sees the run gone and exits, and
    its fork server with it."""
    run = subprocess.Popen([sys.executable, "-c", KILLED_RUN, str(tmp_path)], stdin=subprocess.PIPE,
                           stdout=subprocess.PIPE, text=True, cwd=PROJECT_ROOT)
    try:
        pids = [int(pid) for pid in run.stdout.readline().split()]
        assert len(pids) == 2 and all(_alive(pid) for pid in pids)
    finally:
        run.kill()
        run.wait()
    deadline = time.monotonic() + 20
    while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not [pid for pid in pids if _alive(pid)]


def _alive(pid: int) -> bool:
    """Running (a zombie, exited but not yet reaped by its parent, is not)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


SCRIPT_BODY = """
from meteo_assets.assets.ahead import WorkAhead, unguarded_main_script
ahead = WorkAhead(raw_dir={raw_dir!r})
print(unguarded_main_script(), ahead.started(timeout=60), flush=True)
ahead.teardown_after_execution(None)
"""


@pytest.mark.parametrize("guarded", [False, True])
def test_a_worker_starts_only_when_it_cannot_run_the_main_script_again(tmp_path, guarded):
    """A worker first imports the parent's main script: one whose top level runs materialisations
    without an `if __name__ == "__main__":` guard would run them again there. Such a script gets
    no worker (its steps do their own work); a guarded one does."""
    body = SCRIPT_BODY.format(raw_dir=str(tmp_path))
    if guarded:
        body = 'if __name__ == "__main__":\n' + "".join(f"    {line}\n" for line in body.strip().splitlines())
    script = tmp_path / "materialise.py"
    script.write_text(body, encoding="utf-8")
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == (["None", "True"] if guarded else [str(script), "False"])
