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
    PARIS,
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

    expected = pd.Series([slots_expected(day.date()) for day in requested], index=requested)
    local_day = clean["observed_at"].dt.tz_convert(PARIS).dt.tz_localize(None).dt.normalize()
    on_requested_days = local_day.isin(requested)
    rows, day = clean[on_requested_days], local_day[on_requested_days]
    by_day = rows.groupby(day)

    daily = pd.DataFrame(index=requested)
    daily["station"] = station
    daily["date"] = requested
    daily["slots_expected"] = expected
    daily["slots_reported"] = by_day.size().reindex(requested, fill_value=0)

    coverage = {
        variable: by_day[column].count().reindex(requested, fill_value=0) / expected
        for variable, column in COVERAGE_COLUMNS.items()
    }
    complete = {variable: share >= settings.min_coverage for variable, share in coverage.items()}

    for name, (column, aggregation, variable) in _DAY_STATISTICS.items():
        statistic = by_day[column].agg(aggregation).reindex(requested)
        daily[name] = statistic.where(complete[variable])
    wind_direction = _mean_wind_direction(rows, day).reindex(requested)
    daily["wind_dir_mean_deg"] = wind_direction.where(complete["wind"])

    for variable, share in coverage.items():
        daily[f"coverage_{variable}"] = share

    for name, (column, aggregation, shift) in _MF_WINDOWS.items():
        daily[name] = _mf_statistic(clean, column, aggregation, shift, settings).reindex(requested)

    for name, decimals in _ROUNDING.items():
        daily[name] = round_half_away_from_zero(daily[name], decimals)

    return daily[list(DAILY_COLUMNS)].reset_index(drop=True).astype(pandas_dtypes(DAILY_COLUMNS))


def _mean_wind_direction(rows: pd.DataFrame, day: pd.Series) -> pd.Series:
    """Direction of the mean (speed, direction) vector over non-calm slots, in [0, 360)."""
    speed, direction = rows["wind_speed_kmh"], rows["wind_dir_deg"]
    blowing = (speed > 0) & direction.notna()
    radians = np.deg2rad(direction[blowing])
    components = pd.DataFrame(
        {
            "east": speed[blowing] * np.sin(radians),
            "north": speed[blowing] * np.cos(radians),
            "speed": speed[blowing],
        }
    )
    sums = components.groupby(day[blowing]).sum()
    degrees = (
        round_half_away_from_zero(np.rad2deg(np.arctan2(sums["east"], sums["north"])), 2) % 360.0
    )
    resultant = np.hypot(sums["east"], sums["north"])
    return degrees.where(resultant > _CALM_RESULTANT * sums["speed"])


def _mf_statistic(
    clean: pd.DataFrame,
    column: str,
    aggregation: str,
    shift: pd.Timedelta,
    settings: ContractSettings,
) -> pd.Series:
    """One Météo-France statistic per UTC-shifted day, null below `mf_min_coverage` of 96 slots."""
    window_day = (clean["observed_at"] + shift).dt.floor("D").dt.tz_localize(None)
    grouped = clean[column].groupby(window_day).agg([aggregation, "count"])
    return grouped[aggregation].where(grouped["count"] >= settings.mf_min_coverage * UTC_DAY_SLOTS)
