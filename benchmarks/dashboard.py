"""Dashboard benchmark: build time, size and first paint for a generated network (default 50 stations × 1 year).

    .venv/bin/python benchmarks/dashboard.py                      # 50 stations, 2023-01-01 … 2023-12-31
    .venv/bin/python benchmarks/dashboard.py --stations 10 --start 2023-06-01 --end 2023-08-31

The stations' clean and daily tables are computed with the transform layer from the project's
realistic generator and written to a DuckDB file (no portal, no pipeline run: this measures the
dashboard only). Then the `dashboard` asset is materialised through Dagster, and the site is
opened in headless Chromium (Debian's chromium + chromedriver). Prints: the asset's wall time and
its own build time, the site's size per file, and first paint / all charts drawn in the browser
(median of the loads). Targets: build ≤ 10 s, site ≤ 10 MB, first paint ≤ 2 s.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import duckdb  # noqa: E402
import pandas as pd  # noqa: E402
from dagster import AssetKey, DagsterInstance  # noqa: E402

from meteo_assets.assets.catalogue import join_catalogue  # noqa: E402
from meteo_assets.config import Settings, load_network, station_key  # noqa: E402
from meteo_assets.dashboard import site_index  # noqa: E402
from meteo_assets.storage.duckdb_io import create_table_sql  # noqa: E402
from meteo_assets.transform import CLEAN_COLUMNS, DAILY_COLUMNS, clean_observations, daily_summary, parse_export  # noqa: E402
from meteo_assets_tests.fake_portal import default_network, generate_rows, render_csv, station_catalogue  # noqa: E402
from meteo_assets_tests.stand_in import datasets_toml  # noqa: E402

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--window-size=1400,1000"]


def write_tables(folder: Path, n_stations: int, first: dt.date, last: dt.date) -> None:
    """datasets.toml and data/meteo.duckdb with the network's clean, daily and stations tables."""
    specs = two_digit_numbers(default_network(n_stations, first - dt.timedelta(days=1), last + dt.timedelta(days=2), seed=50))
    (folder / "datasets.toml").write_text(datasets_toml(specs, start_date=first.isoformat()), encoding="utf-8")
    network = load_network(folder / "datasets.toml")
    days = pd.date_range(first, last).date.tolist()
    (folder / "data").mkdir(parents=True)
    with duckdb.connect(str(folder / "data" / "meteo.duckdb")) as conn:
        conn.execute("SET TimeZone = 'UTC'")
        for schema in ("clean", "daily"):
            conn.execute(f"CREATE SCHEMA {schema}")
        for number, station in enumerate(network.enabled, 1):
            parts = [s for s in specs if station_key(re.sub(r"-archive-?\d{4}$", "", s.dataset_id)) == station.key]
            frame = pd.concat([parse_export(render_csv(generate_rows(s))).frame for s in parts], ignore_index=True)
            clean = clean_observations(frame, station=station.key, sensor_id=station.sensor_id,
                                       now=dt.datetime.now(dt.timezone.utc)).frame
            daily = daily_summary(clean, station=station.key, days=days)
            clean = clean[clean["local_time"].dt.normalize().between(pd.Timestamp(first), pd.Timestamp(last))]
            for schema, table, columns in (("clean", clean, CLEAN_COLUMNS), ("daily", daily, DAILY_COLUMNS)):
                conn.execute(create_table_sql(schema, station.key, columns))
                conn.register("frame", table)
                conn.execute(f'INSERT INTO {schema}."{station.key}" BY NAME SELECT * FROM frame')
                conn.unregister("frame")
            print(f"  generated {number}/{len(network.enabled)} {station.key}: {len(clean):,} slots", flush=True)
        stations = join_catalogue(network, station_catalogue(specs, seed=50))
        conn.register("frame", stations)
        conn.execute("CREATE TABLE main.stations AS SELECT * FROM frame")


def two_digit_numbers(specs: list) -> list:
    """Past 44 stations the generator numbers datasets from 100, which dataset ids cannot carry:
    give those the free two-digit numbers (the sensor ids stay as they are)."""
    used = {int(s.dataset_id[:2]) for s in specs if s.dataset_id[2] == "-"}
    free = iter(n for n in range(100) if n not in used)
    numbers: dict[int, int] = {}
    renamed = []
    for spec in specs:
        if spec.dataset_id[3] == "-":
            number = numbers.setdefault(spec.sensor_id, next(free))
            spec = dataclasses.replace(spec, dataset_id=f"{number:02d}{spec.dataset_id[3:]}")
        renamed.append(spec)
    return renamed


def build(folder: Path) -> tuple[float, dict]:
    from meteo_assets.definitions import build_definitions

    env = {"METEO_DATASETS_FILE": str(folder / "datasets.toml"), "METEO_DATA_DIR": str(folder / "data"),
           "METEO_STORAGE": "local"}
    os.environ.update(env)
    defs = build_definitions(Settings.from_env())
    started = time.perf_counter()
    result = defs.resolve_implicit_global_asset_job_def().execute_in_process(
        instance=DagsterInstance.ephemeral(), asset_selection=[AssetKey("dashboard")])
    wall = time.perf_counter() - started
    [event] = result.get_asset_materialization_events()
    return wall, {k: v.value for k, v in event.step_materialization_data.materialization.metadata.items()}


def first_paint(index: Path, loads: int) -> dict[str, list[float]]:
    """Seconds from navigation to: first contentful paint, Plotly and the data parsed, every chart drawn."""
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.support.ui import WebDriverWait

    os.environ["SE_OFFLINE"] = "true"
    marks = {"first-contentful-paint": [], "dashboard-script": [], "dashboard-rendered": []}
    for _ in range(loads):
        with tempfile.TemporaryDirectory() as profile:
            options = Options()
            options.binary_location = shutil.which("chromium")
            for flag in CHROMIUM_FLAGS + [f"--user-data-dir={profile}"]:
                options.add_argument(flag)
            driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
            try:
                driver.get(index.as_uri())
                WebDriverWait(driver, 60).until(lambda d: d.execute_script("return document.body.dataset.rendered"))
                for name, times in marks.items():
                    times.append(driver.execute_script(
                        "return performance.getEntriesByName(arguments[0])[0].startTime", name) / 1000)
            finally:
                driver.quit()
    return marks


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--stations", type=int, default=50)
    parser.add_argument("--start", type=dt.date.fromisoformat, default=dt.date(2023, 1, 1))
    parser.add_argument("--end", type=dt.date.fromisoformat, default=dt.date(2023, 12, 31))
    parser.add_argument("--loads", type=int, default=3, help="page loads in Chromium (default 3)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="dashboard-bench-") as tmp:
        folder = Path(tmp)
        print(f"generating {args.stations} stations × {args.start} … {args.end}", flush=True)
        started = time.perf_counter()
        write_tables(folder, args.stations, args.start, args.end)
        print(f"  tables written in {time.perf_counter() - started:.1f} s\n")
        wall, meta = build(folder)
        index = site_index(folder / "data")
        sizes = {str(p.relative_to(index.parent)): p.stat().st_size for p in sorted(index.parent.rglob("*")) if p.is_file()}
        total = sum(sizes.values())
        print(f"dashboard asset: {wall:.2f} s wall through Dagster, {meta['build_seconds']:.2f} s in the asset "
              f"(target ≤ 10 s); {meta['stations']} stations, {meta['days']} days")
        print(f"site: {total / 1e6:.2f} MB (target ≤ 10 MB)")
        for name, size in sizes.items():
            print(f"  {name:<24} {size / 1e6:8.2f} MB")
        print(f"headless Chromium, {args.loads} loads from disk (seconds after navigation; median, then each load):")
        for name, times in first_paint(index, args.loads).items():
            label = {"first-contentful-paint": "first contentful paint (target ≤ 2 s)",
                     "dashboard-script": "Plotly and the data parsed", "dashboard-rendered": "every chart drawn"}[name]
            print(f"  {label:<40} {statistics.median(times):5.2f}   ({', '.join(f'{t:.2f}' for t in times)})")
        print(f"load average while measuring: {', '.join(f'{x:.1f}' for x in os.getloadavg())} on {os.cpu_count()} cores")
    return 0


if __name__ == "__main__":
    sys.exit(main())
