"""The pipeline end to end, through Dagster, against the stand-in portal on 127.0.0.1.

The tests taking `storage` or `network` run once per storage mode: local files and DuckDB, then
the raw bucket and the Parquet lake on a real S3 API (moto's server on 127.0.0.1). Tables are
read back as a notebook would (`load_daily`/`load_clean`), so the same assertions hold in both.
"""

import contextlib
import datetime as dt
import os
import re
import subprocess
import sys
import time

import duckdb
import pandas as pd
import pytest
from dagster import AssetKey, BackfillPolicy, DagsterEventType, DagsterInstance

import meteo_assets
from meteo_assets.config import PROJECT_ROOT, Settings, load_network
from meteo_assets.definitions import PIPELINE_JOB, build_definitions
from meteo_assets.portal import PortalClient, PortalUnreachable
from meteo_assets.resources import ExportRequest, PortalResource, build_resources
from meteo_assets.run import main as run_main
from meteo_assets.transform import clean_observations, daily_summary, parse_export
from meteo_assets_tests.fake_portal import FakePortal, StationSpec, default_network, split_archives
from meteo_assets_tests.paths import RESEARCH_DATA, research_file
from meteo_assets_tests.s3_server import STORAGE_MODES, once_per_storage_mode, s3_server, storage  # noqa: F401 (fixtures)
from meteo_assets_tests.stand_in import stand_in

FIRST, LAST = dt.date(2020, 10, 22), dt.date(2020, 10, 31)
SPECS = default_network(4, "2020-09-01", "2020-11-15", seed=3)


def run_range(first: dt.date, last: dt.date, selection=None):
    defs = build_definitions()
    job = defs.resolve_job_def(PIPELINE_JOB)
    return job.execute_in_process(
        instance=DagsterInstance.get(),
        tags={"dagster/asset_partition_range_start": first.isoformat(), "dagster/asset_partition_range_end": last.isoformat()},
        raise_on_error=False,
        asset_selection=selection,
    )


def table(schema: str, key: str) -> pd.DataFrame:
    """A station's whole table, read as a notebook would, from the storage the settings select."""
    load = meteo_assets.load_daily if schema == "daily" else meteo_assets.load_clean
    return load(stations=key)


def raw_day(station: str, day: dt.date) -> dict[str, bytes]:
    """A stored raw station-day (dataset id → bytes), from the raw store the settings select."""
    return build_resources(Settings.from_env())["raw_io_manager"].store().read_day(station, day)


@contextlib.contextmanager
def environment(values: dict[str, str]):
    with pytest.MonkeyPatch.context() as patch:
        for name, value in values.items():
            patch.setenv(name, value)
        yield


@pytest.fixture(scope="module")
def networks(tmp_path_factory, s3_server):
    """The same network run once per storage mode (each mode with its own identical stand-in portal)."""
    with once_per_storage_mode(tmp_path_factory, s3_server, SPECS, lambda: run_range(FIRST, LAST)) as runs:
        yield runs


@pytest.fixture(params=STORAGE_MODES)
def network(request, networks, monkeypatch):
    env, settings, result = networks[request.param]
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    return env, result


def expected_daily(portal: FakePortal, station, days: list[dt.date]) -> pd.DataFrame:
    """The contract applied at once to everything the portal holds for the station (no Dagster)."""
    frame = pd.concat([parse_export(_export(portal, ds)).frame for ds in station.datasets], ignore_index=True)
    window = (
        pd.Timestamp(f"{days[0]} 00:00", tz="Europe/Paris").tz_convert("UTC").to_pydatetime(),
        pd.Timestamp(f"{days[-1] + dt.timedelta(days=1)} 00:00", tz="Europe/Paris").tz_convert("UTC").to_pydatetime(),
    )
    clean = clean_observations(frame, station=station.key, sensor_id=station.sensor_id,
                               now=dt.datetime.now(dt.timezone.utc), settings=station.contract, window=window).frame
    return daily_summary(clean, station=station.key, days=days, settings=station.contract)


def _export(portal: FakePortal, dataset: str) -> bytes:
    header = ";".join(portal.header(dataset)).encode() + b"\n"
    return header + b"".join(line if line.endswith(b"\n") else line + b"\n" for line in portal.lines(dataset))


def test_every_station_materialises_and_matches_the_contract(network):
    env, result = network
    with env.activated():
        compare_with_contract(env, result)


def compare_with_contract(env, result):
    assert result.success
    stations = load_network(env.folder / "datasets.toml").stations
    assert len(stations) == 4
    days = [FIRST + dt.timedelta(days=i) for i in range((LAST - FIRST).days + 1)]
    for station in stations:
        got = table("daily", station.key)
        assert got["date"].dt.date.tolist() == days
        want = expected_daily(env.portal, station, days)
        # the first and last days' Météo-France windows reach outside the run's window
        inner = slice(1, -1)
        pd.testing.assert_frame_equal(
            got.iloc[inner].reset_index(drop=True),
            want.iloc[inner].reset_index(drop=True).astype(got.dtypes.to_dict()),
            check_exact=False, rtol=1e-9,
        )
        clean = table("clean", station.key)
        assert clean["observed_at"].is_unique and clean["observed_at"].is_monotonic_increasing
        assert got["slots_reported"].sum() == len(clean)


def test_both_storage_modes_give_identical_tables(networks):
    loaded, raw = {}, {}
    days = [FIRST + dt.timedelta(days=i) for i in range((LAST - FIRST).days + 1)]
    for mode, (env, settings, result) in networks.items():
        assert result.success
        with env.activated(), environment(settings):
            loaded[mode] = meteo_assets.load_daily(), meteo_assets.load_clean()
            stations = load_network(env.folder / "datasets.toml").stations
            raw[mode] = {(s.key, day): raw_day(s.key, day) for s in stations for day in days}
    local_daily, local_clean = loaded["local"]
    assert len(local_daily) == 4 * 10 and local_daily["slots_reported"].sum() == len(local_clean) > 3000
    for local, s3 in zip(loaded["local"], loaded["s3"]):
        pd.testing.assert_frame_equal(local, s3, check_exact=True)
    assert raw["local"] == raw["s3"] and all(raw["s3"].values())
    assert not (networks["s3"][0].folder / "data").exists()  # S3 mode writes nothing to the local disk


def test_archives_are_unioned_with_the_live_dataset(tmp_path, storage):
    spec = StationSpec("71-station-meteo-aucamville-ecole", 71, "2020-12-20", "2021-01-10", seed=5, quirks=False)
    specs = split_archives(spec, dt.datetime(2021, 1, 1, tzinfo=dt.timezone.utc), "nohyphen")
    assert len(specs) == 2
    with stand_in(tmp_path, FakePortal(specs), specs) as env, env.activated():
        assert run_range(dt.date(2020, 12, 30), dt.date(2021, 1, 2)).success
        daily = table("daily", "st71_aucamville_ecole")
        # 31 Dec comes from the archive, 1 Jan from both (its first hour is still 2020 in UTC), 2 Jan live
        assert daily["slots_reported"].tolist() == [96, 96, 96, 96]
        assert sorted(raw_day("st71_aucamville_ecole", dt.date(2021, 1, 1))) == sorted(s.dataset_id for s in specs)
        assert list(raw_day("st71_aucamville_ecole", dt.date(2021, 1, 2))) == [specs[-1].dataset_id]


def test_raw_layer_keeps_the_portal_bytes(network):
    env, _ = network
    station = load_network(env.folder / "datasets.toml").stations[0]
    days = [FIRST + dt.timedelta(days=i) for i in range((LAST - FIRST).days + 1)]
    with env.activated():
        stored = b"".join(
            line
            for day in days
            for content in raw_day(station.key, day).values()
            for line in content.splitlines(keepends=True)[1:]
        )
    served = {line if line.endswith(b"\n") else line + b"\n" for ds in station.datasets for line in env.portal.lines(ds)}
    assert stored and set(stored.splitlines(keepends=True)) <= served


def test_rematerialising_replaces_exactly(network):
    env, _ = network
    key = load_network(env.folder / "datasets.toml").stations[1].key
    with env.activated():
        before_clean, before_daily = table("clean", key), table("daily", key)
        assert run_range(dt.date(2020, 10, 25), dt.date(2020, 10, 26)).success
        assert run_range(dt.date(2020, 10, 25), dt.date(2020, 10, 25)).success
        pd.testing.assert_frame_equal(table("clean", key), before_clean)
        pd.testing.assert_frame_equal(table("daily", key), before_daily)


def test_a_station_with_no_data_gets_valid_empty_partitions(tmp_path, storage):
    late = StationSpec("72-station-meteo-launaguet-mairie", 72, "2020-10-27T23:00", "2020-11-05", seed=1, quirks=False)
    with stand_in(tmp_path, FakePortal([late]), [late]) as env, env.activated():
        assert run_range(dt.date(2020, 10, 24), dt.date(2020, 10, 27)).success
        assert table("clean", "st72_launaguet_mairie").empty
        daily = table("daily", "st72_launaguet_mairie")
        assert daily["slots_reported"].tolist() == [0, 0, 0, 0]
        assert daily["slots_expected"].tolist() == [96, 100, 96, 96]
        assert daily["temperature_mean_c"].isna().all()
        # the next day with data materialises on top of the empty table
        assert run_range(dt.date(2020, 10, 28), dt.date(2020, 10, 29)).success
        assert table("daily", "st72_launaguet_mairie")["slots_reported"].tolist() == [0, 0, 0, 0, 96, 96]


def test_a_missing_dataset_fails_that_station_only(tmp_path, capsys, storage):
    good = StationSpec("73-station-meteo-balma-gare", 73, "2020-10-01", "2020-11-01", seed=2)
    missing = "74-station-meteo-quint-fonsegrives-bourg"
    with stand_in(tmp_path, FakePortal([good]), [good], extra=[missing]) as env, env.activated():
        assert run_main(["--start", "2020-10-20", "--end", "2020-10-21"]) == 1
    out = capsys.readouterr().out
    good_line = next(line for line in out.splitlines() if line.startswith("st73_balma_gare"))
    assert good_line.endswith("ok")
    failed_line = next(line for line in out.splitlines() if line.startswith("st74_quint_fonsegrives_bourg"))
    assert failed_line.endswith("FAILED")
    assert f"dataset {missing}" in out and "HTTP 404" in out and "NotFoundError" in out
    assert "2020-10-20" in out.split("station(s) failed:")[1]


def test_an_unknown_schema_fails_with_the_missing_fields(tmp_path, storage):
    spec = StationSpec("75-station-meteo-l-union-parc", 75, "2020-10-01", "2020-11-01", seed=4, quirks=False)
    other = StationSpec("76-station-meteo-saint-orens-lycee", 76, "2020-10-01", "2020-11-01", seed=4, quirks=False)
    portal = FakePortal([spec, other])
    drifted = pd.DataFrame([line.decode().rstrip("\n").split(";") for line in portal.lines(spec.dataset_id)],
                           columns=portal.header(spec.dataset_id)).rename(columns={"temperature_en_degre_c": "temperature"})
    portal.set_rows(spec.dataset_id, drifted)
    with stand_in(tmp_path, portal, [spec, other]) as env, env.activated():
        result = run_range(dt.date(2020, 10, 20), dt.date(2020, 10, 21))
        assert not result.success
        failures = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
        assert [e.step_key for e in failures] == ["raw__st75_l_union_parc"]  # the blocking raw check stops it
        message = failures[0].event_specific_data.user_failure_data.description
        assert "station st75_l_union_parc" in message and "2020-10-20" in message
        assert "temperature_en_degre_c" in message and spec.dataset_id in message
        assert len(table("daily", "st76_saint_orens_lycee")) == 2


def test_real_station_dst_day_and_its_two_hour_hole(tmp_path, storage):
    research_file("stations/42-station-meteo-toulouse-parc-compans-cafarelli.csv.gz")
    toml = '[[stations]]\ndataset = "42-station-meteo-toulouse-parc-compans-cafarelli"\n'
    with stand_in(tmp_path, FakePortal.from_research_data(RESEARCH_DATA), toml=toml) as env, env.activated():
        assert run_range(dt.date(2020, 10, 24), dt.date(2020, 10, 26)).success
        daily = table("daily", "st42_toulouse_parc_compans_cafarelli").set_index("date")
        fall_back = daily.loc["2020-10-25"]
        assert (fall_back["slots_expected"], fall_back["slots_reported"]) == (100, 92)
        assert daily.loc["2020-10-24", "slots_expected"] == 96
        # loaded in a notebook, by number, dataset id or key
        by_number = meteo_assets.load_daily(stations=42, start="2020-10-25", end=dt.date(2020, 10, 25))
        by_id = meteo_assets.load_daily(stations=["42-station-meteo-toulouse-parc-compans-cafarelli"],
                                        start=dt.datetime(2020, 10, 25, 12), end="2020-10-25")
        pd.testing.assert_frame_equal(by_number, by_id)
        assert by_number["slots_reported"].tolist() == [92]
        obs = meteo_assets.load_clean(stations=None, start="2020-10-25", end="2020-10-25")
        assert len(obs) == 92 and str(obs["observed_at"].dt.tz) == "UTC"
        hole = obs["observed_at"].between(pd.Timestamp("2020-10-25 00:00", tz="UTC"), pd.Timestamp("2020-10-25 01:45", tz="UTC"))
        assert not hole.any() and (obs["observed_at"] == pd.Timestamp("2020-10-25 02:00", tz="UTC")).any()
        if storage == "local":  # nothing keeps the file open: a writer can take it right away
            duckdb.connect(env.env["METEO_DATA_DIR"] + "/meteo.duckdb").close()
        value = build_definitions().load_asset_value(
            AssetKey(["daily", "st42_toulouse_parc_compans_cafarelli"]), partition_key="2020-10-25"
        )
        assert value["slots_reported"].tolist() == [92]


def test_cli_partition_range(tmp_path, storage):
    spec = StationSpec("77-station-meteo-cornebarrieu-stade", 77, "2020-01-01", "2020-03-01", seed=6)
    key = "st77_cornebarrieu_stade"
    with stand_in(tmp_path, FakePortal([spec]), [spec]) as env:
        command = [
            os.path.join(os.path.dirname(sys.executable), "dagster"), "asset", "materialize",
            "-m", "meteo_assets.definitions",
            "--select", f"raw/{key},clean/{key},daily/{key}",
            "--partition-range", "2020-01-01...2020-01-31",
        ]
        done = subprocess.run(command, env={**os.environ, **env.env}, capture_output=True, text=True, timeout=300, cwd=PROJECT_ROOT)
        assert done.returncode == 0, done.stderr[-3000:]
        with env.activated():
            daily = table("daily", key)
            instance = DagsterInstance.get()
            recorded = {layer: instance.get_materialized_partitions(AssetKey([layer, key])) for layer in ("raw", "clean", "daily")}
            checks = [e.asset_check_evaluation for e in instance.all_logs(instance.get_runs()[0].run_id, of_type=DagsterEventType.ASSET_CHECK_EVALUATION)
                      if e.step_key.endswith(f"__{key}")]  # the station's steps (the freshness step's checks are not logged)
        assert len(daily) == 31 and daily["slots_reported"].gt(0).sum() >= 25  # the generator leaves whole-day gaps
        # the terminal gets a line per step (the instance logs at INFO), the event log every day
        lines = [line for line in done.stderr.splitlines() if " - dagster - " in line]
        for layer, rows in (("clean", daily["slots_reported"].sum()), ("daily", 31)):
            summary = [line for line in lines if line.endswith(f" - {layer}/{key}: {rows:,} rows for 31 days (2020-01-01…2020-01-31)")]
            assert len(summary) == 1 and " - INFO - " in summary[0], lines
        warned = set(re.findall(rf" - WARNING - .* - (?:clean|daily)/{key}: check (\w+) failed: ", done.stderr))
        assert warned == {c.check_name for c in checks if not c.passed} and warned and len(checks) > len(warned), lines
        assert "ASSET_MATERIALIZATION" not in done.stderr and "STEP_START" not in done.stderr
        assert all(len(days) == 31 for days in recorded.values()), {layer: len(days) for layer, days in recorded.items()}
        # one export request per dataset for the whole month, not one per day
        exports = [r for r in env.portal.requests if r.path.endswith("/exports/csv")]
        assert len(exports) == 1


def test_definitions_load_for_the_whole_network(storage):
    defs = build_definitions()
    network = load_network(PROJECT_ROOT / "datasets.toml")
    keys = {key.to_user_string() for key in defs.resolve_asset_graph().get_all_asset_keys()}
    for station in network.enabled:
        assert {f"raw/{station.key}", f"clean/{station.key}", f"daily/{station.key}"} <= keys
    assert {"stations", "network/daily", "dashboard"} <= keys and len(keys) == 3 * len(network.enabled) + 3
    daily = defs.resolve_assets_def(AssetKey(["daily", "st42_toulouse_parc_compans_cafarelli"]))
    assert daily.partitions_def.timezone == "Europe/Paris"
    assert daily.partitions_def.start.date() == dt.date(2019, 6, 1)
    assert daily.backfill_policy == BackfillPolicy.single_run()


def test_the_loaded_code_location_and_a_runs_heap_at_exit_are_out_of_the_collectors_reach():
    """Python's full garbage collections walked every object: the loaded code location's during a
    run (7 passes, ~0.8 s of a year of 20 stations), the backfill's whole heap at exit (~1.2 s).
    `definitions.py` freezes the objects alive once it is loaded, and those alive at exit."""
    probe = ("import atexit, gc; before = gc.get_freeze_count(); import meteo_assets.definitions; "
             "loaded = gc.get_freeze_count(); run = [[] for _ in range(100_000)]; "
             "atexit._run_exitfuncs(); print(before, loaded, gc.get_freeze_count())")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, cwd=PROJECT_ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    before, loaded, at_exit = map(int, done.stdout.split())
    assert before == 0 and loaded > 100_000  # dagster, pandas and the definitions: ~180,000 objects
    assert at_exit > loaded + 90_000  # and what the run made


def test_unreachable_portal_says_how_to_point_elsewhere():
    client = PortalClient("http://127.0.0.1:9", retries=0)
    with pytest.raises(PortalUnreachable, match="METEO_PORTAL_URL"):
        client.dataset("42-station-meteo-toulouse-parc-compans-cafarelli")


def test_make_run_without_a_portal_says_so_at_once(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("METEO_PORTAL_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("METEO_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    assert run_main(["--start", "2020-10-20", "--end", "2020-10-21"]) == 1
    err = capsys.readouterr().err
    assert "could not reach the portal at 127.0.0.1:9" in err and "METEO_PORTAL_URL" in err
    assert not (tmp_path / "home").exists()  # stopped before any run was recorded


def test_the_next_stations_exports_download_ahead_once_each():
    """While a raw step records its days, the exports of the next two stations download; each
    request is made once, what was fetched ahead is exactly what the portal serves, and another
    run never gets what a run fetched ahead."""
    start = dt.datetime(2020, 10, 21, 22, tzinfo=dt.timezone.utc)
    end = start + dt.timedelta(days=3)
    groups = [[ExportRequest(spec.dataset_id, start, end, f"station {spec.dataset_id}")] for spec in SPECS]
    ids = [spec.dataset_id for spec in SPECS]

    def exported() -> list[str]:
        return [r.path.split("/")[-3] for r in portal.requests if r.path.endswith("/exports/csv")]

    def settled(count: int) -> list[str]:
        deadline = time.monotonic() + 20
        while len(exported()) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.2)  # nothing more should come
        return sorted(exported())

    with FakePortal(SPECS) as portal:
        resource = PortalResource(base_url=portal.url, max_concurrent=2)
        first = resource.exports(groups[0], ahead=groups[1:], run_id="run-1")
        assert settled(3) == sorted(ids[:3])  # two stations ahead, no more
        second = resource.exports(groups[1], ahead=groups[2:], run_id="run-1")
        assert settled(4) == sorted(ids[:4])  # the next one starts; the second was not asked again
        resource.exports(groups[2], run_id="run-2")
        assert settled(5) == sorted([*ids[:4], ids[2]])  # another run asks the portal itself
        client = PortalClient(portal.url)
        assert first[0].content == client.export_csv(ids[0], start, end).content
        assert second[0].content == client.export_csv(ids[1], start, end).content
        assert b"\n" in second[0].content and second[0].dataset == ids[1]
