"""The one partitioning of the project: Paris civil days, from the network's first day to today."""

from dagster import DailyPartitionsDefinition

from meteo_assets.config import Network


def daily_partitions(network: Network) -> DailyPartitionsDefinition:
    # end_offset=1: today's partition exists and fills up during the day
    return DailyPartitionsDefinition(
        start_date=network.start_date.isoformat(), timezone="Europe/Paris", end_offset=1
    )
