"""`network/daily`: the whole network's daily rows for a day, with LCZ and the heat-island index.

It reads every enabled station's `daily/<station>` partition and the `stations` catalogue through
the IO manager (so it follows the storage mode), and is materialised by the network sensor once
every station is in for the day (see `meteo_assets/sensors.py`).
"""

import datetime as dt

import pandas as pd
from dagster import (
    AssetExecutionContext,
    AssetIn,
    AssetKey,
    AssetsDefinition,
    BackfillPolicy,
    FreshnessPolicy,
    MetadataValue,
    Output,
    PartitionsDefinition,
    asset,
)

from meteo_assets.assets.stations import DUCKDB_POOL, run_days, run_metadata
from meteo_assets.config import Network
from meteo_assets.dashboard.plots import heat_island_png, png_markdown
from meteo_assets.storage.duckdb_io import table_schema
from meteo_assets.transform import empty_daily_frame
from meteo_assets.transform.network import NETWORK_DAILY_COLUMNS, network_daily

NETWORK_DAILY = AssetKey(["network", "daily"])
STATIONS = AssetKey("stations")
# refreshed about every 15 minutes while stations report (see the network sensor)
NETWORK_FRESHNESS = FreshnessPolicy.time_window(fail_window=dt.timedelta(hours=2), warn_window=dt.timedelta(hours=1))


def network_daily_asset(network: Network, partitions: PartitionsDefinition) -> AssetsDefinition:
    ins = {f"daily_{s.key}": AssetIn(key=AssetKey(["daily", s.key])) for s in network.enabled}

    @asset(
        key=NETWORK_DAILY,
        group_name="network",
        kinds={"duckdb", "pandas"},
        pool=DUCKDB_POOL,
        ins={"stations": AssetIn(key=STATIONS), **ins},
        partitions_def=partitions,
        backfill_policy=BackfillPolicy.single_run(),
        freshness_policy=NETWORK_FRESHNESS,
        metadata={"partition_expr": "date", "dagster/column_schema": table_schema(NETWORK_DAILY_COLUMNS)},
        description=(
            "Every enabled station's daily row per Paris day in one table, with the station's local climate "
            "zone (`lcz`) and its urban heat-island index: mean temperature minus the network median of that "
            "day (`heat_island_index_c`, null below the coverage threshold). DuckDB table `network.daily`."
        ),
    )
    def network_daily_table(context: AssetExecutionContext, stations: pd.DataFrame, **daily: pd.DataFrame) -> Output[pd.DataFrame]:
        frames = [frame for frame in daily.values() if len(frame)]
        rows = pd.concat(frames, ignore_index=True) if frames else empty_daily_frame()
        frame = network_daily(rows, stations)
        return Output(
            frame,
            metadata=run_metadata(context, run_days(context), len(frame), {
                "station_days_with_mean": int(frame["temperature_mean_c"].notna().sum()),
                "preview": MetadataValue.md(preview(frame)),
                "heat_map": MetadataValue.md(png_markdown(heat_island_png(frame), "heat-island index")),
            }),
        )

    return network_daily_table


def preview(frame: pd.DataFrame, days: int = 10) -> str:
    """Per day: stations in, network median, and the warmest and coolest stations against it."""
    if frame.empty:
        return "no rows"
    lines = ["| date | stations | with mean | median °C | warmest (index °C) | coolest (index °C) |", "|---|---|---|---|---|---|"]
    for date, group in list(frame.groupby("date"))[-days:]:
        ranked = group.dropna(subset=["heat_island_index_c"]).sort_values("heat_island_index_c")
        warm = f"{ranked.iloc[-1]['station']} ({ranked.iloc[-1]['heat_island_index_c']:+.2f})" if len(ranked) else "–"
        cool = f"{ranked.iloc[0]['station']} ({ranked.iloc[0]['heat_island_index_c']:+.2f})" if len(ranked) else "–"
        median = group["network_median_temperature_c"].iloc[0]
        lines.append(
            f"| {date:%Y-%m-%d} | {len(group)} | {len(ranked)} | {'–' if pd.isna(median) else f'{median:.2f}'} | {warm} | {cool} |"
        )
    return "\n".join(lines)
