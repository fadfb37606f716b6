"""`network/daily`: every station's daily rows for a day, its LCZ and the heat-island index, through
Dagster from the stand-in portal, materialised by the network sensor's own run request."""

import datetime as dt
import os

import duckdb
import pandas as pd
import pytest
from dagster import AssetKey, DagsterInstance, build_multi_asset_sensor_context

from meteo_assets.assets.network import NETWORK_DAILY
from meteo_assets.definitions import CATALOGUE_JOB, NETWORK_JOB, PIPELINE_JOB, build_definitions
from meteo_assets.sensors import NETWORK_SENSOR
from meteo_assets.transform import daily_summary, empty_clean_frame
from meteo_assets.transform.network import NETWORK_DAILY_COLUMNS, network_daily
from meteo_assets_tests.fake_portal import FakePortal, StationSpec
from meteo_assets_tests.stand_in import stand_in

# three sites of the network's local climate zones: compact midrise, open low-rise, scattered trees
SPECS = [
    StationSpec("70-station-meteo-toulouse-capitole", 70, "2020-10-01", "2020-10-20", seed=1, lcz=2, weather_seed=9),
    StationSpec("73-station-meteo-balma-gare", 73, "2020-10-01", "2020-10-20", seed=2, lcz=6, weather_seed=9),
    StationSpec("76-station-meteo-castanet-bois", 76, "2020-10-01", "2020-10-20", seed=3, lcz=9, weather_seed=9),
]
KEYS = ["st70_toulouse_capitole", "st73_balma_gare", "st76_castanet_bois"]
FIRST, LAST = "2020-10-10", "2020-10-13"


def day_row(station: str, day: dt.date, mean: float) -> pd.DataFrame:
    row = daily_summary(empty_clean_frame(), station=station, days=[day])
    row["temperature_mean_c"] = mean
    return row


def test_heat_island_index_is_the_station_mean_minus_the_network_median():
    day, next_day = dt.date(2020, 7, 14), dt.date(2020, 7, 15)
    daily = pd.concat([
        day_row("st01", day, 24.1), day_row("st02", day, 26.3), day_row("st03", day, 25.0), day_row("st04", day, float("nan")),
        day_row("st01", next_day, 20.0), day_row("st02", next_day, 21.0),
    ], ignore_index=True)
    stations = pd.DataFrame({"station": ["st01", "st02", "st04"], "lcz": pd.array(["2", "9", "6"], dtype="string")})
    table = network_daily(daily, stations)
    assert list(table.columns) == list(NETWORK_DAILY_COLUMNS)
    frame = table.set_index(["date", "station"])
    first = frame.loc[pd.Timestamp(day)]
    assert first["network_median_temperature_c"].tolist() == [25.0] * 4  # median of the three means
    assert first["heat_island_index_c"].tolist()[:3] == [-0.9, 1.3, 0.0]
    assert pd.isna(first.loc["st04", "heat_island_index_c"])  # no mean (coverage too low): no index
    assert first["lcz"].tolist() == ["2", "9", None, "6"]  # st03 is not in the catalogue
    second = frame.loc[pd.Timestamp(next_day)]
    assert second["heat_island_index_c"].tolist() == [-0.5, 0.5]


def read(query: str) -> pd.DataFrame:
    with duckdb.connect(os.environ["METEO_DATA_DIR"] + "/meteo.duckdb", read_only=True) as conn:
        return conn.execute(query).fetchdf()


@pytest.fixture(scope="module")
def materialised(tmp_path_factory):
    folder = tmp_path_factory.mktemp("network")
    with stand_in(folder, FakePortal(SPECS), SPECS) as env, env.activated():
        defs, instance = build_definitions(), DagsterInstance.ephemeral()
        tags = {"dagster/asset_partition_range_start": FIRST, "dagster/asset_partition_range_end": LAST}
        assert defs.resolve_job_def(PIPELINE_JOB).execute_in_process(instance=instance, tags=tags).success
        yield env, defs, instance


def test_the_network_sensor_run_materialises_every_station_day_with_lcz_and_index(materialised):
    env, defs, instance = materialised
    with env.activated():
        sensor = defs.get_repository_def().get_sensor_def(NETWORK_SENSOR)
        context = build_multi_asset_sensor_context(
            monitored_assets=[AssetKey(["daily", k]) for k in KEYS], instance=instance, definitions=defs)
        requests = sensor.evaluate_tick(context).run_requests
        assert len(requests) == 1 and set(requests[0].asset_selection) == {NETWORK_DAILY, AssetKey("stations")}
        request = requests[0]
        result = defs.resolve_job_def(NETWORK_JOB).execute_in_process(
            instance=instance, tags=request.tags, asset_selection=request.asset_selection)
        assert result.success
        table = read('SELECT * FROM "network"."daily" ORDER BY date, station')
        daily = pd.concat([read(f'SELECT * FROM "daily"."{k}"') for k in KEYS]).sort_values(["date", "station"])
    assert table["station"].tolist() == daily["station"].tolist() and len(table) == 3 * 4
    assert table["date"].dt.strftime("%Y-%m-%d").unique().tolist() == ["2020-10-10", "2020-10-11", "2020-10-12", "2020-10-13"]
    assert table.groupby("station")["lcz"].first().to_dict() == dict(zip(KEYS, ["2", "6", "9"]))
    pd.testing.assert_series_equal(table["temperature_mean_c"], daily["temperature_mean_c"].reset_index(drop=True))
    median = daily.groupby("date")["temperature_mean_c"].transform("median").reset_index(drop=True)
    expected = (daily["temperature_mean_c"].reset_index(drop=True) - median).round(2)
    assert (table["heat_island_index_c"] - expected).abs().max() < 0.006
    # the dense city centre is warmer than the wooded suburb on average over these days
    index = table.groupby("station")["heat_island_index_c"].mean()
    assert index[KEYS[0]] > index[KEYS[2]]


def test_rematerialising_a_day_replaces_it(materialised):
    env, defs, instance = materialised
    with env.activated():
        job = defs.resolve_job_def(NETWORK_JOB)
        if not instance.get_latest_materialization_event(AssetKey("stations")):
            assert defs.resolve_job_def(CATALOGUE_JOB).execute_in_process(instance=instance).success
        assert job.execute_in_process(instance=instance, partition_key=FIRST, asset_selection=[NETWORK_DAILY]).success
        before = read('SELECT * FROM "network"."daily" ORDER BY date, station')
        assert job.execute_in_process(instance=instance, partition_key=FIRST, asset_selection=[NETWORK_DAILY]).success
        after = read('SELECT * FROM "network"."daily" ORDER BY date, station')
        types = dict(read("SELECT column_name, data_type FROM information_schema.columns "
                          "WHERE table_schema = 'network' AND table_name = 'daily'").values)
    pd.testing.assert_frame_equal(before, after)
    assert (after["date"].dt.strftime("%Y-%m-%d") == FIRST).sum() == 3
    assert types["date"] == "DATE" and types["lcz"] == "VARCHAR" and types["heat_island_index_c"] == "DOUBLE"


def test_the_network_asset_has_a_freshness_policy(materialised):
    _, defs, _ = materialised
    node = defs.get_repository_def().asset_graph.get(NETWORK_DAILY)
    policy = node.freshness_policy
    assert policy is not None and policy.fail_window.to_timedelta() == dt.timedelta(hours=2)
    assert {AssetKey(["daily", k]) for k in KEYS} | {AssetKey("stations")} <= set(node.parent_keys)
