"""S3 mode's settings, resources and raw bucket, against a real S3 API (moto's server on 127.0.0.1)."""

import datetime as dt

import boto3
import pytest
from dagster import AssetKey, DagsterInstance

import meteo_assets
from meteo_assets.config import ConfigError, Settings
from meteo_assets.definitions import PIPELINE_JOB, build_definitions
from meteo_assets.portal.days import split_by_day
from meteo_assets.resources import build_resources
from meteo_assets.storage.duckdb_io import MeteoDuckDBIOManager
from meteo_assets.storage.lake import ParquetLakeIOManager
from meteo_assets.storage.raw_files import MissingRawPartition, RawFilesIOManager, RawStore
from meteo_assets.storage.s3 import S3Bucket, S3StorageError
from meteo_assets.storage.s3_raw import S3RawIOManager, S3RawStore
from meteo_assets_tests.fake_portal import FakePortal, StationSpec, generate_rows, render_csv
from meteo_assets_tests.s3_server import TEST_AWS_ENV, aws_env, s3_client, s3_server  # noqa: F401 (fixtures)
from meteo_assets_tests.stand_in import stand_in
from meteo_assets_tests.test_pipeline import environment, run_range

STATION = "st42_toulouse_parc_compans_cafarelli"
LIVE = "42-station-meteo-toulouse-parc-compans-cafarelli"
ARCHIVE = f"{LIVE}-archive"
SPEC = StationSpec(LIVE, 42, "2020-10-20", "2020-10-30", seed=3)


def test_settings_pick_the_storage_and_reject_bad_values():
    settings = Settings.from_env({"METEO_STORAGE": "S3", "METEO_RAW_BUCKET": "team.raw-2", "METEO_LAKE_BUCKET": "team-lake",
                                  "METEO_S3_ENDPOINT_URL": "http://127.0.0.1:9000/", "METEO_S3_CREATE_BUCKETS": "1"})
    assert (settings.storage, settings.raw_bucket, settings.lake_bucket) == ("s3", "team.raw-2", "team-lake")
    assert (settings.s3_endpoint_url, settings.s3_create_buckets) == ("http://127.0.0.1:9000", True)
    defaults = Settings.from_env({})
    assert (defaults.storage, defaults.raw_bucket, defaults.lake_bucket) == ("local", "meteo-raw", "meteo-lake")
    assert (defaults.s3_endpoint_url, defaults.s3_create_buckets) == (None, False)
    for name, value in [("METEO_STORAGE", "gcs"), ("METEO_RAW_BUCKET", "Meteo_Raw"), ("METEO_LAKE_BUCKET", "ab"),
                        ("METEO_S3_ENDPOINT_URL", "127.0.0.1:9000"), ("METEO_S3_CREATE_BUCKETS", "maybe")]:
        with pytest.raises(ConfigError, match=rf"{name} must .*{value!r}"):
            Settings.from_env({name: value})


def test_resources_are_chosen_in_one_place_without_credentials(tmp_path, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDSHOULDNOTAPPEAR")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret-should-not-appear")
    local = build_resources(Settings(data_dir=tmp_path / "data"))
    assert isinstance(local["raw_io_manager"], RawFilesIOManager) and isinstance(local["io_manager"], MeteoDuckDBIOManager)
    s3 = build_resources(Settings(data_dir=tmp_path / "s3-data", storage="s3", raw_bucket="r-raw", lake_bucket="r-lake",
                                  s3_endpoint_url="http://127.0.0.1:9"))
    assert isinstance(s3["raw_io_manager"], S3RawIOManager) and isinstance(s3["io_manager"], ParquetLakeIOManager)
    assert (s3["raw_io_manager"].bucket, s3["io_manager"].bucket) == ("r-raw", "r-lake")
    assert s3["io_manager"].s3.endpoint_url == "http://127.0.0.1:9"
    assert not (tmp_path / "s3-data").exists()  # S3 mode writes nothing locally
    config = repr({key: resource for key, resource in s3.items()})
    assert "AKIDSHOULDNOTAPPEAR" not in config and "secret-should-not-appear" not in config


def day_files() -> dict[dt.date, dict[str, bytes]]:
    """Real-shaped day files: the generator's export split by Paris day, plus bytes a text layer would
    change (CRLF, a BOM, Latin-1) in an archive file."""
    export = render_csv(generate_rows(SPEC))
    days = [dt.date(2020, 10, 22) + dt.timedelta(days=i) for i in range(3)]
    files = {day: {LIVE: content} for day, content in split_by_day(export, days).items()}
    files[days[0]][ARCHIVE] = "\ufeffid;données\r\n1;é\r\n".encode("utf-8") + b"\xe9\xff\x00\n"
    return files


def test_the_raw_bucket_keeps_station_days_byte_for_byte_like_the_folder(tmp_path, s3_server, aws_env):
    bucket = S3Bucket(s3_server.client(), "raw-bytes", "METEO_RAW_BUCKET", create=True).ensure()
    in_s3, on_disk = S3RawStore(bucket), RawStore(tmp_path)
    files = day_files()
    for day, content in files.items():
        assert in_s3.write_day(STATION, day, content) == f"s3://raw-bytes/{STATION}/2020/{day}/"
        on_disk.write_day(STATION, day, content)
    empty_day = dt.date(2020, 10, 19)  # before the station's start: stored, with no file
    in_s3.write_day(STATION, empty_day, {})
    on_disk.write_day(STATION, empty_day, {})
    assert sorted(bucket.keys("")) == sorted(
        [f"{STATION}/2020/{day}/{dataset}.csv" for day, content in files.items() for dataset in content]
        + [f"{STATION}/2020/2020-10-19/"]
    )
    for day in [*files, empty_day]:
        assert in_s3.read_day(STATION, day) == on_disk.read_day(STATION, day) == files.get(day, {})
    first = min(files)
    raw = s3_server.client().get_object(Bucket="raw-bytes", Key=f"{STATION}/2020/{first}/{ARCHIVE}.csv")["Body"].read()
    assert raw == files[first][ARCHIVE]

    # re-materialising a day replaces it as a whole: the archive file it no longer has is gone
    in_s3.write_day(STATION, first, {LIVE: files[first][LIVE]})
    assert in_s3.read_day(STATION, first) == {LIVE: files[first][LIVE]}
    assert bucket.keys(f"{STATION}/2020/{first}/") == [f"{STATION}/2020/{first}/{LIVE}.csv"]
    missing = rf"raw/{STATION} has no stored partition 2020-10-25 .*s3://raw-bytes/{STATION}/2020/2020-10-25/"
    with pytest.raises(MissingRawPartition, match=missing):
        in_s3.read_day(STATION, dt.date(2020, 10, 25))
    with pytest.raises(ValueError, match="invalid dataset id"):
        in_s3.write_day(STATION, first, {"../escape": b""})


def test_a_missing_bucket_is_named_or_created_on_request(tmp_path, s3_server, aws_env):
    spec = StationSpec("73-station-meteo-balma-gare", 73, "2020-10-01", "2020-11-01", seed=2)
    settings = s3_server.storage_env("absent") | {"METEO_S3_CREATE_BUCKETS": "0"}
    with stand_in(tmp_path, FakePortal([spec]), [spec]) as env, env.activated(), environment(settings):
        result = run_range(dt.date(2020, 10, 20), dt.date(2020, 10, 21))
        assert not result.success
        failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
        message = failure.event_specific_data.error.to_string()
        assert "S3 bucket 'absent-raw' (METEO_RAW_BUCKET) does not exist" in message
        assert "METEO_S3_CREATE_BUCKETS=1" in message and s3_server.url in message
        with environment({"METEO_S3_CREATE_BUCKETS": "1"}):
            assert run_range(dt.date(2020, 10, 20), dt.date(2020, 10, 21)).success
    buckets = {b["Name"] for b in s3_server.client().list_buckets()["Buckets"]}
    assert {"absent-raw", "absent-lake"} <= buckets
    region = s3_server.client().get_bucket_location(Bucket="absent-lake")["LocationConstraint"]
    assert region == TEST_AWS_ENV["AWS_DEFAULT_REGION"]


def test_errors_say_what_is_wrong_with_the_store(s3_server, monkeypatch, tmp_path):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_DEFAULT_REGION", TEST_AWS_ENV["AWS_DEFAULT_REGION"])
    anonymous = boto3.session.Session().client("s3", endpoint_url=s3_server.url)  # not the default session: it may hold credentials from earlier tests
    with pytest.raises(S3StorageError, match="'meteo-lake' .METEO_LAKE_BUCKET.*no AWS credentials found.*AWS_PROFILE"):
        S3Bucket(anonymous, "meteo-lake", "METEO_LAKE_BUCKET").ensure()
    unreachable = s3_client("http://127.0.0.1:9")
    with pytest.raises(S3StorageError, match=r"'meteo-raw' .METEO_RAW_BUCKET. at http://127.0.0.1:9: .*cannot reach"):
        S3Bucket(unreachable, "meteo-raw", "METEO_RAW_BUCKET").ensure()


def test_the_notebook_loaders_name_a_missing_lake_bucket(s3_server, monkeypatch):
    for name, value in s3_server.storage_env("nolake").items():
        monkeypatch.setenv(name, value)
    missing = rf"S3 bucket 'nolake-lake' \(METEO_LAKE_BUCKET\) does not exist at {s3_server.url}"
    with pytest.raises(S3StorageError, match=missing):
        meteo_assets.load_daily(stations=42, start="2020-10-01", end="2020-10-31")


def test_credentials_never_reach_the_run_record(tmp_path, s3_server, capfd):
    secret = "wJalrXUtnFEMI-K7MDENG-bPxRfiCYEXAMPLEKEY"
    settings = s3_server.storage_env() | {"AWS_ACCESS_KEY_ID": "AKIAIOSFODNN7EXAMPLE", "AWS_SECRET_ACCESS_KEY": secret}
    with stand_in(tmp_path, FakePortal([SPEC]), [SPEC]) as env, env.activated(), environment(settings):
        defs = build_definitions()
        result = defs.resolve_job_def(PIPELINE_JOB).execute_in_process(
            instance=DagsterInstance.get(), raise_on_error=False,
            tags={"dagster/asset_partition_range_start": "2020-10-22", "dagster/asset_partition_range_end": "2020-10-23"},
        )
        assert result.success
        records = DagsterInstance.get().all_logs(result.run_id)
        run = DagsterInstance.get().get_run_by_id(result.run_id)
        value = defs.load_asset_value(AssetKey(["daily", STATION]), partition_key="2020-10-22")
    assert value["slots_reported"].tolist() == [96]
    recorded = repr(records) + repr(run) + "".join(capfd.readouterr())
    assert "AKIAIOSFODNN7EXAMPLE" not in recorded and secret not in recorded
    assert f"s3://{settings['METEO_LAKE_BUCKET']}/daily/station={STATION}/" in recorded
