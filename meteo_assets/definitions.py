"""The code location: one call that turns the environment and `datasets.toml` into Definitions."""

from __future__ import annotations

import atexit
import gc
import os
import warnings

from dagster import AssetSelection, BetaWarning, Definitions, define_asset_job, in_process_executor

from meteo_assets.assets.catalogue import stations_asset
from meteo_assets.assets.dashboard import dashboard_asset
from meteo_assets.assets.network import NETWORK_DAILY, network_daily_asset
from meteo_assets.assets.stations import station_assets
from meteo_assets.checks import station_freshness_checks
from meteo_assets.config import Settings, load_network
from meteo_assets.partitions import daily_partitions
from meteo_assets.resources import build_resources
from meteo_assets.schedules import build_safety_net_schedule
from meteo_assets.sensors import build_sensors

PIPELINE_JOB = "station_pipeline"
CATALOGUE_JOB = "station_catalogue"
NETWORK_JOB = "network_daily"

# single-run backfills and neighbour-day partition mappings are beta APIs this project relies on
warnings.filterwarnings("ignore", category=BetaWarning)
# A ranged run then logs one "planned" event per asset instead of one per asset and day: a year of
# 20 stations is 22,000 fewer event-log writes. Dagster's trade-off: the days of a failed ranged
# run show as missing rather than failed (the run itself shows failed). Set it to 0 to opt out.
os.environ.setdefault("DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS", "1")
# Dagster hands a ranged step's per-day events to the event log in batches of up to this many
# (one transaction each in the project's storage, storage/event_log.py); its default is one by one.
os.environ.setdefault("DAGSTER_EVENT_BATCH_SIZE", "1000")
# A process that ran a backfill exits holding a large heap (a year of 20 stations: its 22,000 events,
# their log records, frames), and Python's last full garbage collection walked all of it: ~1.2 s of
# such a run. The objects alive at exit are moved out of the collector's reach first; their memory
# goes back to the system with the process.
atexit.register(gc.freeze)


def build_definitions(settings: Settings | None = None) -> Definitions:
    settings = settings or Settings.from_env()
    network = load_network(settings.datasets_file)
    partitions = daily_partitions(network)
    assets = [stations_asset(network), dashboard_asset(network, settings), network_daily_asset(network, partitions)]
    by_key = {station.key: station for station in network.enabled}
    for station in network.enabled:
        assets.extend(station_assets(station, partitions, by_key))
    freshness = station_freshness_checks(network.enabled)
    pipeline = define_asset_job(
        PIPELINE_JOB,
        # freshness is judged by its own sensor's runs: a failed station must not leave it pending here
        selection=AssetSelection.groups("raw", "clean", "daily") - AssetSelection.checks(freshness),
        description="Download, clean and summarise every enabled station for a range of days.",
    )
    catalogue = define_asset_job(
        CATALOGUE_JOB, selection=AssetSelection.assets("stations"), description="Refresh the station catalogue."
    )
    network_job = define_asset_job(
        NETWORK_JOB,
        selection=AssetSelection.assets(NETWORK_DAILY, "stations"),
        description="The network-wide daily table (and the station catalogue it joins) for a range of days.",
    )
    return Definitions(
        assets=assets,
        asset_checks=[freshness],
        jobs=[pipeline, catalogue, network_job],
        sensors=build_sensors(
            network, freshness, pipeline_job=PIPELINE_JOB, network_job=NETWORK_JOB, network_assets=[NETWORK_DAILY]
        ),
        schedules=[build_safety_net_schedule(PIPELINE_JOB)],
        resources=build_resources(settings),
        # One process per run: the DuckDB file admits one writer, and steps are short.
        executor=in_process_executor,
    )


defs = build_definitions()
# The code location's objects (Dagster, pandas, these definitions: ~180,000) live as long as the
# process; the collector's full passes during a run walked them all (7 passes, ~0.8 s of a year of
# 20 stations). Frozen once loaded, they are left out: ~0.3 s. Objects that die later by reference
# counting are freed as usual.
gc.freeze()
