"""The team deployment profile (deploy/dagster.yaml) on a real PostgreSQL server and a real S3 API.

The test starts its own throwaway PostgreSQL cluster on a free loopback port with Debian's
`initdb`/`pg_ctl` (`make test` installs the `postgresql` package when missing), as the `postgres`
user when run as root, and runs the pipeline with the instance that file describes.
"""

import contextlib
import datetime as dt
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg2
import pytest
import yaml
from dagster import AssetKey, DagsterEventType, DagsterInstance
from dagster._config import process_config
from dagster_aws.ecs import EcsRunLauncher

from meteo_assets.config import PROJECT_ROOT, station_key
from meteo_assets_tests.fake_portal import FakePortal, default_network
from meteo_assets_tests.s3_server import aws_env, s3_server  # noqa: F401 (fixtures)
from meteo_assets_tests.stand_in import stand_in
from meteo_assets_tests.test_pipeline import environment, run_range

PROFILE = PROJECT_ROOT / "deploy" / "dagster.yaml"
PASSWORD = "throwaway-test-password"


def postgres_bindir() -> Path | None:
    """The newest server binaries of Debian's layout (/usr/lib/postgresql/<major>/bin)."""
    found = [p.parent for p in Path("/usr/lib/postgresql").glob("*/bin/initdb")]
    return max(found, key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0) if found else None


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def throwaway_cluster(bindir: Path) -> Iterator[dict[str, str]]:
    """A PostgreSQL cluster in a temporary folder, listening on 127.0.0.1 only; removed afterwards."""
    owner = None
    if os.geteuid() == 0:  # initdb refuses to run as root
        owner = "postgres" if _user_exists("postgres") else "nobody"
    as_owner = ["runuser", "-u", owner, "--"] if owner else []
    folder = Path(tempfile.mkdtemp(prefix="meteo-pg-"))
    data, port = folder / "data", free_port()
    (folder / "password").write_text(PASSWORD)
    if owner:
        for path in (folder, folder / "password"):
            shutil.chown(path, owner)

    def run(*command: str) -> None:
        done = subprocess.run([*as_owner, *command], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, f"{command[0]} failed: {done.stdout[-2000:]}{done.stderr[-2000:]}"

    run(str(bindir / "initdb"), "-D", str(data), "-U", "dagster", f"--pwfile={folder / 'password'}",
        "--auth-host=scram-sha-256", "--auth-local=peer", "--no-sync", "-E", "UTF8")
    options = f"-c listen_addresses=127.0.0.1 -p {port} -c unix_socket_directories={folder} -c fsync=off"
    try:
        run(str(bindir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(folder / "server.log"), "-w", "start")
        with contextlib.closing(psycopg2.connect(host="127.0.0.1", port=port, user="dagster", password=PASSWORD,
                                                 dbname="postgres")) as conn:
            conn.autocommit = True
            conn.cursor().execute("CREATE DATABASE meteo_dagster")
        yield {"DAGSTER_PG_HOST": "127.0.0.1", "DAGSTER_PG_PORT": str(port), "DAGSTER_PG_DB": "meteo_dagster",
               "DAGSTER_PG_USERNAME": "dagster", "DAGSTER_PG_PASSWORD": PASSWORD}
    finally:
        subprocess.run([*as_owner, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                       capture_output=True, timeout=60)
        shutil.rmtree(folder, ignore_errors=True)


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


@pytest.fixture(scope="module")
def postgres() -> Iterator[dict[str, str]]:
    bindir = postgres_bindir()
    if bindir is None:
        reason = "PostgreSQL server binaries not found under /usr/lib/postgresql: `make test` installs Debian's postgresql"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    with throwaway_cluster(bindir) as settings:
        yield settings


def query(settings: dict[str, str], sql: str, *params) -> list[tuple]:
    with contextlib.closing(psycopg2.connect(host=settings["DAGSTER_PG_HOST"], port=int(settings["DAGSTER_PG_PORT"]),
                                             user=settings["DAGSTER_PG_USERNAME"], password=settings["DAGSTER_PG_PASSWORD"],
                                             dbname=settings["DAGSTER_PG_DB"])) as conn:
        with conn.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchall()


def test_the_pipeline_runs_on_the_team_profile(tmp_path, postgres, s3_server, aws_env):
    specs = default_network(2, "2020-10-01", "2020-11-01", seed=5)
    s3_server.client().create_bucket(Bucket="team-dagster-logs",
                                     CreateBucketConfiguration={"LocationConstraint": aws_env["AWS_DEFAULT_REGION"]})
    settings = {**postgres, **s3_server.storage_env("team"), "DAGSTER_COMPUTE_LOG_BUCKET": "team-dagster-logs",
                "AWS_ENDPOINT_URL_S3": s3_server.url}
    with stand_in(tmp_path, FakePortal(specs), specs) as env, env.activated(), environment(settings):
        shutil.copy(PROFILE, env.folder / "dagster_home" / "dagster.yaml")  # the file as shipped
        result = run_range(dt.date(2020, 10, 20), dt.date(2020, 10, 21))
        assert result.success
        materialised = len(result.get_asset_materialization_events())
        assert materialised >= 3 * 2 * 2  # raw, clean, daily × 2 stations × 2 days

        instance = DagsterInstance.get()  # a fresh instance from the profile, as another machine would open it
        storages = (instance.run_storage, instance.event_log_storage, instance.schedule_storage)
        assert [type(s).__name__ for s in storages] == [
            "PostgresRunStorage", "PostgresEventLogStorage", "PostgresScheduleStorage"]
        assert instance.get_run_by_id(result.run_id).is_success
        assert instance.get_latest_materialization_event(AssetKey(["daily", station_key(specs[0].dataset_id)])) is not None
        assert instance.get_concurrency_config().pool_config.default_pool_limit == 1
        logs = s3_server.client().list_objects_v2(Bucket="team-dagster-logs", Prefix="meteo-assets/compute-logs/")

    # what another process reading the database sees
    assert query(postgres, "SELECT status FROM runs WHERE run_id = %s", result.run_id) == [("SUCCESS",)]
    stored = query(postgres, "SELECT count(*) FROM event_logs WHERE run_id = %s AND dagster_event_type = %s",
                   result.run_id, DagsterEventType.ASSET_MATERIALIZATION.value)
    assert stored == [(materialised,)]
    tables = {name for (name,) in query(postgres, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
    assert {"runs", "event_logs", "jobs", "job_ticks", "instigators", "concurrency_limits"} <= tables
    # the writers' pool took its default limit from the profile when the clean steps claimed it
    assert query(postgres, 'SELECT "limit", using_default_limit FROM concurrency_limits WHERE concurrency_key = %s',
                 "duckdb_writer") == [(1, True)]
    # and the steps' output, in the compute-log bucket
    assert any(item["Key"].endswith((".err", ".out", ".complete")) for item in logs.get("Contents", []))


def test_the_commented_ecs_launcher_is_valid_config():
    text = PROFILE.read_text()
    block = re.search(r"^# Amazon ECS.*\n((?:#  .*\n|# run_launcher:\n)+)", text, re.M)
    assert block, "the ECS run launcher example is missing from deploy/dagster.yaml"
    launcher = yaml.safe_load("\n".join(line[2:] for line in block.group(1).splitlines()))["run_launcher"]
    assert (launcher["module"], launcher["class"]) == ("dagster_aws.ecs", "EcsRunLauncher")
    assert process_config(EcsRunLauncher.config_type(), launcher["config"]).success
