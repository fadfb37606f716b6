"""Sensors and the schedule, evaluated as the daemon does (`evaluate_tick`) against the stand-in portal
whose data and metadata change between ticks, and an instance holding controlled materialisations."""

import datetime as dt
import json
from dataclasses import replace

import pytest
from dagster import (
    AssetKey,
    AssetMaterialization,
    AssetObservation,
    DagsterInstance,
    MetadataValue,
    build_multi_asset_sensor_context,
    build_schedule_context,
    build_sensor_context,
)

from meteo_assets import sensors
from meteo_assets.config import ConfigError, Settings
from meteo_assets.definitions import NETWORK_JOB, PIPELINE_JOB, build_definitions
from meteo_assets.resources import PortalResource
from meteo_assets.schedules import SAFETY_NET_SCHEDULE
from meteo_assets.sensors import NETWORK_SENSOR, NEW_DATA_SENSOR, poll_seconds
from meteo_assets_tests.fake_portal import FakePortal, StationSpec, generate_rows
from meteo_assets_tests.stand_in import datasets_toml

UTC = dt.timezone.utc
END = dt.datetime(2020, 10, 10, 12, tzinfo=UTC)  # the portal's data stops at 12:00 UTC, 14:00 in Paris
SPECS = [
    StationSpec("70-station-meteo-toulouse-prairie-des-filtres", 70, "2020-09-20", END, seed=1),
    StationSpec("73-station-meteo-balma-gare", 73, "2020-09-20", END, seed=2),
    StationSpec("76-station-meteo-castanet-centre", 76, "2020-09-20", END, seed=3),
]
KEYS = ["st70_toulouse_prairie_des_filtres", "st73_balma_gare", "st76_castanet_centre"]


def definitions_for(folder, portal: FakePortal, extra=()):
    (folder / "datasets.toml").write_text(datasets_toml(SPECS, extra=extra), encoding="utf-8")
    return build_definitions(Settings(portal_url=portal.url, datasets_file=folder / "datasets.toml", data_dir=folder / "data"))


@pytest.fixture
def portal():
    with FakePortal(SPECS) as running:
        yield running


class Ticks:
    """The new-data sensor ticking as the daemon would, keeping its cursor between ticks."""

    def __init__(self, defs, portal):
        self.defs, self.sensor = defs, defs.get_repository_def().get_sensor_def(NEW_DATA_SENSOR)
        self.portal, self.instance, self.cursor = portal, DagsterInstance.ephemeral(), None

    def tick(self, cursor: str | None = None):
        self.portal.reset_requests()
        context = build_sensor_context(instance=self.instance, cursor=cursor if cursor is not None else self.cursor,
                                       definitions=self.defs, resources={"portal": PortalResource(base_url=self.portal.url)})
        result = self.sensor.evaluate_tick(context)
        self.cursor = result.cursor
        return result

    def endpoints(self) -> list[str]:
        return sorted("records" if r.path.endswith("/records") else "dataset" for r in self.portal.requests)


@pytest.fixture
def ticks(tmp_path, portal):
    return Ticks(definitions_for(tmp_path, portal), portal)


def requested(result) -> list[tuple[list[str], str, str]]:
    """Each run request as (stations, first day, last day)."""
    runs = []
    for request in result.run_requests or []:
        stations = sorted({key.path[1] for key in request.asset_selection})
        layers = {key.path[0] for key in request.asset_selection}
        assert layers == {"raw", "clean", "daily"}
        first = request.partition_key or request.tags["dagster/asset_partition_range_start"]
        last = request.partition_key or request.tags["dagster/asset_partition_range_end"]
        runs.append((stations, first, last))
    return sorted(runs)


def rows_between(spec: StationSpec, start: dt.datetime, end: dt.datetime):
    return generate_rows(replace(spec, start=start, end=end, quirks=False))


def test_first_tick_requests_the_newest_day_and_the_day_before_for_every_station(ticks):
    result = ticks.tick()
    # the quirky data holds corrupted rows dated years ahead: the newest observation is the real one
    assert requested(result) == [(KEYS, "2020-10-09", "2020-10-10")]
    assert ticks.endpoints() == ["dataset"] * 3 + ["records"] * 3
    newest = {e.asset_key.path[1]: e.metadata["newest_observation"].value for e in result.asset_events}
    assert newest == dict.fromkeys(KEYS, dt.datetime(2020, 10, 10, 11, 45, tzinfo=UTC).timestamp())
    request = result.run_requests[0]
    assert request.tags["meteo/trigger"] == "portal_new_data" and request.run_key
    # every quality check computed in the assets' steps, and no freshness check (it has its own sensor)
    assert len(request.asset_check_keys) == 3 * 9 and "freshness_check" not in {k.name for k in request.asset_check_keys}


def test_new_data_requests_exactly_those_stations_and_days(ticks, portal):
    ticks.tick()
    quiet = ticks.tick()
    assert not quiet.run_requests and quiet.skip_message == "no new data on the portal"
    assert ticks.endpoints() == ["dataset"] * 3  # one metadata request per station per tick, nothing else

    # station 70 publishes the rest of the 10th and all of the 11th; 73 is republished, no new slot
    portal.append_rows(SPECS[0].dataset_id, rows_between(SPECS[0], END, dt.datetime(2020, 10, 11, 23, tzinfo=UTC)))
    portal.touch(SPECS[1].dataset_id)
    moved = ticks.tick()
    assert requested(moved) == [([KEYS[0]], "2020-10-10", "2020-10-12"), ([KEYS[1]], "2020-10-10", "2020-10-10")]
    assert ticks.endpoints() == ["dataset"] * 3 + ["records"] * 2
    assert {e.asset_key.path[1] for e in moved.asset_events} == {KEYS[0], KEYS[1]}

    # yesterday's last slot arriving after midnight: yesterday only
    portal.append_rows(SPECS[0].dataset_id, rows_between(SPECS[0], dt.datetime(2020, 10, 11, 23, tzinfo=UTC),
                                                         dt.datetime(2020, 10, 11, 23, 15, tzinfo=UTC)))
    assert requested(ticks.tick()) == [([KEYS[0]], "2020-10-12", "2020-10-12")]


def test_the_cursor_survives_a_restart(tmp_path, ticks, portal):
    ticks.tick()
    saved = ticks.cursor
    assert set(json.loads(saved)) == set(KEYS)
    # a new daemon process, definitions loaded again: only the stored cursor carries over
    restarted = Ticks(definitions_for(tmp_path, portal), portal)
    assert not restarted.tick(cursor=saved).run_requests
    portal.append_rows(SPECS[2].dataset_id, rows_between(SPECS[2], END, END + dt.timedelta(hours=3)))
    assert requested(restarted.tick()) == [([KEYS[2]], "2020-10-10", "2020-10-10")]


def test_late_data_after_an_outage_requests_every_day_it_covers(ticks, portal):
    ticks.tick()
    backlog = rows_between(SPECS[1], END, dt.datetime(2020, 10, 14, 6, tzinfo=UTC))
    portal.append_rows(SPECS[1].dataset_id, backlog)
    result = ticks.tick()
    assert requested(result) == [([KEYS[1]], "2020-10-10", "2020-10-14")]
    tags = result.run_requests[0].tags
    assert (tags["dagster/asset_partition_range_start"], tags["dagster/asset_partition_range_end"]) == ("2020-10-10", "2020-10-14")


def test_without_portal_metadata_the_newest_observation_is_the_version(ticks, portal):
    for spec in SPECS:
        portal.set_metas(spec.dataset_id, modified=None, data_processed=None)
    assert requested(ticks.tick()) == [(KEYS, "2020-10-09", "2020-10-10")]
    assert not ticks.tick().run_requests
    assert ticks.endpoints() == ["dataset"] * 3 + ["records"] * 3
    portal.append_rows(SPECS[0].dataset_id, rows_between(SPECS[0], END, END + dt.timedelta(hours=13)))
    portal.set_metas(SPECS[0].dataset_id, modified=None, data_processed=None)
    assert requested(ticks.tick()) == [([KEYS[0]], "2020-10-10", "2020-10-11")]


def test_a_missing_dataset_is_logged_and_the_others_go_on(tmp_path, portal):
    extra = "74-station-meteo-quint-fonsegrives-bourg"
    ticks = Ticks(definitions_for(tmp_path, portal, extra=[extra]), portal)
    result = ticks.tick()
    assert requested(result) == [(KEYS, "2020-10-09", "2020-10-10")]
    assert "st74_quint_fonsegrives_bourg" not in json.loads(ticks.cursor)  # looked at again next tick


def test_poll_interval_comes_from_the_environment():
    assert poll_seconds({}) == 900 and poll_seconds({"METEO_POLL_SECONDS": "30"}) == 30
    with pytest.raises(ConfigError, match="METEO_POLL_SECONDS"):
        poll_seconds({"METEO_POLL_SECONDS": "15m"})


# --------------------------------------------------------------------------- network sensor
@pytest.fixture
def defs(tmp_path, portal):
    return definitions_for(tmp_path, portal)


class NetworkTicks:
    def __init__(self, defs):
        self.defs, self.sensor = defs, defs.get_repository_def().get_sensor_def(NETWORK_SENSOR)
        self.instance, self.cursor = DagsterInstance.ephemeral(), None

    def daily(self, key: str, day: str) -> None:
        self.instance.report_runless_asset_event(AssetMaterialization(asset_key=AssetKey(["daily", key]), partition=day))

    def portal_saw(self, key: str, newest: dt.datetime) -> None:
        """What the new-data sensor records about a station."""
        self.instance.report_runless_asset_event(AssetObservation(
            asset_key=AssetKey(["raw", key]), metadata={"newest_observation": MetadataValue.timestamp(newest)}))

    def tick(self):
        context = build_multi_asset_sensor_context(
            monitored_assets=[AssetKey(["daily", k]) for k in KEYS], instance=self.instance, cursor=self.cursor,
            definitions=self.defs,
        )
        result = self.sensor.evaluate_tick(context)
        self.cursor = result.cursor
        return result


def network_runs(result) -> list[tuple[str, str, list[str]]]:
    runs = []
    for request in result.run_requests or []:
        first = request.partition_key or request.tags["dagster/asset_partition_range_start"]
        last = request.partition_key or request.tags["dagster/asset_partition_range_end"]
        runs.append((first, last, sorted(k.to_user_string() for k in request.asset_selection)))
    return runs


def test_network_assets_wait_until_every_station_is_in(defs):
    ticks = NetworkTicks(defs)
    ticks.daily(KEYS[0], "2020-10-20")
    ticks.daily(KEYS[1], "2020-10-20")
    waiting = ticks.tick()
    assert not waiting.run_requests and KEYS[2] in waiting.skip_message and "2020-10-20" in waiting.skip_message
    ticks.daily(KEYS[2], "2020-10-20")
    # the catalogue was never materialised: it comes along (network/daily joins it)
    assert network_runs(ticks.tick()) == [("2020-10-20", "2020-10-20", ["network/daily", "stations"])]
    assert not ticks.tick().run_requests  # consumed: nothing new
    ticks.instance.report_runless_asset_event(AssetMaterialization(asset_key=AssetKey("stations")))
    ticks.daily(KEYS[1], "2020-10-20")  # a station's day refreshed: the network's day follows
    result = ticks.tick()
    assert network_runs(result) == [("2020-10-20", "2020-10-20", ["network/daily"])]
    assert result.run_requests[0].tags["meteo/trigger"] == NETWORK_SENSOR


def test_an_out_of_service_station_is_not_waited_for_unless_it_has_no_table(defs):
    ticks = NetworkTicks(defs)
    now = dt.datetime.now(UTC)
    for key in KEYS[:2]:
        ticks.portal_saw(key, now - dt.timedelta(minutes=20))
        ticks.daily(key, "2020-10-21")
    ticks.portal_saw(KEYS[2], now - dt.timedelta(days=4))  # stopped reporting, never materialised
    assert not ticks.tick().run_requests  # its table does not exist yet: network/daily could not read it
    ticks.daily(KEYS[2], "2020-10-19")
    assert network_runs(ticks.tick())[0][:2] == ("2020-10-21", "2020-10-21")
    ticks.portal_saw(KEYS[2], now - dt.timedelta(minutes=5))  # back in service: waited for again
    ticks.daily(KEYS[0], "2020-10-22")
    ticks.daily(KEYS[1], "2020-10-22")
    assert not ticks.tick().run_requests


def test_consecutive_ready_days_make_one_ranged_run(defs):
    ticks = NetworkTicks(defs)
    for day in ("2020-10-23", "2020-10-24", "2020-10-25", "2020-10-28"):
        for key in KEYS:
            ticks.daily(key, day)
    ranges = [run[:2] for run in network_runs(ticks.tick())]
    assert ranges == [("2020-10-23", "2020-10-25"), ("2020-10-28", "2020-10-28")]


def test_a_backlog_of_days_is_worked_through_over_several_ticks(defs, monkeypatch):
    monkeypatch.setattr(sensors, "EVENTS_PER_ASSET_PER_TICK", 4)  # as after a backfill of years
    ticks = NetworkTicks(defs)
    days = [(dt.date(2020, 10, 1) + dt.timedelta(days=n)).isoformat() for n in range(10)]
    for key in KEYS:
        for day in days:
            ticks.daily(key, day)
    ranges = [network_runs(ticks.tick())[0][:2] for _ in range(3)]
    assert ranges == [("2020-10-01", "2020-10-04"), ("2020-10-05", "2020-10-08"), ("2020-10-09", "2020-10-10")]
    assert not ticks.tick().run_requests


# --------------------------------------------------------------------------- schedule
def test_the_safety_net_runs_yesterday_for_every_station_at_six_paris_time(defs):
    schedule = defs.get_repository_def().get_schedule_def(SAFETY_NET_SCHEDULE)
    assert (schedule.cron_schedule, schedule.execution_timezone, schedule.job_name) == ("0 6 * * *", "Europe/Paris", PIPELINE_JOB)
    assert schedule.default_status.value == "RUNNING"
    six = dt.datetime(2020, 10, 26, 6, tzinfo=dt.timezone(dt.timedelta(hours=1)))  # 05:00 UTC, Paris winter time
    context = build_schedule_context(scheduled_execution_time=six, repository_def=defs.get_repository_def())
    request = schedule.evaluate_tick(context).run_requests[0]
    assert request.partition_key == "2020-10-25" and request.asset_selection is None  # the whole job: every station


def test_every_sensor_and_schedule_runs_by_default(defs):
    statuses = {s.name: s.default_status.value for s in defs.sensors} | {s.name: s.default_status.value for s in defs.schedules}
    assert statuses == dict.fromkeys(
        ["portal_new_data", "network_daily_when_stations_in", "station_freshness", "daily_safety_net"], "RUNNING")
    assert defs.get_repository_def().get_sensor_def(NETWORK_SENSOR).job_name == NETWORK_JOB
