"""Parsed observations → the clean table of the data contract (rules 1–8), vectorised.

Order of operations, and why:

1. `no_timestamp` first: without a time a row can be attributed to no partition.
2. Then the partition `window` (if given): a row belongs to the partition its `observed_at`
   falls in, so rows of other partitions are dropped and only counted (`outside_window`), and all
   the other counts describe this partition's rows only. Hence
   ``rows_in == sum(rejected) + outside_window + len(frame)``. A corrupted row dated years ahead
   therefore counts as `future` only in the partition it falls in (in practice: none, since
   partitions end in the past); with no window, it always counts as `future`.
3. `other_sensor` (missing id included), `sub_station`, `future`, in contract order; a row is
   counted under the first rule that rejects it.
4. Units (rule 7) are applied before the range checks (rule 6) because the contract states the
   ranges in clean units (hPa, rain rounded to 0.1 mm): a 50 mm slot with float noise
   (50.000000000000004) is 50 mm, not out of range.
5. Rules 4–6 null values but keep the row; each touched row says why in `qc_flags`.
6. Duplicates on `observed_at` last, so the kept row is the most complete one after QC.

`flagged` counts rows of the returned frame (so it matches a query on `qc_flags`), not the
duplicates that were dropped.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pandas as pd

from .contract import (
    CLEAN_COLUMNS,
    MEASUREMENT_COLUMNS,
    paris_wall_time,
    ContractSettings,
    pandas_dtypes,
    round_half_away_from_zero,
)

REJECTION_RULES = ("no_timestamp", "other_sensor", "sub_station", "future", "duplicate")
FLAG_RULES = ("all_zero_message", "pressure_missing", "out_of_range")

SUB_STATION_TYPE = "sous station"
ALL_ZERO_HUMIDITY = 0.0

# clean column → settings field holding its valid range (rule 6)
_RANGE_OF_COLUMN = {
    "temperature_c": "temperature_c",
    "humidity_pct": "humidity_pct",
    "pressure_hpa": "pressure_hpa",
    "rain_mm": "rain_mm",
    "rain_intensity_max_mm": "rain_mm",
    "wind_speed_kmh": "wind_kmh",
    "wind_dir_deg": "direction_deg",
    "gust_speed_kmh": "wind_kmh",
    "gust_dir_deg": "direction_deg",
}


@dataclass
class CleanResult:
    frame: pd.DataFrame
    rejected: dict[str, int]
    flagged: dict[str, int]
    rows_in: int
    outside_window: int = 0


def _utc(moment: datetime, name: str) -> pd.Timestamp:
    stamp = pd.Timestamp(moment)
    if stamp.tzinfo is None:
        raise ValueError(f"{name} must be timezone-aware, got {moment!r}")
    return stamp.tz_convert("UTC")


def _measurements_in_clean_units(rows: pd.DataFrame) -> pd.DataFrame:
    """Rule 7: pressure Pa → hPa; rain rounded to 0.1 mm (kills 2.4000000000000004)."""
    return pd.DataFrame(
        {
            "temperature_c": rows["temperature"],
            "humidity_pct": rows["humidity"],
            "pressure_hpa": rows["pressure_pa"] / 100.0,
            "rain_mm": round_half_away_from_zero(rows["rain"], 1),
            "rain_intensity_max_mm": round_half_away_from_zero(rows["rain_intensity_max"], 1),
            "wind_speed_kmh": rows["wind_speed"],
            "wind_dir_deg": rows["wind_dir"],
            "gust_speed_kmh": rows["gust_speed"],
            "gust_dir_deg": rows["gust_dir"],
        },
        index=rows.index,
    )


def clean_observations(
    parsed: pd.DataFrame,
    *,
    station: str,
    sensor_id: int,
    now: datetime,
    settings: ContractSettings = ContractSettings(),
    window: tuple[datetime, datetime] | None = None,
) -> CleanResult:
    """Apply the contract's rules 1–8 to one station's parsed rows (see module docstring)."""
    latest_accepted = _utc(now, "now") + settings.future_tolerance
    rows = parsed.reset_index(drop=True)
    rows_in = len(rows)
    rejected = dict.fromkeys(REJECTION_RULES, 0)

    def reject(rule: str, mask: pd.Series) -> pd.DataFrame:
        rejected[rule] = int(mask.sum())
        return rows[~mask]

    rows = reject("no_timestamp", rows["observed_at"].isna())

    outside_window = 0
    if window is not None:
        start, end = (_utc(bound, "window bound") for bound in window)
        in_window = (rows["observed_at"] >= start) & (rows["observed_at"] < end)
        outside_window = int((~in_window).sum())
        rows = rows[in_window]

    rows = reject("other_sensor", ~rows["sensor_id"].eq(sensor_id).fillna(False).astype(bool))
    rows = reject("sub_station", _is_sub_station(rows["station_type"]))
    rows = reject("future", rows["observed_at"] > latest_accepted)

    values, flags = _quality_control(rows, settings)
    kept = _most_complete_row_per_slot(rows, values)
    rejected["duplicate"] = len(rows) - len(kept)

    flags = flags.loc[kept]
    observed_at = rows.loc[kept, "observed_at"]
    frame = pd.DataFrame(
        {
            "station": station,
            "observed_at": observed_at,
            "local_time": paris_wall_time(observed_at),
            **{column: values.loc[kept, column] for column in MEASUREMENT_COLUMNS},
            "qc_flags": _joined_flag_names(flags),
        },
        index=kept,
    )
    frame = frame.reset_index(drop=True).astype(pandas_dtypes(CLEAN_COLUMNS))

    out_of_range_columns = [name for name in flags.columns if name.startswith("out_of_range:")]
    flagged = {
        "all_zero_message": int(flags["all_zero_message"].sum()),
        "pressure_missing": int(flags["pressure_missing"].sum()),
        "out_of_range": int(flags[out_of_range_columns].any(axis=1).sum()),
    }
    return CleanResult(
        frame=frame,
        rejected=rejected,
        flagged=flagged,
        rows_in=rows_in,
        outside_window=outside_window,
    )


def _quality_control(
    rows: pd.DataFrame, settings: ContractSettings
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Rules 7 then 4–6: measurements in clean units with bad values nulled, and one boolean
    column per flag name saying which rows each rule touched."""
    values = _measurements_in_clean_units(rows)
    flags = pd.DataFrame(index=rows.index)

    flags["all_zero_message"] = (
        (rows["temperature"] == settings.all_zero_temperature)
        & (rows["pressure_pa"] == settings.missing_pressure_pa)
        & (rows["humidity"] == ALL_ZERO_HUMIDITY)
    )
    values.loc[flags["all_zero_message"], :] = np.nan

    flags["pressure_missing"] = values["pressure_hpa"].notna() & (
        rows["pressure_pa"] == settings.missing_pressure_pa
    )
    values.loc[flags["pressure_missing"], "pressure_hpa"] = np.nan

    for column, range_name in _RANGE_OF_COLUMN.items():
        low, high = getattr(settings, range_name)
        out_of_range = values[column].notna() & ~values[column].between(low, high)
        flags[f"out_of_range:{column}"] = out_of_range
        values.loc[out_of_range, column] = np.nan
    return values, flags


def _is_sub_station(station_type: pd.Series) -> np.ndarray:
    """Rule 3, deciding each distinct text once (an export holds one or two distinct types)."""
    codes, distinct = pd.factorize(station_type, use_na_sentinel=False)
    is_sub = np.array([str(text).strip().casefold() == SUB_STATION_TYPE for text in distinct], dtype=bool)
    return is_sub[codes]


def _most_complete_row_per_slot(rows: pd.DataFrame, values: pd.DataFrame) -> pd.Index:
    """Rule 8: index of the row kept per `observed_at`, in time order — most non-null
    measurements after QC, then greatest `data` string. Only repeated slots are ranked."""
    observed_at = rows["observed_at"]
    repeated = observed_at.duplicated(keep=False).to_numpy()
    kept = observed_at.index[~repeated]
    if repeated.any():
        ranked = pd.DataFrame(
            {
                "observed_at": observed_at[repeated],
                "complete": values[repeated].notna().sum(axis=1),
                "data": rows["data"][repeated],
            }
        ).sort_values(["observed_at", "complete", "data"], ascending=[True, False, False])
        kept = kept.append(ranked.index[~ranked["observed_at"].duplicated(keep="first")])
    return observed_at.loc[kept].sort_values().index


def _joined_flag_names(flags: pd.DataFrame) -> pd.Series:
    """'name1,name2' of the True columns of each row, '' when none (only flagged rows are joined)."""
    joined = pd.Series("", index=flags.index, dtype=object)
    marked = flags.to_numpy(dtype=bool)
    flagged = marked.any(axis=1)
    if flagged.any():
        names = np.array(flags.columns, dtype=object)
        joined[flagged] = [",".join(names[row]) for row in marked[flagged]]
    return joined
