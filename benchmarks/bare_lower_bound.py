"""The lower bound for a backfill: one export per dataset, DuckDB SQL for the contract, no Dagster.

What a bare script does with the same data: download each dataset's export for the whole range
once, keep it on disk, load it into DuckDB and compute the clean and daily tables in SQL (the
contract's rules, including the Météo-France windows). `benchmarks/backfill.py` times it next to
the Dagster backfill, on the same stand-in portal, to show what the orchestration costs.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import duckdb
import requests

from meteo_assets.config import Network
from meteo_assets.portal.client import window_filter

CLEAN_SQL = """
CREATE OR REPLACE TABLE clean AS
WITH typed AS (
    SELECT
        ? AS station,
        TRY_CAST(heure_de_paris AS TIMESTAMPTZ) AS observed_at,
        TRY_CAST(id AS INTEGER) AS sensor,
        lower(trim(type_de_station)) AS station_type,
        data,
        TRY_CAST(temperature_en_degre_c AS DOUBLE) AS t,
        TRY_CAST(humidite AS DOUBLE) AS h,
        TRY_CAST(pression AS DOUBLE) AS p,
        TRY_CAST(pluie AS DOUBLE) AS r,
        TRY_CAST(pluie_intensite_max AS DOUBLE) AS ri,
        TRY_CAST(force_moyenne_du_vecteur_vent AS DOUBLE) AS ws,
        TRY_CAST(direction_du_vecteur_vent_moyen AS DOUBLE) AS wd,
        TRY_CAST(force_rafale_max AS DOUBLE) AS gs,
        TRY_CAST(direction_du_vecteur_de_vent_max_en_degres AS DOUBLE) AS gd
    FROM raw
), kept AS (
    SELECT *, (t = -50 AND p = 90000 AND h = 0) AS zero FROM typed
    WHERE observed_at IS NOT NULL AND sensor = ? AND station_type <> 'sous station'
      AND observed_at <= now() + INTERVAL 1 HOUR
      AND observed_at >= ? AND observed_at < ?
), nulled AS (
    SELECT station, observed_at, data,
        CASE WHEN NOT zero AND t BETWEEN -30 AND 50 THEN t END AS temperature_c,
        CASE WHEN NOT zero AND h BETWEEN 1 AND 100 THEN h END AS humidity_pct,
        CASE WHEN NOT zero AND p <> 90000 AND p / 100 BETWEEN 870 AND 1085 THEN p / 100 END AS pressure_hpa,
        CASE WHEN NOT zero AND round(r, 1) BETWEEN 0 AND 50 THEN round(r, 1) END AS rain_mm,
        CASE WHEN NOT zero AND round(ri, 1) BETWEEN 0 AND 50 THEN round(ri, 1) END AS rain_intensity_max_mm,
        CASE WHEN NOT zero AND ws BETWEEN 0 AND 250 THEN ws END AS wind_speed_kmh,
        CASE WHEN NOT zero AND wd BETWEEN 0 AND 360 THEN wd END AS wind_dir_deg,
        CASE WHEN NOT zero AND gs BETWEEN 0 AND 250 THEN gs END AS gust_speed_kmh,
        CASE WHEN NOT zero AND gd BETWEEN 0 AND 360 THEN gd END AS gust_dir_deg
    FROM kept
)
SELECT * EXCLUDE (data) FROM nulled
QUALIFY row_number() OVER (
    PARTITION BY observed_at
    ORDER BY (temperature_c IS NOT NULL)::INT + (humidity_pct IS NOT NULL)::INT + (pressure_hpa IS NOT NULL)::INT
           + (rain_mm IS NOT NULL)::INT + (rain_intensity_max_mm IS NOT NULL)::INT + (wind_speed_kmh IS NOT NULL)::INT
           + (wind_dir_deg IS NOT NULL)::INT + (gust_speed_kmh IS NOT NULL)::INT + (gust_dir_deg IS NOT NULL)::INT DESC,
           data DESC) = 1
"""

DAILY_SQL = """
INSERT INTO daily
WITH local AS (
    SELECT *, CAST(timezone('Europe/Paris', observed_at) AS DATE) AS day,
        CAST(observed_at + INTERVAL 6 HOUR AS DATE) AS tn_day,      -- [D-1 18:00, D 18:00) UTC
        CAST(observed_at - INTERVAL 6 HOUR AS DATE) AS tx_day       -- [D 06:00, D+1 06:00) UTC
    FROM clean
), days AS (
    SELECT day, station, count(*) AS slots_reported,
        (epoch(timezone('Europe/Paris', (day + 1)::TIMESTAMP)) - epoch(timezone('Europe/Paris', day::TIMESTAMP))) / 900 AS slots_expected,
        round(avg(temperature_c), 2) AS temperature_mean_c, min(temperature_c) AS temperature_min_c,
        max(temperature_c) AS temperature_max_c, round(avg(humidity_pct), 2) AS humidity_mean_pct,
        round(avg(pressure_hpa), 2) AS pressure_mean_hpa, round(sum(rain_mm), 1) AS rain_sum_mm,
        max(rain_intensity_max_mm) AS rain_intensity_max_mm, round(avg(wind_speed_kmh), 2) AS wind_speed_mean_kmh,
        max(gust_speed_kmh) AS gust_max_kmh,
        round((degrees(atan2(sum(wind_speed_kmh * sin(radians(wind_dir_deg))) FILTER (wind_speed_kmh > 0),
                             sum(wind_speed_kmh * cos(radians(wind_dir_deg))) FILTER (wind_speed_kmh > 0))) + 360) % 360, 2)
            AS wind_dir_mean_deg,
        count(temperature_c) AS n_t, count(humidity_pct) AS n_h, count(pressure_hpa) AS n_p,
        count(rain_mm) AS n_r, count(wind_speed_kmh) AS n_w
    FROM local GROUP BY day, station
), tn AS (SELECT tn_day AS day, min(temperature_c) AS v, count(temperature_c) AS n FROM local GROUP BY 1),
   tx AS (SELECT tx_day AS day, max(temperature_c) AS v, count(temperature_c) AS n,
                 round(sum(rain_mm), 1) AS rr, count(rain_mm) AS nr FROM local GROUP BY 1)
SELECT days.station, days.day, slots_expected, slots_reported,
    CASE WHEN n_t >= ? * slots_expected THEN temperature_mean_c END,
    CASE WHEN n_t >= ? * slots_expected THEN temperature_min_c END,
    CASE WHEN n_t >= ? * slots_expected THEN temperature_max_c END,
    CASE WHEN n_h >= ? * slots_expected THEN humidity_mean_pct END,
    CASE WHEN n_p >= ? * slots_expected THEN pressure_mean_hpa END,
    CASE WHEN n_r >= ? * slots_expected THEN rain_sum_mm END,
    CASE WHEN n_r >= ? * slots_expected THEN rain_intensity_max_mm END,
    CASE WHEN n_w >= ? * slots_expected THEN wind_speed_mean_kmh END,
    CASE WHEN n_w >= ? * slots_expected THEN gust_max_kmh END,
    CASE WHEN n_w >= ? * slots_expected THEN wind_dir_mean_deg END,
    n_t / slots_expected, n_h / slots_expected, n_p / slots_expected, n_r / slots_expected, n_w / slots_expected,
    CASE WHEN tn.n >= 72 THEN tn.v END, CASE WHEN tx.n >= 72 THEN tx.v END, CASE WHEN tx.nr >= 72 THEN tx.rr END
FROM days LEFT JOIN tn USING (day) LEFT JOIN tx USING (day)
WHERE days.day BETWEEN ? AND ?
"""

DAILY_DDL = """
CREATE TABLE IF NOT EXISTS daily (station VARCHAR, date DATE, slots_expected INTEGER, slots_reported INTEGER,
    temperature_mean_c DOUBLE, temperature_min_c DOUBLE, temperature_max_c DOUBLE, humidity_mean_pct DOUBLE,
    pressure_mean_hpa DOUBLE, rain_sum_mm DOUBLE, rain_intensity_max_mm DOUBLE, wind_speed_mean_kmh DOUBLE,
    gust_max_kmh DOUBLE, wind_dir_mean_deg DOUBLE, coverage_temperature DOUBLE, coverage_humidity DOUBLE,
    coverage_pressure DOUBLE, coverage_rain DOUBLE, coverage_wind DOUBLE, tn_mf_c DOUBLE, tx_mf_c DOUBLE,
    rr_mf_mm DOUBLE)
"""


def paris_midnight_utc(day: dt.date) -> dt.datetime:
    import zoneinfo

    return dt.datetime.combine(day, dt.time(), tzinfo=zoneinfo.ZoneInfo("Europe/Paris")).astimezone(dt.timezone.utc)


def run(network: Network, portal_url: str, first: dt.date, last: dt.date, folder: Path) -> int:
    """Backfill [first, last] for every enabled station; returns the number of portal requests."""
    folder.mkdir(parents=True, exist_ok=True)
    start, end = paris_midnight_utc(first), paris_midnight_utc(last + dt.timedelta(days=1))
    session = requests.Session()
    requests_made = 0
    conn = duckdb.connect(str(folder / "bare.duckdb"))
    conn.execute("SET TimeZone = 'UTC'")
    conn.execute(DAILY_DDL)
    for station in network.enabled:
        files = []
        for dataset in station.datasets:
            response = session.get(
                f"{portal_url}/api/explore/v2.1/catalog/datasets/{dataset}/exports/csv",
                params={"where": window_filter(start, end), "order_by": "heure_de_paris", "with_bom": "false"},
                timeout=120,
            )
            response.raise_for_status()
            requests_made += 1
            path = folder / f"{dataset}.csv"
            path.write_bytes(response.content)
            files.append(str(path))
        conn.execute(
            "CREATE OR REPLACE TEMP TABLE raw AS SELECT * FROM read_csv(?, delim=';', header=true, all_varchar=true, "
            "union_by_name=true, ignore_errors=true)",
            [files],
        )
        conn.execute(CLEAN_SQL, [station.key, station.sensor_id, start, end])
        coverage = [station.contract.min_coverage] * 10
        conn.execute(DAILY_SQL, [*coverage, first, last])
        conn.execute(f'CREATE OR REPLACE TABLE "clean_{station.key}" AS SELECT * FROM clean')
    conn.close()
    return requests_made
