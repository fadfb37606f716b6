"""Toulouse Métropole weather stations as Dagster assets, and one-line loaders for notebooks."""

from meteo_assets.notebook import load_clean, load_daily, load_stations

__all__ = ["load_clean", "load_daily", "load_stations"]
