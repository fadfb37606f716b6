"""The dashboard in a real browser: a generated network run through the pipeline and the `dashboard`
asset, the site opened from disk in headless Chromium (Debian's `chromium` + `chromedriver`, driven
by Selenium), its numbers compared with the DuckDB tables, its selectors exercised.

The screenshot is saved in the test's output folder (pytest's tmp_path) as dashboard.png.
"""

import base64
import datetime as dt
import shutil

import duckdb
import numpy as np
import pandas as pd
import pytest
from dagster import AssetKey, DagsterInstance
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

from meteo_assets.dashboard import site_index
from meteo_assets.definitions import CATALOGUE_JOB, PIPELINE_JOB, build_definitions
from meteo_assets_tests.fake_portal import FakePortal, default_network, station_catalogue
from meteo_assets_tests.stand_in import stand_in

FIRST, LAST = dt.date(2020, 10, 3), dt.date(2020, 11, 4)  # 33 days, the DST change of 25 October inside
SPECS = default_network(4, "2020-09-01", "2020-11-06", seed=8)
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--window-size=1400,1000"]
CHARTS = ["chart-map", "chart-temperature", "chart-rain", "chart-humidity-pressure", "chart-wind-rose",
          "chart-uhi", "chart-uhi-lcz", "chart-coverage"]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The network's tables and the dashboard built from them by the asset, through Dagster."""
    folder = tmp_path_factory.mktemp("dashboard-network")
    portal = FakePortal(SPECS, stations=station_catalogue(SPECS, seed=8))
    with stand_in(folder, portal, SPECS) as env, env.activated():
        defs = build_definitions()
        instance = DagsterInstance.get()
        tags = {"dagster/asset_partition_range_start": FIRST.isoformat(), "dagster/asset_partition_range_end": LAST.isoformat()}
        pipeline = defs.resolve_job_def(PIPELINE_JOB).execute_in_process(instance=instance, tags=tags)
        assert pipeline.success
        assert defs.resolve_job_def(CATALOGUE_JOB).execute_in_process(instance=instance).success
        assert defs.resolve_implicit_global_asset_job_def().execute_in_process(
            instance=instance, asset_selection=[AssetKey("dashboard")]).success
        database = folder / "data" / "meteo.duckdb"
        with duckdb.connect(str(database), read_only=True) as conn:
            conn.execute("SET TimeZone = 'UTC'")
            keys = [k for (k,) in conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'daily' ORDER BY 1").fetchall()]
            daily = conn.execute(" UNION ALL ".join(f'SELECT * FROM daily."{k}"' for k in keys)).fetchdf()
            clean = conn.execute(" UNION ALL ".join(f'SELECT * FROM clean."{k}"' for k in keys)).fetchdf()
        yield site_index(folder / "data"), daily, clean, pipeline


@pytest.fixture
def browser(tmp_path, monkeypatch):
    chromium, chromedriver = shutil.which("chromium"), shutil.which("chromedriver")
    assert chromium and chromedriver, "Debian's chromium and chromium-driver are needed (make test installs them)"
    monkeypatch.setenv("SE_OFFLINE", "true")  # Selenium Manager: never download anything
    options = Options()
    options.binary_location = chromium
    for flag in CHROMIUM_FLAGS + [f"--user-data-dir={tmp_path / 'profile'}"]:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(chromedriver), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def open_dashboard(driver, index):
    driver.get(index.as_uri())
    return wait_rendered(driver, lambda state: True)


def wait_rendered(driver, condition):
    """Wait until the page says it has drawn every chart for a state matching `condition`."""
    def rendered(d):
        state = d.execute_script("return document.body.dataset.rendered || null")
        return state if state and condition(state.split(" ")) else None
    return WebDriverWait(driver, 60).until(rendered).split(" ")


def charts(driver) -> dict:
    """For each chart: its traces' data and how many marks Plotly drew in its SVG."""
    return driver.execute_script("""
        const out = {};
        for (const gd of document.querySelectorAll('.js-plotly-plot')) {
          out[gd.id] = {
            svg: gd.querySelectorAll('svg.main-svg').length,
            marks: gd.querySelectorAll('.scatterlayer path.point, .scatterlayer path.js-line, .barlayer g.point > path').length
              + [...gd.querySelectorAll('.heatmaplayer image')].filter((i) => i.href.baseVal.startsWith('data:image/png')).length,
            annotations: (gd.layout.annotations || []).map((a) => a.text),
            layout: {xrange: gd.layout.xaxis && gd.layout.xaxis.range},
            data: gd.data.map((t) => ({name: t.name, type: t.type, x: t.x, y: t.y, z: t.z, r: t.r,
              customdata: t.customdata, color: t.marker && t.marker.color, theta: t.theta})),
          };
        }
        return out;""")


def period_rows(daily: pd.DataFrame, start: str, end: str) -> pd.DataFrame:
    return daily[daily["date"].between(pd.Timestamp(start), pd.Timestamp(end))]


def heat_island(daily: pd.DataFrame) -> pd.Series:
    """The test's own reckoning: the day's network median of the daily means, subtracted."""
    median = daily.groupby("date")["temperature_mean_c"].median()
    return daily["temperature_mean_c"] - daily["date"].map(median)


def test_dashboard_renders_every_chart_with_the_tables_numbers(built, browser, tmp_path):
    index, daily, clean, _ = built
    station, start, end = open_dashboard(browser, index)
    assert (start, end) == ((LAST - dt.timedelta(days=29)).isoformat(), LAST.isoformat())

    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert not errors, errors
    # Plotly may paint a heat map's image a frame after its promise resolves
    WebDriverWait(browser, 10).until(lambda d: all(c["marks"] for c in charts(d).values()))
    drawn = charts(browser)
    assert sorted(drawn) == sorted(CHARTS)
    for chart_id, chart in drawn.items():
        assert chart["svg"] >= 1 and chart["marks"] > 0, (chart_id, {k: c["marks"] for k, c in drawn.items()})
        assert not [a for a in chart["annotations"] if a.startswith("no ")], (chart_id, chart["annotations"])
    assert drawn["chart-uhi"]["marks"] and drawn["chart-coverage"]["marks"]  # heat maps drawn as images

    in_period = period_rows(daily, start, end)
    # map: each station's colour is its mean of the daily means over the period
    means = in_period.groupby("station")["temperature_mean_c"].mean().round(2)
    shown = {key: color for trace in drawn["chart-map"]["data"] if trace["type"] == "scatter" and trace["customdata"]
             for (key, *_), color in zip(trace["customdata"], trace["color"] if isinstance(trace["color"], list) else [])}
    assert shown and len(shown) >= len(means.dropna()) - 1  # one station is missing from the catalogue
    for key, color in shown.items():
        assert color == pytest.approx(means[key], abs=0.006)

    # the selected station's temperature, rain and wind rose
    rows = in_period[in_period["station"] == station].sort_values("date")
    series = {t["name"]: t for t in drawn["chart-temperature"]["data"]}
    assert series["mean"]["x"] == rows["date"].dt.strftime("%Y-%m-%d").tolist()
    assert _values(series["mean"]["y"]) == _values(rows["temperature_mean_c"])
    assert _values(series["TN Météo-France"]["y"]) == _values(rows["tn_mf_c"])
    assert _values(series["TX Météo-France"]["y"]) == _values(rows["tx_mf_c"])
    running = {t["name"]: t for t in drawn["chart-rain"]["data"]}["running total"]["y"]
    assert running[-1] == pytest.approx(rows["rain_sum_mm"].sum(), abs=0.05)
    rose = drawn["chart-wind-rose"]["data"]
    slots = clean[(clean["station"] == station) & clean["local_time"].between(pd.Timestamp(start), pd.Timestamp(end) + pd.Timedelta(days=1), inclusive="left")]
    usable = slots[slots["wind_speed_kmh"].notna() & (slots["wind_speed_kmh"].eq(0) | slots["wind_dir_deg"].notna())]
    blowing = usable[usable["wind_speed_kmh"] > 0]
    sector = ((blowing["wind_dir_deg"] + 11.25) % 360 // 22.5).astype(int)
    per_sector = sector.value_counts().reindex(range(16), fill_value=0).tolist()
    assert [sum(t["customdata"][k] for t in rose) for k in range(16)] == per_sector
    calm = drawn["chart-wind-rose"]["annotations"][0]
    assert calm.endswith(f"of {len(usable)} observations")

    # heat island: station × day index, and the mean by zone
    uhi = drawn["chart-uhi"]["data"][0]
    expected = in_period.assign(index=heat_island(in_period)).pivot(index="station", columns="date", values="index")
    for key, row in zip(uhi["customdata"], uhi["z"]):
        want = expected.loc[key].reindex(pd.to_datetime(uhi["x"])) if key in expected.index else pd.Series([np.nan] * len(uhi["x"]))
        np.testing.assert_allclose(np.array(row, dtype=float), want.to_numpy(dtype=float), atol=0.005 + 1e-9)  # 0.01 °C rounding
    bars = drawn["chart-uhi-lcz"]["data"][0]
    assert len(bars["x"]) >= 2 and all(x.startswith("LCZ ") for x in bars["x"])
    assert sum(n for n, _ in bars["customdata"]) == int(heat_island(in_period).notna().sum())

    # coverage calendar: the daily tables' temperature coverage
    coverage = drawn["chart-coverage"]["data"][0]
    got = pd.DataFrame(coverage["z"], index=coverage["customdata"], columns=pd.to_datetime(coverage["x"]), dtype=float)
    want = in_period.pivot(index="station", columns="date", values="coverage_temperature").reindex(index=got.index, columns=got.columns)
    np.testing.assert_allclose(got.to_numpy(), want.to_numpy(), atol=1e-4)

    # freshness: the last observation of every station
    last = clean.groupby("station")["observed_at"].max().dt.tz_convert("Europe/Paris").dt.strftime("%Y-%m-%d %H:%M")
    table = {row.get_attribute("data-station"): row.text for row in browser.find_elements(By.CSS_SELECTOR, "#table-freshness tbody tr")}
    for key, when in last.items():
        assert when in table[key] and "stale" in table[key]  # the data is from 2020
    footer = browser.find_element(By.TAG_NAME, "footer").text
    assert "Open Database License (ODbL)" in footer and "Toulouse Métropole" in footer and "Generated 20" in footer

    # the whole page, beyond the window, at the window's width
    size = browser.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
    shot = browser.execute_cdp_cmd("Page.captureScreenshot", {
        "format": "png", "captureBeyondViewport": True,
        "clip": {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}})
    (tmp_path / "dashboard.png").write_bytes(base64.b64decode(shot["data"]))
    assert (tmp_path / "dashboard.png").stat().st_size > 50_000


def test_selectors_change_the_charts(built, browser):
    index, daily, _, _ = built
    station, start, end = open_dashboard(browser, index)
    before = charts(browser)

    other = next(o.get_attribute("value") for o in Select(browser.find_element(By.ID, "station")).options
                 if o.get_attribute("value") != station)
    Select(browser.find_element(By.ID, "station")).select_by_value(other)
    wait_rendered(browser, lambda state: state[0] == other)
    after = charts(browser)
    mean = {t["name"]: t for t in after["chart-temperature"]["data"]}["mean"]
    rows = period_rows(daily, start, end)
    assert _values(mean["y"]) == _values(rows[rows["station"] == other].sort_values("date")["temperature_mean_c"])
    assert after["chart-temperature"]["data"] != before["chart-temperature"]["data"]
    assert browser.find_element(By.ID, "station-name").text.strip() != ""
    assert browser.find_element(By.CSS_SELECTOR, "#table-stations tr.selected").get_attribute("data-station") == other

    # a click on a row of the stations table selects that station too
    browser.find_element(By.CSS_SELECTOR, f'#table-stations tr[data-station="{station}"]').click()
    wait_rendered(browser, lambda state: state[0] == station)

    # the 7-day button, then an explicit range typed in the date inputs
    browser.find_element(By.CSS_SELECTOR, '.quick button[data-days="7"]').click()
    week_start = (LAST - dt.timedelta(days=6)).isoformat()
    wait_rendered(browser, lambda state: state[1] == week_start)
    week = charts(browser)
    assert len({t["name"]: t for t in week["chart-temperature"]["data"]}["mean"]["x"]) == 7
    assert week["chart-temperature"]["layout"]["xrange"][0].startswith(week_start)
    week_means = period_rows(daily, week_start, end).groupby("station")["temperature_mean_c"].mean().round(2)
    colours = {key: colour for t in week["chart-map"]["data"] if t["type"] == "scatter" and isinstance(t["color"], list)
               for (key, *_), colour in zip(t["customdata"], t["color"])}
    assert colours and all(colour == pytest.approx(week_means[key], abs=0.006) for key, colour in colours.items())
    assert len(week["chart-uhi"]["data"][0]["x"]) == 7

    browser.execute_script("""
        const start = document.getElementById('start');
        start.value = '2020-10-10';
        start.dispatchEvent(new Event('change'));""")
    wait_rendered(browser, lambda state: state[1] == "2020-10-10")
    assert len(charts(browser)["chart-coverage"]["data"][0]["x"]) == (LAST - dt.date(2020, 10, 10)).days + 1
    assert not [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]


def test_the_daily_asset_carries_its_plot_on_the_runs_last_day(built):
    *_, pipeline = built
    plots = {}
    for event in pipeline.get_asset_materialization_events():
        materialization = event.step_materialization_data.materialization
        if materialization.asset_key.path[0] == "daily" and "plot" in materialization.metadata:
            plots[materialization.asset_key.path[1]] = (materialization.partition, materialization.metadata["plot"].value)
    assert len(plots) == len({s.sensor_id for s in SPECS})  # every station, once
    for partition, markdown in plots.values():
        assert partition == LAST.isoformat()
        assert markdown.startswith("![temperature and rain](data:image/png;base64,iVBOR") and len(markdown) < 30_000


def _values(values) -> list:
    return [None if v is None or (isinstance(v, float) and np.isnan(v)) else round(float(v), 6) for v in values]
