"""The fault matrix: the pipeline, through Dagster, against a stand-in portal that misbehaves.

After each fault the tables equal those of a clean run of the same data, and the raw layer holds
exactly the bytes the portal sent for the partitions that succeeded. Retries, backoffs and timeouts
are made small through `PortalResource`, so every fault costs a few seconds at most. Machines
dying and concurrent runs are real processes (`python -m meteo_assets.run`), killed with SIGKILL.
"""

from __future__ import annotations

import collections
import contextlib
import datetime as dt
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import duckdb
import pandas as pd
import pytest
from dagster import AssetKey, DagsterEventType, DagsterInstance, Definitions
from urllib3.util.retry import Retry

from meteo_assets.config import PROJECT_ROOT, station_key
from meteo_assets.definitions import PIPELINE_JOB, build_definitions
from meteo_assets.portal import PortalClient
from meteo_assets.resources import PortalResource
from meteo_assets.run import root_cause
from meteo_assets.storage.raw_files import RawFilesIOManager
from meteo_assets.transform import PARIS
from meteo_assets_tests.fake_portal import FakePortal, default_network
from meteo_assets_tests.stand_in import StandIn, stand_in

FIRST, LAST = dt.date(2020, 10, 20), dt.date(2020, 10, 24)
SPECS = default_network(2, "2020-10-01", "2020-11-05", seed=11)  # one 15-field and one 39-field station
A, B = SPECS  # A gets the faults, B must not notice them
KEY_A, KEY_B = (station_key(s.dataset_id) for s in SPECS)
# The test process also serves the stand-in portal, so any pause of it delays the answers: at a
# 0.5 s read timeout the healthy station's download timed out, and was retried, in two full-suite
# runs (never alone). Hangs and stalls last longer than this timeout.
FAST = dict(retries=2, backoff_factor=0.01, backoff_max=0.05, retry_after_max=1.5, connect_timeout=2.0, read_timeout=1.5)


# --------------------------------------------------------------------------- running and reading
def definitions(env: StandIn, **portal) -> Definitions:
    """The project's definitions for the stand-in, with a portal resource tuned for fast faults."""
    with env.activated():
        base = build_definitions()
    resource = PortalResource(base_url=env.portal.url, **{**FAST, **portal})
    return Definitions(
        assets=base.assets, asset_checks=base.asset_checks, jobs=base.jobs, schedules=base.schedules,
        sensors=base.sensors, resources={**base.resources, "portal": resource}, executor=base.executor,
    )


def run(env: StandIn, first: dt.date = FIRST, last: dt.date = LAST, *, layers=("raw", "clean", "daily"), **portal):
    with env.activated():
        return definitions(env, **portal).resolve_job_def(PIPELINE_JOB).execute_in_process(
            instance=DagsterInstance.ephemeral(),
            tags={"dagster/asset_partition_range_start": first.isoformat(),
                  "dagster/asset_partition_range_end": last.isoformat()},
            raise_on_error=False,
            asset_selection=[AssetKey([layer, key]) for layer in layers for key in (KEY_A, KEY_B)],
        )


def table(env: StandIn, schema: str, key: str) -> pd.DataFrame | None:
    path = env.folder / "data" / "meteo.duckdb"
    if not path.exists():
        return None
    with duckdb.connect(str(path), read_only=True) as conn:
        conn.execute("SET TimeZone = 'UTC'")
        found = conn.execute("SELECT count(*) FROM information_schema.tables WHERE table_schema = ? AND table_name = ?",
                             [schema, key]).fetchone()[0]
        if not found:
            return None
        order = "date" if schema == "daily" else "observed_at"
        return conn.execute(f'SELECT * FROM "{schema}"."{key}" ORDER BY {order}').fetchdf()


def tables(env: StandIn, keys=(KEY_A, KEY_B)) -> dict[tuple[str, str], pd.DataFrame | None]:
    return {(schema, key): table(env, schema, key) for schema in ("clean", "daily") for key in keys}


def raw_files(env: StandIn, key: str) -> dict[str, bytes]:
    """The station's stored days as readers see them (a killed write's hidden staging folder aside)."""
    root = env.folder / "data" / "raw" / key
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.glob("*/[!.]*/*.csv"))}


def served_lines(portal: FakePortal, dataset: str, first: dt.date, last: dt.date) -> list[bytes]:
    """What the portal holds for Paris days first..last, read from the stand-in's own index."""
    start = dt.datetime.combine(first, dt.time(), PARIS).astimezone(dt.timezone.utc)
    end = dt.datetime.combine(last + dt.timedelta(days=1), dt.time(), PARIS).astimezone(dt.timezone.utc)
    where = f"heure_de_paris >= date'{start.isoformat()}' AND heure_de_paris < date'{end.isoformat()}'"
    data = portal.dataset(dataset)
    return [bytes(line) + b"\n" for line in data.lines[data.select_rows(where, "heure_de_paris")]]


def assert_raw_is_what_the_portal_sent(env: StandIn, spec, key: str, first: dt.date = FIRST, last: dt.date = LAST):
    files = raw_files(env, key)
    days = [first + dt.timedelta(days=i) for i in range((last - first).days + 1)]
    assert sorted(files) == [f"{d:%Y}/{d}/{spec.dataset_id}.csv" for d in days]
    header = ";".join(env.portal.header(spec.dataset_id)).encode() + b"\n"
    stored = []
    for content in files.values():
        lines = content.splitlines(keepends=True)
        assert lines[0] == header
        stored += lines[1:]
    assert collections.Counter(stored) == collections.Counter(served_lines(env.portal, spec.dataset_id, first, last))


def failures(result) -> dict[str, str]:
    """Failed step → its message (the user-facing description, else the error)."""
    out = {}
    for event in result.all_events:
        if event.event_type == DagsterEventType.STEP_FAILURE:
            data = event.event_specific_data
            out[event.step_key] = (data.user_failure_data.description if data.user_failure_data else None) or (
                root_cause(data.error) if data.error else "")
    return out


def materialized(result) -> set[str]:
    return {event.asset_key.to_user_string() for event in result.all_events
            if event.event_type == DagsterEventType.ASSET_MATERIALIZATION}


def export_requests(portal: FakePortal, dataset: str) -> int:
    return sum(1 for r in portal.requests if r.path.endswith(f"/{dataset}/exports/csv"))


def assert_equal_tables(got: dict, want: dict) -> None:
    assert got.keys() == want.keys()
    for name, frame in want.items():
        assert frame is not None and got[name] is not None, name
        pd.testing.assert_frame_equal(got[name], frame, obj=".".join(name))


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """A clean run: the tables every faulty run must end up with."""
    with stand_in(tmp_path_factory.mktemp("reference"), FakePortal(SPECS), SPECS) as env:
        result = run(env)
        assert result.success, failures(result)
        for spec, key in ((A, KEY_A), (B, KEY_B)):
            assert_raw_is_what_the_portal_sent(env, spec, key)
        yield tables(env), result


@pytest.fixture
def env(tmp_path):
    with stand_in(tmp_path, FakePortal(SPECS), SPECS) as env:
        yield env


# --------------------------------------------------------------------------- transient faults: retried, then exact
@pytest.mark.parametrize("fault,options", [
    ("status", {"status": 503}),
    ("status", {"status": 502}),
    ("reset", {}),
    ("truncate", {}),  # Content-Length announced, half the body sent
    ("cut", {}),  # well framed, but the CSV stops mid-line
    ("hang", {"seconds": 2.5}),  # no answer for longer than the read timeout
    ("stall", {"seconds": 2.5}),  # half the body, then nothing for longer than the read timeout
    ("redirect", {}),  # to the same origin: followed
])
def test_transient_faults_are_retried_and_leave_exact_tables(env, reference, fault, options):
    env.portal.inject(A.dataset_id, fault, count=2 if fault != "redirect" else 1, endpoint="exports", **options)
    result = run(env)
    assert result.success, failures(result)
    assert export_requests(env.portal, A.dataset_id) == (3 if fault != "redirect" else 2)
    assert export_requests(env.portal, B.dataset_id) == 1
    assert_equal_tables(tables(env), reference[0])
    assert_raw_is_what_the_portal_sent(env, A, KEY_A)


def test_retries_back_off_exponentially_with_jitter(env, monkeypatch):
    waits = []
    original = Retry.get_backoff_time

    def recorded(self):
        waits.append(original(self))
        return waits[-1]

    monkeypatch.setattr(Retry, "get_backoff_time", recorded)
    env.portal.inject(A.dataset_id, "status", count=4, status=503)
    client = PortalClient(env.portal.url, retries=4, backoff_factor=0.02, backoff_max=1.0)
    start = dt.datetime(2020, 10, 20, tzinfo=dt.timezone.utc)
    assert client.export_csv(A.dataset_id, start, start + dt.timedelta(days=1)).content.count(b"\n") > 90
    assert len(waits) == 4 and waits[0] == 0  # urllib3 retries the first failure at once
    for n, wait in enumerate(waits[1:], start=1):  # then 0.02 × 2^n, plus up to 0.01 of jitter
        assert 0.02 * 2**n <= wait <= 0.02 * 2**n + 0.01
    assert len({round(w - 0.02 * 2**n, 6) for n, w in enumerate(waits[1:], start=1)}) > 1  # jittered


# --------------------------------------------------------------------------- rate limiting
@pytest.fixture
def retry_after_waits(monkeypatch):
    """The Retry-After waits urllib3 makes (as asked, or capped), recorded as they happen."""
    waits = []
    original = Retry.sleep_for_retry

    def recorded(self, response):
        waits.append(self.get_retry_after(response))
        return original(self, response)

    monkeypatch.setattr(Retry, "sleep_for_retry", recorded)
    return waits


def test_429_waits_as_told(env, reference, retry_after_waits):
    env.portal.inject(A.dataset_id, "status", count=1, status=429, retry_after=1, endpoint="exports")
    result = run(env)
    assert result.success, failures(result)
    assert retry_after_waits == [1]
    assert_equal_tables(tables(env), reference[0])


def test_429_waits_are_bounded_and_the_failure_says_so(env, reference, retry_after_waits):
    env.portal.inject(A.dataset_id, "status", count=10, status=429, retry_after=3600, endpoint="exports")
    result = run(env, retry_after_max=0.2)
    message = failures(result)[f"raw__{KEY_A}"]
    assert retry_after_waits == [0.2, 0.2]  # asked 3600 s twice, waited the cap, then gave up
    assert "HTTP 429" in message and "asked to wait 3600 s" in message and "capped at 0.2 s" in message
    assert_names_station_window_url(env, message, KEY_A, A.dataset_id)
    assert_other_station_unaffected(env, reference, result)


# --------------------------------------------------------------------------- persistent faults: one station fails, clearly
def assert_names_station_window_url(env: StandIn, message: str, key: str, dataset: str) -> None:
    assert f"station {key}" in message and f"partition {FIRST}…{LAST}" in message
    assert f"dataset {dataset}" in message and "window 2020-10-19T22:00:00+00:00 → 2020-10-24T22:00:00+00:00" in message
    assert f"URL: {env.portal.url}/api/explore/v2.1/catalog/datasets/{dataset}/exports/csv?where=" in message


def assert_other_station_unaffected(env: StandIn, reference, result) -> None:
    assert not (materialized(result) & {f"raw/{KEY_A}", f"clean/{KEY_A}", f"daily/{KEY_A}"})
    assert raw_files(env, KEY_A) == {}  # nothing of the failed station was kept, nor parsed
    assert table(env, "clean", KEY_A) is None and table(env, "daily", KEY_A) is None
    got = tables(env, keys=[KEY_B])
    assert_equal_tables(got, {name: frame for name, frame in reference[0].items() if name[1] == KEY_B})
    assert_raw_is_what_the_portal_sent(env, B, KEY_B)


@pytest.mark.parametrize("fault,options,cause", [
    ("hang", {"seconds": 2.5}, "did not answer within 1.5 s on any of 3 tries"),
    ("stall", {"seconds": 2.5}, "broke off on each of 3 tries (last: body stalled for more than 1.5 s)"),
    ("truncate", {}, "broke off on each of 3 tries (last: body broken off (IncompleteRead"),
    ("cut", {}, "broke off on each of 3 tries (last: CSV cut mid-line"),
    ("status", {"status": 503}, "HTTP 503: ServiceUnavailable: Injected 503 (3 tries)"),
    ("reset", {}, "dropped the connection on each of 3 tries"),
])
def test_persistent_faults_fail_that_station_clearly(env, reference, fault, options, cause):
    env.portal.inject(A.dataset_id, fault, count=10, endpoint="exports", **options)
    result = run(env)
    message = failures(result)[f"raw__{KEY_A}"]
    assert cause in message
    assert_names_station_window_url(env, message, KEY_A, A.dataset_id)
    assert export_requests(env.portal, A.dataset_id) == 3
    assert_other_station_unaffected(env, reference, result)


def test_404_fails_that_station_without_retrying(env, reference):
    env.portal.inject(A.dataset_id, "status", count=10, status=404, endpoint="exports")
    result = run(env)
    message = failures(result)[f"raw__{KEY_A}"]
    assert "HTTP 404" in message and "tries" not in message
    assert_names_station_window_url(env, message, KEY_A, A.dataset_id)
    assert export_requests(env.portal, A.dataset_id) == 1
    assert_other_station_unaffected(env, reference, result)


# --------------------------------------------------------------------------- bad data
def test_malformed_rows_and_junk_are_rejected_counted_and_kept_raw(env, reference):
    good = env.portal.lines(A.dataset_id)
    inside = next(line for line in good if b"2020-10-21T10:00:00+00:00" in line)
    cells = inside.split(b";")
    junk = [
        inside + b";extra;fields",  # too many fields
        b";".join(cells[:2] + cells[3:]),  # one field short
        b";".join([b"5,5120252227E+023", b"abc", *[b"x?" if c[:1].isdigit() and b"T" not in c else c
                                                     for c in cells[2:]]]),  # junk data, id and values, same slot
    ]
    env.portal.append_rows(A.dataset_id, junk)
    result = run(env)
    assert result.success, failures(result)
    assert_equal_tables(tables(env), reference[0])  # the junk changed nothing in the tables
    meta = clean_metadata(result, KEY_A)
    before = clean_metadata(reference[1], KEY_A)
    assert meta["malformed_rows"] == before["malformed_rows"] + 2
    assert meta["rejected_other_sensor"] == before["rejected_other_sensor"] + 1
    assert meta["rows_rejected"] == before["rows_rejected"] + 3
    assert_raw_is_what_the_portal_sent(env, A, KEY_A)  # the raw layer holds the junk, byte for byte
    stored = b"".join(raw_files(env, KEY_A).values())
    assert all(stored.count(line + b"\n") == 1 for line in junk)


def clean_metadata(result, key: str) -> dict:
    """The run's figures for clean/<key>: on the last day of its range."""
    for event in reversed(result.all_events):
        if event.event_type == DagsterEventType.ASSET_MATERIALIZATION and event.asset_key.to_user_string() == f"clean/{key}":
            return {k: v.value for k, v in event.step_materialization_data.materialization.metadata.items()}
    raise AssertionError(f"clean/{key} was not materialised")


def test_schema_drift_blocks_the_station_naming_the_missing_field(env, reference):
    env.portal.set_rows(A.dataset_id, portal_frame(env.portal, A.dataset_id).drop(columns=["humidite"]))
    result = run(env)
    assert not result.success
    text = "\n".join(failures(result).values()) + "\n".join(failed_check_texts(result))
    assert "humidite" in text and f"{KEY_A}" in text and A.dataset_id in text
    assert f"daily/{KEY_A}" not in materialized(result) and table(env, "daily", KEY_A) is None
    assert table(env, "clean", KEY_A) is None
    assert_raw_is_what_the_portal_sent(env, A, KEY_A)  # raw succeeded: it keeps what was sent
    got = tables(env, keys=[KEY_B])
    assert_equal_tables(got, {name: frame for name, frame in reference[0].items() if name[1] == KEY_B})


def failed_check_texts(result) -> list[str]:
    """Descriptions of failed asset checks (when schema checks are asset checks)."""
    texts = []
    for event in result.all_events:
        if event.event_type == DagsterEventType.ASSET_CHECK_EVALUATION:
            evaluation = event.event_specific_data
            if not evaluation.passed:
                texts.append(f"{evaluation.description or ''} {evaluation.metadata}")
    return texts


def test_an_empty_window_is_an_empty_valid_partition(env, reference):
    day = dt.date(2020, 10, 22)
    frame = portal_frame(env.portal, A.dataset_id)
    local_day = pd.to_datetime(frame["heure_de_paris"], utc=True, errors="coerce").dt.tz_convert(PARIS).dt.date
    env.portal.set_rows(A.dataset_id, frame[local_day != day])
    result = run(env, day, day)
    assert result.success, failures(result)
    assert raw_files(env, KEY_A) == {f"2020/{day}/{A.dataset_id}.csv": ";".join(env.portal.header(A.dataset_id)).encode() + b"\n"}
    assert table(env, "clean", KEY_A).empty
    daily = table(env, "daily", KEY_A)
    assert daily["date"].dt.date.tolist() == [day] and daily["slots_reported"].tolist() == [0]
    assert daily["slots_expected"].tolist() == [96] and daily["temperature_mean_c"].isna().all()
    clean_b = reference[0][("clean", KEY_B)]
    on_day = clean_b[clean_b["local_time"].dt.date == day].reset_index(drop=True)
    pd.testing.assert_frame_equal(table(env, "clean", KEY_B), on_day)


# --------------------------------------------------------------------------- machines dying, concurrent runs, disks
def portal_frame(portal: FakePortal, dataset: str) -> pd.DataFrame:
    return pd.DataFrame([line.decode().split(";") for line in portal.lines(dataset)], columns=portal.header(dataset))


def republish_warmer(portal: FakePortal, dataset: str) -> None:
    """The portal republishes the dataset with every temperature 1 °C higher: new bytes, new rows."""
    frame = portal_frame(portal, dataset)
    values = pd.to_numeric(frame["temperature_en_degre_c"], errors="coerce")
    frame["temperature_en_degre_c"] = [f"{v + 1:.1f}" if pd.notna(v) else text
                                       for v, text in zip(values, frame["temperature_en_degre_c"])]
    portal.set_rows(dataset, frame)


def pipeline_process(env: StandIn, first: dt.date, last: dt.date, *, pause: str | None = None) -> subprocess.Popen:
    """`python -m meteo_assets.run` for the stand-in in its own process, optionally paused mid-write."""
    command = [sys.executable, "-c", PAUSED_RUN, pause or "", KEY_A, "2020-10-22", "--start", str(first), "--end", str(last)]
    return subprocess.Popen(command, env={**os.environ, **env.env}, cwd=PROJECT_ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


PAUSED_RUN = textwrap.dedent('''
    import sys, time
    from meteo_assets import run
    from meteo_assets.storage import duckdb_io, raw_files

    where, station, day = sys.argv[1:4]

    def pause():
        print("PAUSED", flush=True)
        time.sleep(600)

    if where == "raw":  # the day's new folder is written, not swapped in yet
        swap_in = raw_files.swap_in

        def paused_swap(staging, target):
            if target.name == day and station in target.parts:
                pause()
            return swap_in(staging, target)

        raw_files.swap_in = paused_swap
    elif where == "duckdb":  # the window's rows deleted and the new ones inserted, not committed yet
        handle_output = duckdb_io.ContractFrameHandler.handle_output

        def paused_output(self, context, table_slice, obj, connection):
            metadata = handle_output(self, context, table_slice, obj, connection)
            if (table_slice.schema, table_slice.table) == ("clean", station):
                pause()
            return metadata

        duckdb_io.ContractFrameHandler.handle_output = paused_output
    sys.exit(run.main(sys.argv[4:]))
''')


def kill_when_paused(process: subprocess.Popen) -> None:
    watchdog = threading.Timer(300, process.kill)  # never hang the suite if the pause is not reached
    watchdog.start()
    try:
        for line in process.stdout:
            if line.startswith("PAUSED"):
                break
        else:
            raise AssertionError(f"the run ended before pausing: {process.stderr.read()[-3000:]}")
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
    finally:
        watchdog.cancel()
        process.stdout.close()
        process.stderr.close()


@pytest.fixture(scope="module")
def warmer(tmp_path_factory):
    """A clean run of the republished data: what a rerun after the kill must give."""
    with stand_in(tmp_path_factory.mktemp("warmer"), FakePortal(SPECS), SPECS) as env:
        republish_warmer(env.portal, A.dataset_id)
        assert run(env).success
        yield tables(env), raw_files(env, KEY_A)


def test_kill_9_mid_write_keeps_the_previous_version_and_a_rerun_is_exact(env, reference, warmer):
    assert run(env).success
    before = raw_files(env, KEY_A)
    republish_warmer(env.portal, A.dataset_id)
    days = {d: f"2020/2020-10-{d}/{A.dataset_id}.csv" for d in range(20, 25)}

    kill_when_paused(pipeline_process(env, FIRST, LAST, pause="raw"))  # while swapping in the 22nd
    assert_equal_tables(tables(env), reference[0])
    after = raw_files(env, KEY_A)
    assert after.keys() == before.keys()  # no day went missing: each is one whole version, old or new
    assert [d for d, name in days.items() if after[name] == warmer[1][name] != before[name]] == [20, 21]
    assert [d for d, name in days.items() if after[name] == before[name] != warmer[1][name]] == [22, 23, 24]

    kill_when_paused(pipeline_process(env, FIRST, LAST, pause="duckdb"))  # inside the clean table's transaction
    assert_equal_tables(tables(env), reference[0])  # DuckDB replays its log: the kill's transaction is gone
    assert raw_files(env, KEY_A) == warmer[1]  # raw had finished before the kill

    rerun = pipeline_process(env, FIRST, LAST)
    out, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, out + err[-3000:]
    # the killed runs kept their duckdb_writer slot: without releasing them the rerun would wait forever
    # (the second killed run had released the first)
    assert err.count("was cut off (killed?): marked failed, its slots freed") == 1
    assert_equal_tables(tables(env), warmer[0])
    assert raw_files(env, KEY_A) == warmer[1]


READER = textwrap.dedent('''
    import json, pathlib, sys, time
    import meteo_assets

    stop, reads, errors = pathlib.Path(sys.argv[1]), 0, []
    while not stop.exists():
        try:
            daily = meteo_assets.load_daily(start="2020-10-18", end="2020-10-26")
            clean = meteo_assets.load_clean(start="2020-10-18", end="2020-10-26")
        except FileNotFoundError:  # no database yet
            continue
        except Exception as exc:
            errors.append(repr(exc))
            continue
        reads += 1
        if daily.duplicated(["station", "date"]).any() or clean.duplicated(["station", "observed_at"]).any():
            errors.append("a reader saw duplicate rows")
        time.sleep(0.05)  # a notebook, not a hammer
    print(json.dumps({"reads": reads, "errors": errors}))
''')
OVERLAPPING = ((dt.date(2020, 10, 18), dt.date(2020, 10, 23)), (dt.date(2020, 10, 21), dt.date(2020, 10, 26)))


@pytest.fixture(scope="module")
def union(tmp_path_factory):
    """One clean run over both ranges."""
    with stand_in(tmp_path_factory.mktemp("union"), FakePortal(SPECS), SPECS) as env:
        assert run(env, OVERLAPPING[0][0], OVERLAPPING[1][1]).success
        yield tables(env)


def test_concurrent_overlapping_runs_and_notebook_readers(env, union, tmp_path):
    # no duckdb_writer pool here: the two runs' writers contend for the DuckDB file itself
    with env.activated():
        DagsterInstance.get().dispose()  # create the instance's SQLite storage once, not in two racing processes
    stop = tmp_path / "stop"
    reader = subprocess.Popen([sys.executable, "-c", READER, str(stop)], env={**os.environ, **env.env},
                              cwd=PROJECT_ROOT, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    runs = [pipeline_process(env, first, last) for first, last in OVERLAPPING]
    outputs = [process.communicate(timeout=600) for process in runs]
    stop.touch()
    read_out, read_err = reader.communicate(timeout=120)
    for process, (out, err) in zip(runs, outputs):
        assert process.returncode == 0, out + err[-3000:]
    report = json.loads(read_out.splitlines()[-1])
    assert report["errors"] == [] and report["reads"] > 0, read_err[-3000:]

    got = tables(env)
    for name in [n for n in got if n[0] == "clean"]:
        pd.testing.assert_frame_equal(got[name], union[name])  # no duplicate, no lost row
    # The Météo-France windows of the overlap's edge days reach into the other run's range: which
    # run wrote them last decides whether they had that neighbour (a sequential pair does the same).
    edges = {dt.date(2020, 10, 21): ["tn_mf_c"], dt.date(2020, 10, 23): ["tx_mf_c", "rr_mf_mm"]}
    for name in [n for n in got if n[0] == "daily"]:
        mine, want = got[name].set_index("date"), union[name].set_index("date")
        for day, columns in edges.items():
            at = pd.Timestamp(day)
            for column in columns:
                assert pd.isna(mine.at[at, column]) or mine.at[at, column] == want.at[at, column]
                mine.at[at, column] = want.at[at, column]
        pd.testing.assert_frame_equal(mine, want)


@contextlib.contextmanager
def read_only(folder: Path):
    """`folder` made unwritable for this process: a read-only bind mount as root (root ignores
    permissions), write permissions removed otherwise."""
    if os.geteuid() == 0:
        subprocess.run(["mount", "--bind", str(folder), str(folder)], check=True)
        try:
            subprocess.run(["mount", "-o", "remount,ro,bind", str(folder)], check=True)
            yield
        finally:
            subprocess.run(["umount", str(folder)], check=True)
        return
    modes = {path: path.stat().st_mode for path in [folder, *folder.rglob("*")] if path.is_dir()}
    for path, mode in modes.items():
        path.chmod(mode & ~0o222)
    try:
        yield
    finally:
        for path, mode in modes.items():
            path.chmod(mode)


def test_an_unwritable_data_dir_fails_clearly_before_any_write(env, reference):
    assert run(env).success
    before = {key: raw_files(env, key) for key in (KEY_A, KEY_B)}
    republish_warmer(env.portal, A.dataset_id)
    data = env.folder / "data"
    with read_only(data):
        assert not os.access(data, os.W_OK)
        downloads = run(env)
        writes = run(env, layers=("clean", "daily"))  # the raw days are there: only the DuckDB write is refused
    for key in (KEY_A, KEY_B):
        message = failures(downloads)[f"raw__{key}"]
        assert f"StorageUnavailable: raw/{key}, partition {FIRST}…{LAST}: {data / 'raw'} is not writable" in message
        assert "nothing was written. Check METEO_DATA_DIR." in message
        message = failures(writes)[f"clean__{key}"]
        assert f"clean.{key} in {data / 'meteo.duckdb'}: {data} is not writable" in message
        assert raw_files(env, key) == before[key]
    assert not materialized(downloads) and not materialized(writes)
    assert_equal_tables(tables(env), reference[0])


@pytest.fixture
def small_disk(env):
    """The data dir on a 16 MiB tmpfs, to fill up (mounting needs root; CI runs as root)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    data = env.folder / "data"
    data.mkdir(exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(data)], check=True)
    try:
        yield data
    finally:
        subprocess.run(["umount", str(data)], check=True)


def fill(folder: Path, leave: int) -> Path:
    """Fill `folder`'s file system, leaving about `leave` bytes free."""
    filler = folder / "filler"
    free = os.statvfs(folder).f_bavail * os.statvfs(folder).f_frsize
    with open(filler, "wb") as handle:
        handle.truncate(0)
        handle.write(b"\0" * max(free - leave, 0))
    return filler


def test_a_full_disk_fails_clearly_before_any_write_and_keeps_the_previous_version(env, reference, warmer, small_disk,
                                                                                    monkeypatch):
    assert run(env).success
    before = raw_files(env, KEY_A)
    republish_warmer(env.portal, A.dataset_id)
    filler = fill(small_disk, leave=40 * 1024)

    result = run(env)  # checked at the start of the raw write
    message = failures(result)[f"raw__{KEY_A}"]
    assert f"StorageUnavailable: raw/{KEY_A}, partition {FIRST}…{LAST}: needs about " in message
    assert f"KiB in {small_disk / 'raw'}, only " in message and "(no space left on device); nothing was written" in message
    assert raw_files(env, KEY_A) == before and not materialized(result)

    # the disk fills up during the write after all (another process writing): that day's write fails whole
    monkeypatch.setattr("meteo_assets.storage.raw_files.ensure_room", lambda *args: None)
    filler.unlink()
    filler = fill(small_disk, leave=0)
    result = run(env)
    assert "No space left on device" in failures(result)[f"raw__{KEY_A}"]
    assert raw_files(env, KEY_A) == before
    assert not [p for p in (small_disk / "raw").rglob(".*") if p.name.endswith(".tmp")]  # staging removed
    monkeypatch.undo()

    # ... or between the raw write and the DuckDB write: the transaction cannot commit, nothing of it stays
    filler.unlink()
    write_raw = RawFilesIOManager.handle_output

    def write_raw_then_fill(self, context, obj):
        write_raw(self, context, obj)
        fill(small_disk, leave=0).rename(small_disk / f"filler-{context.asset_key.path[-1]}")

    monkeypatch.setattr(RawFilesIOManager, "handle_output", write_raw_then_fill)
    result = run(env)
    message = failures(result)[f"clean__{KEY_A}"]
    assert f"StorageUnavailable: clean.{KEY_A}, local_time in [2020-10-20 00:00+0200, 2020-10-25 00:00+0200)" in message
    assert "No space left on device" in message and "the previous version is intact" in message
    assert_equal_tables(tables(env), reference[0])
    monkeypatch.undo()

    for filler in small_disk.glob("filler*"):
        filler.unlink()
    assert run(env).success
    assert_equal_tables(tables(env), warmer[0])
    assert raw_files(env, KEY_A) == warmer[1]
