"""The data contract in code: thresholds, table columns and the Paris civil day.

Everything the clean and daily tables promise their users (see the project's data contract) is
named here once, so that the parser, the cleaner, the daily summary and the storage layer agree.

Frame dtypes used throughout the transform layer:

- timestamps (`observed_at`) are ``datetime64[ns, UTC]``;
- `local_time` is ``datetime64[ns]`` naive, the Europe/Paris wall clock of `observed_at`;
- `date` (daily table) is ``datetime64[ns]`` at midnight: pandas has no date dtype, and DuckDB
  casts such values to DATE without loss;
- measurements and statistics are ``float64`` with NaN for null;
- `slots_expected` / `slots_reported` are ``int64`` (never null: one daily row per requested day);
- `station` and `qc_flags` are ``object`` columns of ``str``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from datetime import date, datetime, time, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

PARIS = ZoneInfo("Europe/Paris")
SLOT = timedelta(minutes=15)
UTC_DAY_SLOTS = 96

Range = tuple[float, float]


def paris_wall_time(instants: pd.Series) -> pd.Series:
    """Paris wall-clock times (naive) of tz-aware instants.

    Named by its string, the zone is pandas' own (pytz, vectorised): through a `ZoneInfo` pandas
    asks each value's offset in Python, ~15 ms a station-year instead of ~5 (a full history is
    ~10 s of clean and daily steps). Both read the IANA rules; a test compares them 2019 → 2027.
    """
    return instants.dt.tz_convert(PARIS.key).dt.tz_localize(None)


@dataclass(frozen=True)
class ContractSettings:
    """Thresholds of the contract, overridable per station from `datasets.toml`.

    Flat plain values on purpose: a TOML `[defaults]` table maps onto it field by field
    (see `from_mapping`).
    """

    min_coverage: float = 0.75
    mf_min_coverage: float = 0.75
    future_tolerance: timedelta = timedelta(hours=1)
    temperature_c: Range = (-30.0, 50.0)
    humidity_pct: Range = (1.0, 100.0)
    pressure_hpa: Range = (870.0, 1085.0)
    wind_kmh: Range = (0.0, 250.0)
    rain_mm: Range = (0.0, 50.0)
    direction_deg: Range = (0.0, 360.0)
    all_zero_temperature: float = -50.0
    missing_pressure_pa: int = 90000
    # quality checks (WARN) on the clean and daily tables
    max_rejected_share: float = 0.2  # of a day's rows
    max_temperature_step_c: float = 8.0  # between observations at most an hour apart
    flat_temperature_hours: float = 6.0
    flat_humidity_hours: float = 12.0
    spike_temperature_c: float = 10.0  # daily mean outside the recent days' range by more than this
    spike_window_days: int = 7
    # freshness and service
    fresh_within_hours: float = 1.0  # today's partition updated at least this recently
    final_by_hour: int = 6  # yesterday's partition final (materialised after midnight) by this Paris hour
    out_of_service_hours: float = 3.0  # newest portal observation older than this: not waited for

    def __post_init__(self) -> None:
        for name in ("min_coverage", "mf_min_coverage", "max_rejected_share"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be within [0, 1], got {getattr(self, name)}")
        for name in ("max_temperature_step_c", "flat_temperature_hours", "flat_humidity_hours",
                     "spike_temperature_c", "fresh_within_hours", "out_of_service_hours"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if not (isinstance(self.spike_window_days, int) and self.spike_window_days >= 1):
            raise ValueError(f"spike_window_days must be a whole number of days ≥ 1, got {self.spike_window_days}")
        if not (isinstance(self.final_by_hour, int) and 0 <= self.final_by_hour <= 23):
            raise ValueError(f"final_by_hour must be a whole hour within [0, 23], got {self.final_by_hour}")
        for name in self.range_names():
            low, high = getattr(self, name)
            if low > high:
                raise ValueError(f"{name} range is empty: [{low}, {high}]")

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    @classmethod
    def range_names(cls) -> tuple[str, ...]:
        return (
            "temperature_c",
            "humidity_pct",
            "pressure_hpa",
            "wind_kmh",
            "rain_mm",
            "direction_deg",
        )

    @classmethod
    def from_mapping(
        cls, values: Mapping[str, Any], base: ContractSettings | None = None
    ) -> ContractSettings:
        """Build settings from a TOML table, on top of `base` (the defaults, or the
        `[defaults]` table when applying a station's overrides).

        TOML has no tuple nor duration: ranges come as 2-element arrays, `future_tolerance` as a
        timedelta or a number of hours. Unknown keys are an error, so that a typo in
        `datasets.toml` does not silently keep a default.
        """
        unknown = sorted(set(values) - set(cls.field_names()))
        if unknown:
            raise ValueError(f"unknown contract settings: {', '.join(unknown)}")
        converted: dict[str, Any] = {}
        for name, value in values.items():
            if name in cls.range_names():
                if not (isinstance(value, (list, tuple)) and len(value) == 2 and all(map(_is_number, value))):
                    raise ValueError(f"{name} must be [low, high], got {value!r}")
                value = (float(value[0]), float(value[1]))
            elif name == "future_tolerance" and not isinstance(value, timedelta):
                if not _is_number(value):
                    raise ValueError(f"{name} must be a number of hours, got {value!r}")
                value = timedelta(hours=float(value))
            elif not _is_number(value):
                raise ValueError(f"{name} must be a number, got {value!r}")
            converted[name] = value
        return replace(base or cls(), **converted)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


CLEAN_COLUMNS: dict[str, str] = {
    "station": "VARCHAR",
    "observed_at": "TIMESTAMPTZ",
    "local_time": "TIMESTAMP",
    "temperature_c": "DOUBLE",
    "humidity_pct": "DOUBLE",
    "pressure_hpa": "DOUBLE",
    "rain_mm": "DOUBLE",
    "rain_intensity_max_mm": "DOUBLE",
    "wind_speed_kmh": "DOUBLE",
    "wind_dir_deg": "DOUBLE",
    "gust_speed_kmh": "DOUBLE",
    "gust_dir_deg": "DOUBLE",
    "qc_flags": "VARCHAR",
}

MEASUREMENT_COLUMNS: tuple[str, ...] = tuple(
    name for name, sql_type in CLEAN_COLUMNS.items() if sql_type == "DOUBLE"
)

DAILY_COLUMNS: dict[str, str] = {
    "station": "VARCHAR",
    "date": "DATE",
    "slots_expected": "INTEGER",
    "slots_reported": "INTEGER",
    "temperature_mean_c": "DOUBLE",
    "temperature_min_c": "DOUBLE",
    "temperature_max_c": "DOUBLE",
    "humidity_mean_pct": "DOUBLE",
    "pressure_mean_hpa": "DOUBLE",
    "rain_sum_mm": "DOUBLE",
    "rain_intensity_max_mm": "DOUBLE",
    "wind_speed_mean_kmh": "DOUBLE",
    "gust_max_kmh": "DOUBLE",
    "wind_dir_mean_deg": "DOUBLE",
    "coverage_temperature": "DOUBLE",
    "coverage_humidity": "DOUBLE",
    "coverage_pressure": "DOUBLE",
    "coverage_rain": "DOUBLE",
    "coverage_wind": "DOUBLE",
    "tn_mf_c": "DOUBLE",
    "tx_mf_c": "DOUBLE",
    "rr_mf_mm": "DOUBLE",
}

_PANDAS_DTYPES = {
    "VARCHAR": "object",
    "TIMESTAMPTZ": "datetime64[ns, UTC]",
    "TIMESTAMP": "datetime64[ns]",
    "DATE": "datetime64[ns]",
    "DOUBLE": "float64",
    "INTEGER": "int64",
}


def pandas_dtypes(columns: Mapping[str, str]) -> dict[str, str]:
    """The pandas dtype the transform layer uses for each column of a table."""
    return {name: _PANDAS_DTYPES[sql_type] for name, sql_type in columns.items()}


def _empty_frame(columns: Mapping[str, str]) -> pd.DataFrame:
    return pd.DataFrame(
        {name: pd.Series(dtype=dtype) for name, dtype in pandas_dtypes(columns).items()}
    )


def empty_clean_frame() -> pd.DataFrame:
    return _empty_frame(CLEAN_COLUMNS)


def empty_daily_frame() -> pd.DataFrame:
    return _empty_frame(DAILY_COLUMNS)


def round_half_away_from_zero(values: pd.Series, decimals: int) -> pd.Series:
    """Round as people and DuckDB's ROUND do (13.475 → 13.48, -2.25 → -2.3), deciding ties on
    the decimal value: float noise (13.474999999999998 for 13.475) must not flip them."""
    scale = 10.0**decimals
    scaled = (values * scale).round(6)
    return np.sign(scaled) * np.floor(np.abs(scaled) + 0.5) / scale + 0.0


def day_window_utc(day: date) -> tuple[datetime, datetime]:
    """UTC bounds [start, end) of the Paris civil day `day` (the date partition's window)."""
    start = datetime.combine(day, time(0), tzinfo=PARIS)
    end = datetime.combine(day + timedelta(days=1), time(0), tzinfo=PARIS)
    return start.astimezone(timezone.utc), end.astimezone(timezone.utc)


def slots_expected(day: date) -> int:
    """15-minute slots of the Paris civil day: 96, 92 on spring-forward, 100 on fall-back."""
    start, end = day_window_utc(day)
    return (end - start) // SLOT
