"""The Parquet lake on a real S3 API (moto's server on 127.0.0.1): layout, file counts, exact
rewrites, partition windows, concurrent and interrupted writers, and third-party readers."""

import datetime as dt
import os
import signal
import subprocess
import sys
import textwrap

import duckdb
import pandas as pd
import pyarrow.dataset as ds
import pytest
from dagster import AssetKey, DagsterInstance, PartitionKeyRange, build_input_context, build_output_context
from dagster_aws.s3 import S3Resource

import meteo_assets
from meteo_assets.config import PROJECT_ROOT, load_network
from meteo_assets.definitions import CATALOGUE_JOB, build_definitions
from meteo_assets.partitions import daily_partitions
from meteo_assets.storage.duckdb_io import table_schema
from meteo_assets.storage.lake import LAKE_TABLES, LakeStore, ParquetLakeIOManager, arrow_filesystem, to_frame
from meteo_assets.storage.s3 import S3Bucket
from meteo_assets.transform import clean_observations, parse_export
from meteo_assets.transform.contract import ContractSettings, day_window_utc
from meteo_assets_tests.fake_portal import FakePortal, StationSpec, default_network, generate_rows, render_csv
from meteo_assets_tests.s3_server import TEST_AWS_ENV, SlowProxy, aws_env, s3_server  # noqa: F401 (fixtures)
from meteo_assets_tests.stand_in import stand_in
from meteo_assets_tests.test_pipeline import environment, run_range

CLEAN = LAKE_TABLES["clean"]
SPEC = StationSpec("42-station-meteo-toulouse-parc-compans-cafarelli", 42, "2020-09-20", "2020-11-10", seed=8)
KEY = "st42_toulouse_parc_compans_cafarelli"


def days(first: str, last: str) -> list[dt.date]:
    start, end = dt.date.fromisoformat(first), dt.date.fromisoformat(last)
    return [start + dt.timedelta(days=i) for i in range((end - start).days + 1)]


def clean_frame(first: str, last: str) -> pd.DataFrame:
    """The clean table of SPEC for Paris days first…last, straight from the contract (no Dagster)."""
    window = (day_window_utc(dt.date.fromisoformat(first))[0], day_window_utc(dt.date.fromisoformat(last))[1])
    parsed = parse_export(render_csv(generate_rows(SPEC))).frame
    return clean_observations(parsed, station=KEY, sensor_id=42, now=dt.datetime.now(dt.timezone.utc),
                              settings=ContractSettings(), window=window).frame


@pytest.fixture
def lake(s3_server, aws_env, request):
    """An empty versioned bucket of its own for the test."""
    client = s3_server.client()
    name = f"lake-{request.node.name.replace('_', '-')[:40].strip('-')}".lower()
    create_bucket(client, name)
    return LakeStore(S3Bucket(client, name, "METEO_LAKE_BUCKET").ensure())


def versions(store: LakeStore) -> dict[str, int]:
    listed = store.bucket.client.list_object_versions(Bucket=store.bucket.name).get("Versions", [])
    counts: dict[str, int] = {}
    for version in listed:
        counts[version["Key"]] = counts.get(version["Key"], 0) + 1
    return counts


def month_key(month: int, year: int = 2020, station: str = KEY) -> str:
    return f"clean/station={station}/year={year}/month={month:02d}/part.parquet"


def create_bucket(client, name: str) -> None:
    """A versioned bucket: every PUT leaves a version, so writes can be counted."""
    client.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": TEST_AWS_ENV["AWS_DEFAULT_REGION"]})
    client.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})


def stored(store: LakeStore, first: str, last: str) -> pd.DataFrame:
    return to_frame(store.read_days(CLEAN, KEY, dt.date.fromisoformat(first), dt.date.fromisoformat(last)), CLEAN, KEY)


def on_days(frame: pd.DataFrame, first: str, last: str | None = None) -> pd.DataFrame:
    return frame[frame["local_time"].dt.date.isin(days(first, last or first))].reset_index(drop=True)


def except_days(frame: pd.DataFrame, first: str, last: str) -> pd.DataFrame:
    return frame[~frame["local_time"].dt.date.isin(days(first, last))].reset_index(drop=True)


def test_a_ranged_write_touches_each_month_file_once_and_a_rewrite_is_exact(lake):
    frame = clean_frame("2020-10-01", "2020-11-05")
    written = lake.write_days(CLEAN, KEY, days("2020-10-01", "2020-11-05"), frame)
    assert written == {month_key(10): len(on_days(frame, "2020-10-01", "2020-10-31")),
                       month_key(11): len(on_days(frame, "2020-11-01", "2020-11-05"))}
    assert versions(lake) == {month_key(10): 1, month_key(11): 1}
    before = stored(lake, "2020-10-01", "2020-11-05")
    assert len(before) == len(frame) > 3000 and before["observed_at"].is_monotonic_increasing
    pd.testing.assert_frame_equal(before, frame.astype(before.dtypes.to_dict()).reset_index(drop=True))

    # re-materialise two days: the 15th with other values, the 16th now without any row
    changed = on_days(frame, "2020-10-15").assign(temperature_c=lambda f: f["temperature_c"] + 1.0)
    lake.write_days(CLEAN, KEY, days("2020-10-15", "2020-10-16"), changed)
    assert versions(lake) == {month_key(10): 2, month_key(11): 1}
    after = stored(lake, "2020-10-01", "2020-11-05")
    pd.testing.assert_frame_equal(except_days(after, "2020-10-15", "2020-10-16"),
                                  except_days(before, "2020-10-15", "2020-10-16"))
    pd.testing.assert_series_equal(on_days(after, "2020-10-15")["temperature_c"],
                                   on_days(before, "2020-10-15")["temperature_c"] + 1.0)
    assert on_days(after, "2020-10-16").empty and not on_days(before, "2020-10-16").empty

    # a range across a month boundary writes both months once more, and a new month appears
    lake.write_days(CLEAN, KEY, days("2020-09-29", "2020-10-02"), clean_frame("2020-09-29", "2020-10-02"))
    assert versions(lake) == {month_key(9): 1, month_key(10): 3, month_key(11): 1}
    pd.testing.assert_frame_equal(stored(lake, "2020-09-29", "2020-11-05"), pd.concat(
        [stored(lake, "2020-09-29", "2020-09-30"), after], ignore_index=True))
    assert len(stored(lake, "2020-09-29", "2020-09-30")) == 2 * 96


def test_rows_outside_the_written_partitions_are_refused(lake):
    frame = clean_frame("2020-10-14", "2020-10-15")
    outside = rf"clean/{KEY}: \d+ rows are outside the partitions 2020-10-15…2020-10-15 .*2020-10-14"
    with pytest.raises(ValueError, match=outside):
        lake.write_days(CLEAN, KEY, days("2020-10-15", "2020-10-15"), frame)
    with pytest.raises(ValueError, match="other stations"):
        lake.write_days(CLEAN, KEY, days("2020-10-14", "2020-10-15"), frame.assign(station="st01_elsewhere"))
    assert versions(lake) == {}


def test_load_input_serves_a_partition_window_from_the_touched_months_only(lake, s3_server):
    lake.write_days(CLEAN, KEY, days("2020-09-25", "2020-11-05"), clean_frame("2020-09-25", "2020-11-05"))
    manager = ParquetLakeIOManager(s3=S3Resource(endpoint_url=s3_server.url), bucket=lake.bucket.name)
    requested = []
    manager.store().bucket.client.meta.events.register(
        "before-parameter-build.s3.GetObject", lambda params, **_: requested.append(params["Key"])
    )
    partitions = daily_partitions(load_network(PROJECT_ROOT / "datasets.toml"))
    context = build_input_context(asset_key=AssetKey(["clean", KEY]), asset_partitions_def=partitions,
                                  asset_partition_key_range=PartitionKeyRange("2020-10-31", "2020-11-01"))
    frame = manager.load_input(context)
    assert requested == [month_key(10), month_key(11)]
    assert sorted(set(frame["local_time"].dt.date)) == days("2020-10-31", "2020-11-01")
    pd.testing.assert_frame_equal(frame, stored(lake, "2020-10-31", "2020-11-01"))


def test_another_partitioned_asset_is_a_monthly_table_of_its_own(lake, s3_server):
    """`network/daily` (all stations in one table) goes through the same IO manager, declared by its metadata."""
    columns = {"station": "VARCHAR", "date": "DATE", "slots_reported": "INTEGER", "heat_island_index_c": "DOUBLE"}
    metadata = {"partition_expr": "date", "dagster/column_schema": table_schema(columns)}
    partitions = daily_partitions(load_network(PROJECT_ROOT / "datasets.toml"))
    manager = ParquetLakeIOManager(s3=S3Resource(endpoint_url=s3_server.url), bucket=lake.bucket.name)
    frame = pd.DataFrame({
        "station": ["st02_b", "st01_a"] * 3,
        "date": pd.to_datetime(["2020-10-31"] * 2 + ["2020-11-01"] * 2 + ["2020-11-02"] * 2),
        "slots_reported": [96, 95, 100, 99, 96, 0],
        "heat_island_index_c": [0.5, -0.5, 1.0, -1.0, None, None],
    })
    span = PartitionKeyRange("2020-10-31", "2020-11-02")
    with build_output_context(asset_key=AssetKey(["network", "daily"]), definition_metadata=metadata,
                              asset_partitions_def=partitions, asset_partition_key_range=span) as context:
        manager.handle_output(context, frame)
    assert versions(lake) == {f"network/daily/year=2020/month={m}/part.parquet": 1 for m in ("10", "11")}
    upstream = build_output_context(asset_key=AssetKey(["network", "daily"]), definition_metadata=metadata)
    loaded = manager.load_input(build_input_context(asset_key=AssetKey(["network", "daily"]), upstream_output=upstream,
                                                    asset_partitions_def=partitions, asset_partition_key_range=span))
    expected = frame.sort_values(["date", "station"], ignore_index=True)
    expected = expected.astype({"date": "datetime64[us]", "slots_reported": "int32"})
    pd.testing.assert_frame_equal(loaded, expected)


def test_a_concurrent_rewrite_of_the_same_month_loses_no_day(lake, s3_server):
    lake.write_days(CLEAN, KEY, days("2020-10-01", "2020-10-31"), clean_frame("2020-10-01", "2020-10-31"))
    other = LakeStore(S3Bucket(s3_server.client(), lake.bucket.name, "METEO_LAKE_BUCKET"))
    emptied_5th = []

    def meanwhile(**_):  # right after our read of the month, another run rewrites the 5th
        if not emptied_5th:
            emptied_5th.append(True)
            other.write_days(CLEAN, KEY, days("2020-10-05", "2020-10-05"), clean_frame("2020-10-05", "2020-10-05").iloc[:0])

    lake.bucket.client.meta.events.register("after-call.s3.GetObject", meanwhile)
    lake.write_days(CLEAN, KEY, days("2020-10-20", "2020-10-20"), clean_frame("2020-10-20", "2020-10-20").iloc[:10])
    month = stored(lake, "2020-10-01", "2020-10-31")
    assert on_days(month, "2020-10-05").empty  # the other run's change survived ours
    assert len(on_days(month, "2020-10-20")) == 10  # and ours was merged on top of it, on a second try
    assert versions(lake)[month_key(10)] == 3


def test_a_writer_killed_mid_upload_leaves_the_previous_month_file(lake, s3_server, tmp_path):
    lake.write_days(CLEAN, KEY, days("2020-10-01", "2020-10-31"), clean_frame("2020-10-01", "2020-10-31"))
    previous = lake.bucket.client.get_object(Bucket=lake.bucket.name, Key=month_key(10))["Body"].read()
    keys_before = lake.bucket.keys("")
    changed = clean_frame("2020-10-01", "2020-10-31").assign(temperature_c=lambda f: f["temperature_c"] + 0.3)
    changed.to_pickle(tmp_path / "october.pkl")
    # the production write path, in a process of its own that is killed while it sends the month file
    writer = textwrap.dedent(f"""
        import datetime as dt, sys
        import boto3, pandas as pd
        from meteo_assets.storage.lake import LAKE_TABLES, LakeStore
        from meteo_assets.storage.s3 import S3Bucket
        store = LakeStore(S3Bucket(boto3.client("s3", endpoint_url=sys.argv[1]), "{lake.bucket.name}", "METEO_LAKE_BUCKET"))
        days = [dt.date(2020, 10, 1) + dt.timedelta(days=i) for i in range(31)]
        store.write_days(LAKE_TABLES["clean"], "{KEY}", days, pd.read_pickle(sys.argv[2]))
        print("written")
    """)
    port = int(s3_server.url.rsplit(":", 1)[1])
    with SlowProxy(port, watch=month_key(10).encode(), rate=10_000) as proxy:
        process = subprocess.Popen([sys.executable, "-c", writer, proxy.url, str(tmp_path / "october.pkl")],
                                   cwd=PROJECT_ROOT, env={**os.environ, **TEST_AWS_ENV},
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            assert proxy.upload_started.wait(120), "no PUT of the month file went through the proxy"
            assert proxy.body_in_flight.wait(30)  # part of the new file is on its way
            process.send_signal(signal.SIGKILL)
        finally:
            process.wait()
    assert process.returncode == -signal.SIGKILL and b"written" not in process.stdout.read()
    assert proxy.upload_bytes < 0.8 * len(previous)  # killed while the body was in flight
    assert lake.bucket.keys("") == keys_before  # no temporary or partial object anywhere
    assert lake.bucket.client.get_object(Bucket=lake.bucket.name, Key=month_key(10))["Body"].read() == previous
    before = stored(lake, "2020-10-01", "2020-10-31")
    # the same write, not interrupted, does replace the file
    subprocess.run([sys.executable, "-c", writer, s3_server.url, str(tmp_path / "october.pkl")], cwd=PROJECT_ROOT,
                   env={**os.environ, **TEST_AWS_ENV}, check=True, capture_output=True)
    after = stored(lake, "2020-10-01", "2020-10-31")
    pd.testing.assert_series_equal(after["temperature_c"], before["temperature_c"] + 0.3)


def test_the_pipeline_lake_is_one_hive_table_for_pyarrow_and_duckdb(tmp_path, s3_server, aws_env):
    specs = default_network(2, "2020-09-20", "2020-11-10", seed=11)
    settings = s3_server.storage_env("hive")
    client = s3_server.client()
    create_bucket(client, "hive-lake")
    store = LakeStore(S3Bucket(client, "hive-lake", "METEO_LAKE_BUCKET"))
    with stand_in(tmp_path, FakePortal(specs), specs) as env, env.activated(), environment(settings):
        assert run_range(dt.date(2020, 10, 28), dt.date(2020, 11, 3)).success
        keys = load_network(env.folder / "datasets.toml").stations
        expected = {f"{table}/station={s.key}/year=2020/month={m:02d}/part.parquet"
                    for table in ("clean", "daily") for s in keys for m in (10, 11)}
        assert versions(store) == dict.fromkeys(expected, 1)  # one file per station-month, each written once
        assert run_range(dt.date(2020, 10, 30), dt.date(2020, 10, 31)).success
        assert versions(store) == {key: 2 if "month=10" in key else 1 for key in expected}
        clean, daily = meteo_assets.load_clean(), meteo_assets.load_daily()
        assert not (env.folder / "data").exists()  # S3 mode keeps nothing on the local disk

    # pyarrow, told nothing but the folder and "hive"
    table = ds.dataset("hive-lake/clean", filesystem=arrow_filesystem(s3_server.url), partitioning="hive").to_table()
    assert set(table.column_names) == set(clean.columns) | {"year", "month"}
    assert table.num_rows == len(clean) > 1000
    assert sorted(set(table["station"].to_pylist())) == sorted(s.key for s in keys)

    # DuckDB on a copy of the bucket, with hive partitioning, sees the contract's types
    for key in expected:
        path = tmp_path / "copy" / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(client.get_object(Bucket="hive-lake", Key=key)["Body"].read())
    with duckdb.connect() as conn:
        conn.execute("SET TimeZone = 'UTC'")
        glob = str(tmp_path / "copy" / "daily" / "*" / "*" / "*" / "*.parquet")
        types = column_types(conn, glob)
        assert (types["date"], types["slots_expected"], types["station"]) == ("DATE", "INTEGER", "VARCHAR")
        from_duckdb = conn.execute(
            f"SELECT * EXCLUDE (year, month) FROM read_parquet('{glob}', hive_partitioning = true) ORDER BY station, date"
        ).fetchdf()
        glob = str(tmp_path / "copy" / "clean" / "*" / "*" / "*" / "*.parquet")
        types = column_types(conn, glob)
        assert (types["observed_at"], types["local_time"]) == ("TIMESTAMP WITH TIME ZONE", "TIMESTAMP")
    pd.testing.assert_frame_equal(from_duckdb[list(daily.columns)], daily)

    # the loaders open only the requested stations' files of the months holding the requested days
    first, second = (s.key for s in keys)
    client.put_object(Bucket="hive-lake", Key=f"clean/station={first}/year=2020/month=11/part.parquet", Body=b"not parquet")
    with environment(settings | {"METEO_DATASETS_FILE": str(env.folder / "datasets.toml")}):
        october = meteo_assets.load_clean(stations=first, start="2020-10-29", end="2020-10-31")
        november = meteo_assets.load_clean(stations=second, start="2020-11-01", end="2020-11-03")
        with pytest.raises(Exception, match="(?i)parquet"):
            meteo_assets.load_clean(stations=first, start="2020-10-31", end="2020-11-01")
    pd.testing.assert_frame_equal(october, on_days(clean[clean["station"] == first], "2020-10-29", "2020-10-31"))
    pd.testing.assert_frame_equal(november, on_days(clean[clean["station"] == second], "2020-11-01", "2020-11-03"))


def column_types(conn, glob: str) -> dict[str, str]:
    described = conn.execute(f"DESCRIBE SELECT * FROM read_parquet('{glob}', hive_partitioning = true)").fetchall()
    return {row[0]: row[1] for row in described}


def test_the_station_catalogue_in_the_lake_loads_as_in_duckdb(tmp_path, s3_server):
    specs = default_network(3, "2020-10-01", "2020-10-05", seed=2)
    loaded = {}
    for mode, settings in {"local": {"METEO_STORAGE": "local"}, "s3": s3_server.storage_env()}.items():
        with stand_in(tmp_path / mode, FakePortal(specs), specs) as env, env.activated(), environment(settings):
            job = build_definitions().resolve_job_def(CATALOGUE_JOB)
            assert job.execute_in_process(instance=DagsterInstance.get()).success
            loaded[mode] = meteo_assets.load_stations()
    assert len(loaded["s3"]) == 3 and loaded["s3"]["latitude"].notna().all()
    pd.testing.assert_frame_equal(loaded["local"], loaded["s3"])
