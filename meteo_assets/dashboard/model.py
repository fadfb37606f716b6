"""Tables → the dashboard's data model: one JSON document the page renders every chart from.

Series are arrays aligned on one day axis (the dashboard's span), null where a station has no
value, so the page can cut any period out of them without further lookups.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from importlib import resources

import numpy as np
import pandas as pd

from meteo_assets.dashboard.figures import (
    SECTORS,
    SPEED_CLASSES,
    WIND_CELLS,
    freshness,
    last_observations,
    lcz_label,
    wind_cells,
)
from meteo_assets.transform.contract import PARIS
from meteo_assets.transform.network import network_daily

DEFAULT_PERIOD_DAYS = 30
# daily-table column → short name in the model
SERIES = {
    "temperature_min_c": "tmin",
    "temperature_mean_c": "tmean",
    "temperature_max_c": "tmax",
    "tn_mf_c": "tn",
    "tx_mf_c": "tx",
    "rain_sum_mm": "rain",
    "humidity_mean_pct": "humidity",
    "pressure_mean_hpa": "pressure",
    "coverage_temperature": "coverage",
    "heat_island_index_c": "uhi",
}
COVERAGE_DECIMALS = 4
STATION_FIELDS = ("station", "name", "commune", "latitude", "longitude", "lcz")


def dashboard_window(daily: pd.DataFrame, span_days: int | None, today: dt.date) -> tuple[dt.date, dt.date]:
    """The days the dashboard covers: `span_days` ending on the last day with observations
    (the whole history when `span_days` is None), `today` alone when there is no data at all."""
    observed = daily.loc[daily["slots_reported"] > 0, "date"]
    if observed.empty:
        return today, today
    last = observed.max().date()
    first = observed.min().date()
    if span_days is not None:
        first = max(first, last - dt.timedelta(days=span_days - 1))
    return first, last


def build_model(
    daily: pd.DataFrame,
    clean: pd.DataFrame,
    stations: pd.DataFrame,
    *,
    window: tuple[dt.date, dt.date],
    generated_at: dt.datetime,
    min_coverage: float,
) -> dict:
    """The model of the page, for `stations` (in display order) over the `window` days.

    `daily` holds the stations' daily rows (at least the window's), `clean` their slots of the
    window (station, observed_at, local_time, wind_speed_kmh, wind_dir_deg), `stations` one row
    per station with STATION_FIELDS (unknown positions as NaN).
    """
    first, last = window
    axis = pd.date_range(first, last, freq="D")
    keys = stations["station"].tolist()
    daily = daily[daily["station"].isin(keys) & daily["date"].between(axis[0], axis[-1])].copy()
    index = network_daily(daily, stations).set_index(["station", "date"])["heat_island_index_c"]
    daily["heat_island_index_c"] = index.reindex(pd.MultiIndex.from_frame(daily[["station", "date"]])).to_numpy()
    daily["coverage_temperature"] = daily["coverage_temperature"].round(COVERAGE_DECIMALS)
    series = {
        key: {
            short: _json_floats(frame.reindex(axis)[column])
            for column, short in SERIES.items()
        }
        for key, frame in _by_station(daily.set_index("date"), keys)
    }
    wind = _wind_by_day(wind_cells(clean[clean["station"].isin(keys)]), keys, axis)
    latest = last_observations(clean)
    default_start = max(axis[0], axis[-1] - pd.Timedelta(days=DEFAULT_PERIOD_DAYS - 1))
    return {
        "generated_at": generated_at.astimezone(PARIS).isoformat(timespec="seconds"),
        "first_day": axis[0].date().isoformat(),
        "days": len(axis),
        "default_period": [default_start.date().isoformat(), axis[-1].date().isoformat()],
        "min_coverage": min_coverage,
        "stations": [_station(row, latest.get(row.station), generated_at) for row in stations.itertuples()],
        "series": series,
        "wind": wind,
        "wind_rose": {"sectors": list(SECTORS), "classes": list(SPEED_CLASSES), "cells": WIND_CELLS},
        "outline": outline(),
    }


def station_table(stations: list[tuple[str, str]], catalogue: pd.DataFrame | None) -> pd.DataFrame:
    """(key, name) of the dashboard's stations, in order, with their position, commune and LCZ
    from the `stations` table (unknown without it)."""
    frame = pd.DataFrame(stations, columns=["station", "name"])
    if catalogue is None:
        catalogue = pd.DataFrame(columns=list(STATION_FIELDS))
    located = catalogue[list(STATION_FIELDS)].drop(columns="name").drop_duplicates("station")
    frame = frame.merge(located, on="station", how="left")
    for column in ("latitude", "longitude"):
        frame[column] = pd.to_numeric(frame[column], errors="coerce").astype("float64")
    return frame[list(STATION_FIELDS)]


def model_json(model: dict) -> str:
    return json.dumps(model, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def outline() -> dict:
    """The map's background shipped with the package: Toulouse Métropole and the Garonne."""
    return json.loads(resources.files(__package__).joinpath("toulouse.json").read_text(encoding="utf-8"))


def _by_station(frame: pd.DataFrame, keys: list[str]):
    groups = dict(tuple(frame.groupby("station")))
    empty = frame.iloc[0:0]
    return [(key, groups.get(key, empty)) for key in keys]


def _wind_by_day(cells: pd.DataFrame, keys: list[str], axis: pd.DatetimeIndex) -> dict[str, list]:
    """Per station, one entry per day: null without wind data, else the WIND_CELLS slot counts."""
    cells = cells[cells["date"].between(axis[0], axis[-1])]
    day = ((cells["date"] - axis[0]) // pd.Timedelta(days=1)).to_numpy()
    station = pd.Categorical(cells["station"], categories=keys).codes
    dense = np.zeros((len(keys), len(axis), WIND_CELLS), dtype=np.int64)
    np.add.at(dense, (station, day, cells["cell"].to_numpy()), cells["slots"].to_numpy())
    observed = dense.sum(axis=2) > 0
    return {
        key: [dense[i, d].tolist() if observed[i, d] else None for d in range(len(axis))]
        for i, key in enumerate(keys)
    }


def _station(row, last: pd.Timestamp | None, generated_at: dt.datetime) -> dict:
    return {
        "key": row.station,
        "name": row.name,
        "commune": None if pd.isna(row.commune) else str(row.commune),
        "lat": _json_float(row.latitude),
        "lon": _json_float(row.longitude),
        "lcz": None if pd.isna(row.lcz) else str(row.lcz),
        "lcz_label": lcz_label(None if pd.isna(row.lcz) else row.lcz),
        "last_observation": None if last is None else last.tz_convert(PARIS).isoformat(timespec="minutes"),
        "freshness": freshness(last, generated_at),
    }


def _json_float(value) -> float | None:
    return None if value is None or pd.isna(value) else float(value)


def _json_floats(values: pd.Series) -> list[float | None]:
    return [None if math.isnan(v) else v for v in values.to_numpy(dtype="float64").tolist()]
