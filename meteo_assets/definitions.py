"""The code location: one call that turns the environment and `datasets.toml` into Definitions."""

from __future__ import annotations

import warnings

from dagster import AssetSelection, BetaWarning, Definitions, define_asset_job, in_process_executor

from meteo_assets.assets.catalogue import stations_asset
from meteo_assets.assets.stations import station_assets
from meteo_assets.config import Settings, load_network
from meteo_assets.partitions import daily_partitions
from meteo_assets.resources import build_resources

PIPELINE_JOB = "station_pipeline"
CATALOGUE_JOB = "station_catalogue"

# single-run backfills and neighbour-day partition mappings are beta APIs this project relies on
warnings.filterwarnings("ignore", category=BetaWarning)


def build_definitions(settings: Settings | None = None) -> Definitions:
    settings = settings or Settings.from_env()
    network = load_network(settings.datasets_file)
    partitions = daily_partitions(network)
    assets = [stations_asset(network)]
    for station in network.enabled:
        assets.extend(station_assets(station, partitions))
    pipeline = define_asset_job(
        PIPELINE_JOB,
        selection=AssetSelection.groups("raw", "clean", "daily"),
        partitions_def=partitions,
        description="Download, clean and summarise every enabled station for a range of days.",
    )
    catalogue = define_asset_job(
        CATALOGUE_JOB, selection=AssetSelection.assets("stations"), description="Refresh the station catalogue."
    )
    return Definitions(
        assets=assets,
        jobs=[pipeline, catalogue],
        resources=build_resources(settings),
        # One process per run: the DuckDB file admits one writer, and steps are short.
        executor=in_process_executor,
    )


defs = build_definitions()
