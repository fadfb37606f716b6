"""Toulouse Métropole weather stations as Dagster assets, and one-line loaders for notebooks."""

from meteo_assets.notebook import load, load_clean, load_daily, load_network_daily, load_stations, local_time

__all__ = ["load", "load_clean", "load_daily", "load_network_daily", "load_stations", "local_time"]
