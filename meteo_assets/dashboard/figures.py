"""The figures' data, computed once per station and Paris day (pandas only, no Dagster, no plotting).

The page aggregates these per-day values over the period the reader picks, so every number it shows
is a sum, mean or count of the rows below, and each can be checked against the daily tables.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

# 16 compass sectors of 22.5°, centred on their direction (N covers [348.75°, 11.25°))
SECTORS = ("N", "NNE", "NE", "ENE", "E", "ESE", "SE", "SSE", "S", "SSW", "SW", "WSW", "W", "WNW", "NW", "NNW")
SECTOR_WIDTH = 360.0 / len(SECTORS)
# upper bounds (km/h, exclusive) of the wind-rose speed classes but the last; calm (0 km/h) comes apart
SPEED_BOUNDS = (5.0, 15.0)
SPEED_CLASSES = ("< 5 km/h", "5–15 km/h", "≥ 15 km/h")
# cell 0 is calm; cell 1 + class × 16 + sector holds the slots of that speed class and sector
WIND_CELLS = 1 + len(SPEED_CLASSES) * len(SECTORS)

# Local climate zones (Stewart & Oke); the catalogue numbers the land-cover types A–G as 11–17
LCZ_NAMES = {
    "1": "LCZ 1 compact high-rise", "2": "LCZ 2 compact midrise", "3": "LCZ 3 compact low-rise",
    "4": "LCZ 4 open high-rise", "5": "LCZ 5 open midrise", "6": "LCZ 6 open low-rise",
    "7": "LCZ 7 lightweight low-rise", "8": "LCZ 8 large low-rise", "9": "LCZ 9 sparsely built",
    "10": "LCZ 10 heavy industry", "11": "LCZ A dense trees", "12": "LCZ B scattered trees",
    "13": "LCZ C bush, scrub", "14": "LCZ D low plants", "15": "LCZ E bare rock or paved",
    "16": "LCZ F bare soil or sand", "17": "LCZ G water",
}

# freshness of a station: age of its last observation when the dashboard was generated
FRESH_WITHIN = dt.timedelta(hours=2)
LATE_WITHIN = dt.timedelta(days=2)


def lcz_label(lcz: object) -> str:
    """`"6"` → `"LCZ 6 open low-rise"`; an unknown or missing zone is said so."""
    if lcz is None or lcz is pd.NA or (isinstance(lcz, float) and np.isnan(lcz)):
        return "LCZ unknown"
    text = str(lcz).strip().removesuffix(".0")
    return LCZ_NAMES.get(text, f"LCZ {text}")


def wind_cells(clean: pd.DataFrame) -> pd.DataFrame:
    """Slots per station, Paris day and wind-rose cell (see WIND_CELLS), zero counts left out.

    A slot counts when its speed is known and it is calm (0 km/h) or has a direction, so the
    cells of a day add up to its slots with a usable wind observation.
    """
    speed, direction = clean["wind_speed_kmh"], clean["wind_dir_deg"]
    usable = speed.notna() & (speed.eq(0) | direction.notna())
    speed, direction = speed[usable].to_numpy(), direction[usable].to_numpy()
    sector = np.floor(((np.nan_to_num(direction) + SECTOR_WIDTH / 2) % 360.0) / SECTOR_WIDTH).astype(np.int64)
    speed_class = np.digitize(speed, SPEED_BOUNDS)
    cell = np.where(speed == 0, 0, 1 + speed_class * len(SECTORS) + sector)
    rows = clean.loc[usable]
    frame = pd.DataFrame({"station": rows["station"].to_numpy(), "date": rows["local_time"].dt.normalize().to_numpy(),
                          "cell": cell})
    counts = frame.groupby(["station", "date", "cell"]).size().rename("slots").reset_index()
    return counts.astype({"cell": "int64", "slots": "int64"})


def freshness(last_observation: pd.Timestamp | None, now: dt.datetime) -> str:
    """`fresh`, `late` or `stale` by the age of the last observation; `none` without one."""
    if last_observation is None or pd.isna(last_observation):
        return "none"
    age = pd.Timestamp(now) - pd.Timestamp(last_observation)
    return "fresh" if age <= FRESH_WITHIN else "late" if age <= LATE_WITHIN else "stale"


def last_observations(clean: pd.DataFrame) -> pd.Series:
    """The latest `observed_at` (UTC) of each station in `clean`."""
    return clean.groupby("station")["observed_at"].max()
