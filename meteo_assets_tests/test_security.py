"""Hostile values never reach a path, a URL or SQL; secrets never reach logs, metadata or errors;
the client talks to the portal's host only."""

from __future__ import annotations

import datetime as dt
import json

import duckdb
import pandas as pd
import pytest
from dagster import AssetKey, DagsterInstance, build_init_resource_context, build_output_context

import meteo_assets
from meteo_assets.config import ConfigError, Settings, load_network, station_key
from meteo_assets.definitions import build_definitions
from meteo_assets.portal import PortalClient, RedirectRefused
from meteo_assets.run import main as run_main
from meteo_assets.storage.duckdb_io import MeteoDuckDBIOManager, check_table_name
from meteo_assets.storage.raw_files import RawStore
from meteo_assets_tests.fake_portal import FakePortal
from meteo_assets_tests.stand_in import stand_in
from meteo_assets_tests.test_faults import (
    KEY_A,
    KEY_B,
    SPECS,
    A,
    B,
    export_requests,
    failures,
    materialized,
    raw_files,
    run,
)

HOSTILE_IDS = [
    "../../../etc/passwd",
    "42-station-meteo-x/../../../../tmp/evil",
    "42-station-meteo-x/..",
    '42-station-meteo-a"; DROP TABLE clean.st42_a; --',
    "42-station-meteo-a' OR '1'='1",
    "42-station-meteo-%2e%2e%2fevil",
    "42-station-meteo-a\nb",
    "42-station-meteo-UPPER",
    "42-station-meteo-a?where=1",
    "",
]
HOSTILE_KEYS = [
    "../st42_x",
    "st42_x/../../evil",
    'st42_x"; DROP TABLE "clean"."st42_y"; --',
    "st42_x; DROP TABLE clean.st42_y",
    "st42_X",
    "st42_x\x00",
    "main",
]
SECRET = "sekret-4f1c2a9e-do-not-leak"


# --------------------------------------------------------------------------- datasets.toml
@pytest.mark.parametrize("hostile", HOSTILE_IDS)
@pytest.mark.parametrize("where", ["dataset", "archives"])
def test_hostile_dataset_ids_are_refused_at_load_naming_the_line(tmp_path, hostile, where):
    good, value = json.dumps("42-station-meteo-toulouse-parc-compans-cafarelli"), json.dumps(hostile)
    entry = f"dataset = {value}" if where == "dataset" else f"dataset = {good}\narchives = [{value}]"
    path = tmp_path / "datasets.toml"
    path.write_text(f"[defaults]\nstart_date = \"2020-01-01\"\n\n[[stations]]\n{entry}\n", encoding="utf-8")
    with pytest.raises(ConfigError) as error:
        load_network(path)
    line = 5 if where == "dataset" else 6
    assert f"{path}:{line}" in str(error.value)


@pytest.mark.parametrize("hostile", HOSTILE_IDS)
def test_hostile_dataset_ids_make_no_station_key(hostile):
    with pytest.raises(ConfigError):
        station_key(hostile)


def test_credentials_in_the_portal_url_are_refused_without_echoing_them():
    with pytest.raises(ConfigError) as error:
        Settings.from_env({"METEO_PORTAL_URL": f"https://user:{SECRET}@portal.example"})
    assert SECRET not in str(error.value) and "METEO_PORTAL_API_KEY" in str(error.value)
    with pytest.raises(ConfigError, match="http"):
        Settings.from_env({"METEO_PORTAL_URL": "file:///etc/passwd"})


# --------------------------------------------------------------------------- paths
@pytest.mark.parametrize("hostile", HOSTILE_KEYS)
def test_hostile_station_keys_never_become_paths(tmp_path, hostile):
    store = RawStore(tmp_path / "raw")
    with pytest.raises(ValueError, match="invalid station key"):
        store.write_day(hostile, dt.date(2020, 10, 1), {"42-station-meteo-x": b"h\n"})
    with pytest.raises(ValueError, match="invalid station key"):
        store.read_day(hostile, dt.date(2020, 10, 1))
    assert not any(tmp_path.rglob("*"))


@pytest.mark.parametrize("hostile", HOSTILE_IDS)
def test_hostile_dataset_ids_never_become_file_names(tmp_path, hostile):
    with pytest.raises(ValueError, match="invalid dataset id"):
        RawStore(tmp_path / "raw").write_day("st42_x", dt.date(2020, 10, 1), {hostile: b"h\n"})
    assert sorted(p.name for p in tmp_path.rglob("*") if not p.name.startswith(".")) == ["2020", "raw", "st42_x"]
    assert not list(tmp_path.rglob("*.csv"))


# --------------------------------------------------------------------------- URLs
@pytest.mark.parametrize("hostile", [*HOSTILE_IDS, "..", ".", "a/b", "a#b", "a b", None, 42])
def test_hostile_dataset_ids_never_reach_a_url(hostile):
    with FakePortal(SPECS) as portal:
        client = PortalClient(portal.url, retries=0)
        start = dt.datetime(2020, 10, 20, tzinfo=dt.timezone.utc)
        for call in (lambda: client.export_csv(hostile, start, start + dt.timedelta(days=1)),
                     lambda: client.dataset(hostile), lambda: client.export_json(hostile)):
            with pytest.raises(ValueError, match="invalid portal dataset id"):
                call()
        assert portal.requests == []


# --------------------------------------------------------------------------- SQL
@pytest.mark.parametrize("hostile", HOSTILE_KEYS)
def test_hostile_table_names_never_reach_sql(tmp_path, hostile):
    database = tmp_path / "meteo.duckdb"
    with duckdb.connect(str(database)) as conn:
        conn.execute('CREATE SCHEMA clean; CREATE TABLE clean.st42_y AS SELECT 1 AS canary')
    manager = MeteoDuckDBIOManager(database=str(database)).create_io_manager(build_init_resource_context())
    frame = pd.DataFrame({"canary": [2]})
    for schema in ("clean", "daily", 'x"; DROP TABLE clean.st42_y; --'):
        context = build_output_context(asset_key=AssetKey([schema, hostile]), resources={})
        with pytest.raises(ValueError, match="refusing DuckDB table"):
            manager.handle_output(context, frame)
    with duckdb.connect(str(database), read_only=True) as conn:
        assert conn.execute("SELECT canary FROM clean.st42_y").fetchall() == [(1,)]
        assert conn.execute("SELECT count(*) FROM information_schema.tables").fetchone() == (1,)


@pytest.mark.parametrize("schema,name,ok", [
    ("main", "stations", True), ("clean", "st42_toulouse_parc", True), ("daily", "st05_life_hall_1", True),
    ("clean", "stations", False), ("main", "st42-x", False), ("main", "st42_x;", False), ("main", 'st42"', False),
    ("main", "", False), ("main", "a" * 64, False), ('ma"in', "stations", False), ("Main", "stations", False),
])
def test_table_name_rule(schema, name, ok):
    if ok:
        check_table_name(schema, name)
    else:
        with pytest.raises(ValueError, match="refusing DuckDB table"):
            check_table_name(schema, name)


def test_notebook_loaders_refuse_unknown_stations(tmp_path):
    with stand_in(tmp_path, FakePortal(SPECS), SPECS) as env, env.activated():
        assert run(env).success
        for hostile in HOSTILE_KEYS[2:4]:
            with pytest.raises(KeyError, match="unknown station"):
                meteo_assets.load_daily(stations=[hostile])
        assert len(meteo_assets.load_daily(stations=[KEY_A])) == 5


# --------------------------------------------------------------------------- secrets and hosts
def test_the_api_key_is_sent_as_a_header_and_never_shown(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("METEO_PORTAL_API_KEY", SECRET)
    with stand_in(tmp_path, FakePortal(SPECS), SPECS) as env, env.activated():
        env.portal.inject(A.dataset_id, "status", count=20, status=404, endpoint="exports")  # a failure to report
        assert run_main(["--start", "2020-10-20", "--end", "2020-10-21"]) == 1
        assert env.portal.requests and all(r.headers.get("Authorization") == f"Apikey {SECRET}"
                                           for r in env.portal.requests)
        out, err = capsys.readouterr()
        assert "FAILED" in out and "HTTP 404" in out
        assert SECRET not in out + err
        assert_nowhere_in_the_instance(env, SECRET)
        stored = b"".join(p.read_bytes() for p in (env.folder / "data").rglob("*") if p.is_file())
        assert SECRET.encode() not in stored


def assert_nowhere_in_the_instance(env, secret: str) -> None:
    """Not in any event of any run (messages, metadata, failures) nor in the resources' config."""
    instance = DagsterInstance.get()
    runs = instance.get_runs()
    assert runs
    for dagster_run in runs:
        assert secret not in repr(dagster_run.run_config) and secret not in repr(dagster_run.tags)
        for record in instance.get_records_for_run(dagster_run.run_id).records:
            assert secret not in repr(record.event_log_entry)
    assert secret not in repr(build_definitions().resources)


def test_redirects_to_another_host_are_refused_before_contacting_it(tmp_path, monkeypatch):
    monkeypatch.setenv("METEO_PORTAL_API_KEY", SECRET)
    with FakePortal(SPECS) as elsewhere, stand_in(tmp_path, FakePortal(SPECS), SPECS) as env:
        env.portal.inject(A.dataset_id, "redirect", count=20, location=elsewhere.url, endpoint="exports")
        result = run(env)
        message = failures(result)[f"raw__{KEY_A}"]
        assert f"redirected to {elsewhere.url}, another host; refused" in message
        assert f"station {KEY_A}" in message and "URL: " + env.portal.url in message
        assert elsewhere.requests == []  # neither the request nor the key went there
        assert export_requests(env.portal, A.dataset_id) == 1  # refused, not retried
        assert f"daily/{KEY_B}" in materialized(result) and raw_files(env, KEY_A) == {}
        assert B.dataset_id in {r.path.split("/")[-3] for r in env.portal.requests}


def test_redirects_within_the_portal_are_followed_with_the_key(tmp_path, monkeypatch):
    monkeypatch.setenv("METEO_PORTAL_API_KEY", SECRET)
    with FakePortal(SPECS) as portal:
        portal.inject(A.dataset_id, "redirect", count=1)
        client = PortalClient(portal.url, retries=0)
        assert client.dataset(A.dataset_id)["dataset_id"] == A.dataset_id
        assert [r.headers.get("Authorization") for r in portal.requests] == [f"Apikey {SECRET}"] * 2


def test_a_redirect_to_another_scheme_or_port_is_another_host():
    with FakePortal(SPECS) as portal:
        portal.inject(None, "redirect", location=portal.url.replace("http://", "https://"))
        with pytest.raises(RedirectRefused, match="another host"):
            PortalClient(portal.url, retries=0).dataset(A.dataset_id)
