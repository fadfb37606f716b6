"""The dashboard's figure data, site and PNG plots, on a generated network (no Dagster, no browser),
and the `dashboard` asset's wiring. The page itself is tested in Chromium: test_dashboard_browser.py."""

import datetime as dt
import io
import json
import re

import numpy as np
import pandas as pd
import pytest
from dagster import AssetKey, Failure
from PIL import Image

from meteo_assets.assets.dashboard import upload_site
from meteo_assets.config import Settings, station_key
from meteo_assets.dashboard import (
    build_model,
    daily_png,
    dashboard_window,
    freshness,
    heat_island_png,
    lcz_label,
    png_markdown,
    render_site,
    site_index,
    wind_cells,
)
from meteo_assets.dashboard.figures import SECTORS, WIND_CELLS
from meteo_assets.dashboard.model import outline, station_table
from meteo_assets.dashboard.site import describe_site
from meteo_assets.transform import clean_observations, daily_summary, parse_export
from meteo_assets.transform.network import network_daily
from meteo_assets_tests.fake_portal import default_network, generate_rows, render_csv, station_catalogue
from meteo_assets_tests.s3_server import s3_server  # noqa: F401  (fixture)

FIRST, LAST = dt.date(2021, 3, 1), dt.date(2021, 4, 10)
GENERATED_AT = dt.datetime(2021, 4, 11, 8, 0, tzinfo=dt.timezone.utc)


def network_frames(n_stations: int, first: dt.date, last: dt.date, seed: int):
    """Clean and daily frames of a generated network computed with the transform layer, and the
    stations table the catalogue would give (one station missing from it, as in the real one)."""
    specs = default_network(n_stations, first - dt.timedelta(days=1), last + dt.timedelta(days=2), seed=seed)
    parts: dict[str, list] = {}
    for spec in specs:
        parts.setdefault(station_key(re.sub(r"-archive-?\d{4}$", "", spec.dataset_id)), []).append(spec)
    days = pd.date_range(first, last).date.tolist()
    cleans, dailies = [], []
    for key, station_specs in parts.items():
        frame = pd.concat([parse_export(render_csv(generate_rows(s))).frame for s in station_specs], ignore_index=True)
        clean = clean_observations(frame, station=key, sensor_id=station_specs[0].sensor_id, now=GENERATED_AT).frame
        cleans.append(clean)
        dailies.append(daily_summary(clean, station=key, days=days))
    catalogue = pd.DataFrame([
        {"station": station_key(row["id_nom"]), "name": row["id_nom"], "commune": row["ville"], "lcz": row["lcz"],
         "latitude": float(row["latitude"]), "longitude": float(row["longitude"])}
        for row in station_catalogue(specs, seed=seed) if row["id_nom"] in {s.dataset_id for s in specs}
    ])
    stations = station_table([(key, f"Station {key[2:4]}") for key in parts], catalogue)
    clean = pd.concat(cleans, ignore_index=True)
    local_day = clean["local_time"].dt.normalize()
    return pd.concat(dailies, ignore_index=True), clean[local_day.between(pd.Timestamp(first), pd.Timestamp(last))], stations


@pytest.fixture(scope="module")
def network():
    daily, clean, stations = network_frames(6, FIRST, LAST, seed=11)
    window = dashboard_window(daily, 366, GENERATED_AT.date())
    model = build_model(daily, clean, stations, window=window, generated_at=GENERATED_AT, min_coverage=0.75)
    return daily, clean, stations, model


def test_wind_cells_put_each_slot_in_its_sector_and_speed_class():
    directions = [0.0, 11.2, 11.25, 348.75, 359.0, 180.0, 90.0, 45.0, 200.0, 10.0]
    speeds = [3.0, 3.0, 3.0, 4.9, 5.0, 15.0, 14.9, 0.0, np.nan, 20.0]
    clean = pd.DataFrame({
        "station": "st70_x", "local_time": pd.date_range("2021-03-01 00:00", periods=len(speeds), freq="15min"),
        "wind_speed_kmh": speeds, "wind_dir_deg": directions,
    })
    clean.loc[9, "wind_dir_deg"] = np.nan  # blowing, no direction: not a usable observation
    cells = wind_cells(clean).set_index("cell")["slots"]
    n_sector = len(SECTORS)
    north, nne, east, south = 0, 1, 4, 8
    assert cells.to_dict() == {
        0: 1,                          # calm (0 km/h), whatever its direction
        1 + north: 3,                  # 0°, 11.2° and 348.75° below 5 km/h
        1 + nne: 1,                    # 11.25° starts NNE
        1 + n_sector + north: 1,       # 359° at 5 km/h
        1 + n_sector + east: 1,        # 90° at 14.9 km/h
        1 + 2 * n_sector + south: 1,   # 180° at 15 km/h
    }
    assert cells.sum() == 8            # no speed, or blowing without a direction: not counted


def test_wind_rose_sector_sums_equal_the_slot_counts(network):
    _, clean, _, _ = network
    cells = wind_cells(clean)
    assert cells["cell"].between(0, WIND_CELLS - 1).all()
    per_day = cells.groupby(["station", "date"])["slots"].sum()
    usable = clean["wind_speed_kmh"].notna() & (clean["wind_speed_kmh"].eq(0) | clean["wind_dir_deg"].notna())
    expected = clean[usable].groupby(["station", clean["local_time"].dt.normalize()]).size()
    pd.testing.assert_series_equal(per_day, expected.rename_axis(["station", "date"]), check_names=False)
    calm = cells[cells["cell"] == 0].groupby(["station", "date"])["slots"].sum()
    assert calm.sum() == (clean["wind_speed_kmh"] == 0).sum()


def test_model_series_are_the_daily_tables_on_one_day_axis(network):
    daily, clean, stations, model = network
    assert (model["first_day"], model["days"]) == (FIRST.isoformat(), (LAST - FIRST).days + 1)
    assert model["default_period"] == [(LAST - dt.timedelta(days=29)).isoformat(), LAST.isoformat()]
    axis = pd.date_range(FIRST, LAST)
    index = network_daily(daily, stations).set_index(["station", "date"])["heat_island_index_c"]
    assert index.notna().sum() > len(stations) * 20
    for key in stations["station"]:
        rows = daily[daily["station"] == key].set_index("date").reindex(axis)
        series = model["series"][key]
        for column, short in (("temperature_mean_c", "tmean"), ("temperature_min_c", "tmin"), ("tx_mf_c", "tx"),
                              ("rain_sum_mm", "rain"), ("pressure_mean_hpa", "pressure")):
            np.testing.assert_array_equal(np.array(series[short], dtype=float), rows[column].to_numpy())
        np.testing.assert_allclose(np.array(series["coverage"], dtype=float), rows["coverage_temperature"], atol=1e-4)
        np.testing.assert_allclose(np.array(series["uhi"], dtype=float), index.loc[key].reindex(axis), atol=1e-9)
        wind = model["wind"][key]
        assert len(wind) == len(axis)
        usable = clean[(clean["station"] == key) & clean["wind_speed_kmh"].notna()
                       & (clean["wind_speed_kmh"].eq(0) | clean["wind_dir_deg"].notna())]
        slots = usable.groupby(usable["local_time"].dt.normalize()).size().reindex(axis, fill_value=0)
        assert [0 if day is None else sum(day) for day in wind] == slots.tolist()
    # the model is plain JSON: no NaN sneaks through
    json.dumps(model, allow_nan=False)


def test_stations_carry_position_zone_and_freshness(network):
    _, clean, stations, model = network
    by_key = {s["key"]: s for s in model["stations"]}
    assert list(by_key) == stations["station"].tolist()
    located = [s for s in model["stations"] if s["lat"] is not None]
    assert 0 < len(located) < len(stations)  # the catalogue misses one station, as the real one does
    for s in located:
        assert 43.4 < s["lat"] < 43.8 and 1.1 < s["lon"] < 1.7
        assert s["lcz_label"].startswith("LCZ ") and s["lcz_label"] != "LCZ unknown"
    last = clean.groupby("station")["observed_at"].max()
    for key, when in last.items():
        assert pd.Timestamp(by_key[key]["last_observation"]) == when.floor("min")
        assert by_key[key]["freshness"] == freshness(when, GENERATED_AT)


def test_freshness_by_age_of_the_last_observation():
    now = dt.datetime(2021, 4, 11, 12, 0, tzinfo=dt.timezone.utc)
    assert freshness(pd.Timestamp("2021-04-11 10:00", tz="UTC"), now) == "fresh"
    assert freshness(pd.Timestamp("2021-04-11 09:59", tz="UTC"), now) == "late"
    assert freshness(pd.Timestamp("2021-04-09 12:00", tz="UTC"), now) == "late"
    assert freshness(pd.Timestamp("2021-04-09 11:59", tz="UTC"), now) == "stale"
    assert freshness(None, now) == freshness(pd.NaT, now) == "none"


def test_lcz_labels():
    assert lcz_label("6") == "LCZ 6 open low-rise"
    assert lcz_label(14) == "LCZ D low plants"
    assert lcz_label("14.0") == "LCZ D low plants"
    assert lcz_label(None) == lcz_label(float("nan")) == "LCZ unknown"
    assert lcz_label("42") == "LCZ 42"


def test_window_ends_on_the_last_observed_day():
    daily = pd.DataFrame({"date": pd.to_datetime(["2021-01-01", "2021-06-30", "2021-07-01"]), "slots_reported": [5, 96, 0]})
    assert dashboard_window(daily, 30, dt.date(2021, 8, 1)) == (dt.date(2021, 6, 1), dt.date(2021, 6, 30))
    assert dashboard_window(daily, None, dt.date(2021, 8, 1)) == (dt.date(2021, 1, 1), dt.date(2021, 6, 30))
    assert dashboard_window(daily.iloc[0:0], 30, dt.date(2021, 8, 1)) == (dt.date(2021, 8, 1), dt.date(2021, 8, 1))


def test_station_table_without_a_catalogue_keeps_every_station():
    table = station_table([("st70_a", "A"), ("st71_b", "B")], None)
    assert table["station"].tolist() == ["st70_a", "st71_b"]
    assert table["latitude"].isna().all() and table["lcz"].isna().all()


def test_outline_is_a_closed_polygon_around_toulouse():
    shapes = {s["name"]: s for s in outline()["shapes"]}
    area = shapes["Toulouse Métropole"]
    assert (area["lon"][0], area["lat"][0]) == (area["lon"][-1], area["lat"][-1]) and len(area["lon"]) > 20
    assert min(area["lon"]) < 1.444 < max(area["lon"]) and min(area["lat"]) < 43.6045 < max(area["lat"])
    assert all(1.1 < x < 1.7 for x in area["lon"]) and all(43.4 < y < 43.8 for y in area["lat"])


def test_site_is_self_contained_and_small(network):
    files = render_site(network[3])
    page = files["index.html"].decode()
    references = re.findall(r'(?:src|href)="([^"]+)"', page)
    local = [r for r in references if not r.startswith(("https://", "data:"))]
    assert sorted(local) == ["assets/dashboard.css", "assets/dashboard.js", "assets/data.js", "assets/plotly.min.js"]
    assert all(r in files for r in local)
    # the only remote addresses are the attribution's links, never something the page loads
    assert not re.search(r'<(?:script|link|img|iframe)[^>]+(?:src|href)="https?:', page)
    assert "Open Database License" in page and "Toulouse Métropole" in page and "2021-04-11 10:00" in page
    data = files["assets/data.js"].decode()
    assert data.startswith("window.METEO_DASHBOARD = ") and json.loads(data.split("= ", 1)[1].rstrip(";\n")) == network[3]
    assert files["assets/plotly.min.js"].startswith(b"/**\n* plotly.js v")
    assert sum(map(len, files.values())) < 10_000_000


def _png(data: bytes) -> Image.Image:
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def test_daily_png_of_one_day_is_hourly_and_small(network):
    daily, clean, _, _ = network
    key = daily["station"].iloc[0]
    one_day = daily[(daily["station"] == key) & (daily["date"] == "2021-03-10")]
    png = daily_png(one_day, clean[clean["station"] == key])
    assert _png(png).size == (512, 192) and len(png) < 20_000
    assert png != daily_png(one_day)  # without the slots: the daily band instead of the hours
    assert png_markdown(png, "plot").startswith("![plot](data:image/png;base64,iVBOR")


def test_daily_png_of_a_range_and_of_a_station_without_data(network):
    daily, _, _, _ = network
    station = daily[daily["station"] == daily["station"].iloc[0]]
    assert _png(daily_png(station)).size == (512, 192)
    empty = station.assign(**{c: np.nan for c in ("temperature_min_c", "temperature_mean_c", "temperature_max_c", "rain_sum_mm")})
    assert _png(daily_png(empty)).size == (512, 192)
    assert _png(daily_png(station.iloc[0:0])).size == (512, 192)


def test_heat_island_png(network):
    daily = network[0]
    frame = network_daily(daily, network[2])
    assert _png(heat_island_png(frame)).size[0] == 512
    assert _png(heat_island_png(frame.iloc[0:0])).size[0] == 512


def test_upload_puts_the_site_under_dashboard_with_content_types(s3_server, monkeypatch):  # noqa: F811
    env = s3_server.storage_env()
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = Settings.from_env()
    files = {"assets/data.js": b"window.X = 1;\n", "assets/dashboard.css": b"body{}", "index.html": b"<!doctype html>"}
    with pytest.raises(Failure, match=f"s3://{settings.lake_bucket}/dashboard/.*METEO_LAKE_BUCKET"):
        upload_site(files, settings)  # no bucket yet
    client = s3_server.client()
    client.create_bucket(Bucket=settings.lake_bucket, CreateBucketConfiguration={"LocationConstraint": "eu-west-3"})
    assert upload_site(files, settings) == f"s3://{settings.lake_bucket}/dashboard/"
    index = client.get_object(Bucket=settings.lake_bucket, Key="dashboard/index.html")
    assert index["ContentType"].startswith("text/html") and index["Body"].read() == b"<!doctype html>"
    assert client.head_object(Bucket=settings.lake_bucket, Key="dashboard/assets/data.js")["ContentType"].startswith("text/javascript")


def test_dashboard_asset_depends_on_the_tables(tmp_path, monkeypatch):
    from meteo_assets.definitions import build_definitions

    toml = tmp_path / "datasets.toml"
    toml.write_text('[[stations]]\ndataset = "70-station-meteo-balma-gare"\n\n'
                    '[[stations]]\ndataset = "71-station-meteo-aucamville-mairie"\nenabled = false\n')
    defs = build_definitions(Settings(datasets_file=toml, data_dir=tmp_path / "data"))
    spec = next(s for s in defs.resolve_all_asset_specs() if s.key == AssetKey("dashboard"))
    deps = {d.asset_key for d in spec.deps}
    assert {AssetKey(["daily", "st70_balma_gare"]), AssetKey(["clean", "st70_balma_gare"]),
            AssetKey(["network", "daily"]), AssetKey("stations")} <= deps
    assert not any("st71" in key.to_user_string() for key in deps)  # disabled stations stay out
    assert spec.partitions_def is None


def test_the_run_summary_line_points_at_the_dashboard(tmp_path):
    assert describe_site(tmp_path) is None
    index = site_index(tmp_path)
    index.parent.mkdir()
    index.write_text("<!doctype html>")
    line = describe_site(tmp_path)
    assert line.startswith(f"dashboard: {index.as_uri()}  (built 20") and "make dashboard" in line


def test_a_network_without_observations_still_builds(network):
    daily, clean, stations, _ = network
    silent = daily.iloc[0:0]
    window = dashboard_window(silent, 366, dt.date(2021, 4, 11))
    model = build_model(silent, clean.iloc[0:0], stations, window=window, generated_at=GENERATED_AT, min_coverage=0.75)
    assert model["days"] == 1 and model["default_period"] == ["2021-04-11", "2021-04-11"]
    assert all(v is None for s in model["series"].values() for values in s.values() for v in values)
    assert {s["freshness"] for s in model["stations"]} == {"none"}
    assert "index.html" in render_site(model)
