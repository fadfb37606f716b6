"""The network's daily table: every station's daily row for a day, its local climate zone, and the
urban heat-island index (the station's mean temperature minus the network median of that day)."""

from __future__ import annotations

import pandas as pd

from .contract import DAILY_COLUMNS, pandas_dtypes, round_half_away_from_zero

NETWORK_DAILY_COLUMNS: dict[str, str] = {
    "station": "VARCHAR",
    "date": "DATE",
    "lcz": "VARCHAR",
    **{name: sql_type for name, sql_type in DAILY_COLUMNS.items() if name not in ("station", "date")},
    "network_median_temperature_c": "DOUBLE",
    "heat_island_index_c": "DOUBLE",
}


def network_daily(daily: pd.DataFrame, stations: pd.DataFrame) -> pd.DataFrame:
    """`daily`: daily rows of any stations and days; `stations`: the catalogue (`station`, `lcz`).

    The median is taken over the stations with a mean temperature that day (a day below the
    coverage threshold has none, and no index); a station missing from the catalogue has no LCZ.
    """
    frame = daily.assign(date=pd.to_datetime(daily["date"]))
    lcz = stations.drop_duplicates("station").set_index("station")["lcz"]
    median = frame.groupby("date")["temperature_mean_c"].transform("median")
    frame = frame.assign(
        lcz=frame["station"].map(lcz).astype(object).where(lambda v: v.notna(), None),
        network_median_temperature_c=round_half_away_from_zero(median, 2),
        heat_island_index_c=round_half_away_from_zero(frame["temperature_mean_c"] - median, 2),
    )
    ordered = frame.sort_values(["date", "station"]).reset_index(drop=True)[list(NETWORK_DAILY_COLUMNS)]
    return ordered.astype(pandas_dtypes(NETWORK_DAILY_COLUMNS))
