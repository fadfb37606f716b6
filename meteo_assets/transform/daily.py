"""Clean slots → the daily table: one row per station and Paris civil day, with the contract's
completeness rule and the Météo-France climatological windows.

Days are grouped by a day-key column (Paris civil day for the daily statistics, shifted UTC days
for the Météo-France windows), so the cost is a few groupbys whatever the number of days.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

import numpy as np
import pandas as pd

from .contract import (
    DAILY_COLUMNS,
    paris_wall_time,
    UTC_DAY_SLOTS,
    ContractSettings,
    empty_daily_frame,
    pandas_dtypes,
    round_half_away_from_zero,
    slots_expected,
)

# coverage_<variable> → the clean column it counts
COVERAGE_COLUMNS = {
    "temperature": "temperature_c",
    "humidity": "humidity_pct",
    "pressure": "pressure_hpa",
    "rain": "rain_mm",
    "wind": "wind_speed_kmh",
}

# statistic → (clean column, aggregation, variable whose coverage decides completeness)
_DAY_STATISTICS = {
    "temperature_mean_c": ("temperature_c", "mean", "temperature"),
    "temperature_min_c": ("temperature_c", "min", "temperature"),
    "temperature_max_c": ("temperature_c", "max", "temperature"),
    "humidity_mean_pct": ("humidity_pct", "mean", "humidity"),
    "pressure_mean_hpa": ("pressure_hpa", "mean", "pressure"),
    "rain_sum_mm": ("rain_mm", "sum", "rain"),
    "rain_intensity_max_mm": ("rain_intensity_max_mm", "max", "rain"),
    "wind_speed_mean_kmh": ("wind_speed_kmh", "mean", "wind"),
    "gust_max_kmh": ("gust_speed_kmh", "max", "wind"),
}

_ROUNDING = {
    "temperature_mean_c": 2,
    "humidity_mean_pct": 2,
    "pressure_mean_hpa": 2,
    "wind_speed_mean_kmh": 2,
    "rain_sum_mm": 1,
    "rr_mf_mm": 1,
}

# Météo-France windows: a slot at UTC instant t belongs to day floor(t + shift)
_MF_WINDOWS = {
    "tn_mf_c": ("temperature_c", "min", pd.Timedelta(hours=6)),  # [D-1 18:00, D 18:00) UTC
    "tx_mf_c": ("temperature_c", "max", pd.Timedelta(hours=-6)),  # [D 06:00, D+1 06:00) UTC
    "rr_mf_mm": ("rain_mm", "sum", pd.Timedelta(hours=-6)),  # [D 06:00, D+1 06:00) UTC
}

# below this fraction of the summed speeds, opposite winds cancel out: no meaningful direction
_CALM_RESULTANT = 1e-9


def daily_summary(
    clean: pd.DataFrame,
    *,
    station: str,
    days: Sequence[date],
    settings: ContractSettings = ContractSettings(),
) -> pd.DataFrame:
    """Daily rows for `days` (sorted, deduplicated), even days without any slot.

    `clean` holds one station's clean rows and should include the neighbouring days' rows too:
    the Météo-France windows reach into D-1 and D+1 and are null without them.
    """
    requested = pd.DatetimeIndex(sorted({pd.Timestamp(day) for day in days}))
    if requested.empty:
        return empty_daily_frame()

    expected = np.array([slots_expected(day.date()) for day in requested], dtype=float)
    local_day = paris_wall_time(clean["observed_at"]).dt.normalize()
    by_day = _DayGroups(local_day, requested)

    columns: dict[str, object] = {
        "station": station,
        "date": requested,
        "slots_expected": expected,
        "slots_reported": by_day.sizes,
    }
    coverage = {variable: by_day.count(clean[column]) / expected for variable, column in COVERAGE_COLUMNS.items()}
    complete = {variable: share >= settings.min_coverage for variable, share in coverage.items()}
    for name, (column, aggregation, variable) in _DAY_STATISTICS.items():
        columns[name] = np.where(complete[variable], by_day.aggregate(clean[column], aggregation), np.nan)
    columns["wind_dir_mean_deg"] = np.where(complete["wind"], _mean_wind_direction(clean, by_day), np.nan)
    for variable, share in coverage.items():
        columns[f"coverage_{variable}"] = share

    for name, (column, aggregation, shift) in _MF_WINDOWS.items():
        window_day = (clean["observed_at"] + shift).dt.floor("D").dt.tz_localize(None)
        in_window = _DayGroups(window_day, requested)
        enough = in_window.count(clean[column]) >= settings.mf_min_coverage * UTC_DAY_SLOTS
        columns[name] = np.where(enough, in_window.aggregate(clean[column], aggregation), np.nan)

    for name, decimals in _ROUNDING.items():
        columns[name] = round_half_away_from_zero(columns[name], decimals)
    return pd.DataFrame(columns)[list(DAILY_COLUMNS)].astype(pandas_dtypes(DAILY_COLUMNS))


class _DayGroups:
    """Rows grouped by day with numpy: a pandas groupby per statistic costs ~1 ms of overhead
    whatever the rows, which made a one-day summary as slow as a month's (30 ms)."""

    def __init__(self, row_days: pd.Series, days: pd.DatetimeIndex):
        codes = days.get_indexer(pd.DatetimeIndex(row_days))  # -1: a row outside the requested days
        self.order = np.argsort(codes, kind="stable")
        self.order = self.order[codes[self.order] >= 0]
        self.sizes = np.bincount(codes[codes >= 0], minlength=len(days)).astype(float)
        starts = np.concatenate([[0], np.cumsum(self.sizes[:-1])]).astype(np.int64)
        self.present = self.sizes > 0
        self.starts = starts[self.present]  # consecutive segments of `order`, one per day with rows

    def _per_day(self, values: np.ndarray, ufunc: np.ufunc, empty: float) -> np.ndarray:
        out = np.full(len(self.sizes), empty)
        if self.starts.size:
            out[self.present] = ufunc.reduceat(values, self.starts)
        return out

    def count(self, column: pd.Series) -> np.ndarray:
        return self._per_day(column.notna().to_numpy()[self.order].astype(float), np.add, 0.0)

    def sum(self, values: np.ndarray) -> np.ndarray:
        """The sum of each day's non-null values (0 for a day without any)."""
        return self._per_day(np.nan_to_num(values[self.order], nan=0.0), np.add, 0.0)

    def aggregate(self, column: pd.Series, how: str) -> np.ndarray:
        """min/max/sum/mean of the non-null values of each day; null for a day without any (sum: 0)."""
        values = column.to_numpy(dtype=float, na_value=np.nan)
        if how in ("min", "max"):  # fmin/fmax skip nulls, and give null when all are
            return self._per_day(values[self.order], np.fmin if how == "min" else np.fmax, np.nan)
        total = self.sum(values)
        if how == "sum":
            return total
        counts = self.count(column)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(counts > 0, total / counts, np.nan)


def _mean_wind_direction(clean: pd.DataFrame, by_day: _DayGroups) -> np.ndarray:
    """Direction of the mean (speed, direction) vector over non-calm slots, in [0, 360)."""
    speed = clean["wind_speed_kmh"].to_numpy(dtype=float, na_value=np.nan)
    direction = clean["wind_dir_deg"].to_numpy(dtype=float, na_value=np.nan)
    blowing = (speed > 0) & ~np.isnan(direction)
    radians = np.deg2rad(direction)
    weight = np.where(blowing, speed, 0.0)
    east = by_day.sum(np.where(blowing, weight * np.sin(radians), 0.0))
    north = by_day.sum(np.where(blowing, weight * np.cos(radians), 0.0))
    total = by_day.sum(weight)
    degrees = round_half_away_from_zero(np.rad2deg(np.arctan2(east, north)), 2) % 360.0
    return np.where(np.hypot(east, north) > _CALM_RESULTANT * total, degrees, np.nan)
