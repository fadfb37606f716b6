"""The dashboard: the tables → an offline static site, and small PNG plots for the Dagster UI.

Pure functions (pandas, Plotly's bundled JavaScript, matplotlib); the `dashboard` asset in
`meteo_assets/assets/dashboard.py` only loads the tables and calls them.
"""

from meteo_assets.dashboard.figures import freshness, lcz_label, wind_cells
from meteo_assets.dashboard.model import build_model, dashboard_window
from meteo_assets.dashboard.plots import daily_png, heat_island_png, png_markdown
from meteo_assets.dashboard.site import render_site, site_index, write_site

__all__ = [
    "build_model",
    "daily_png",
    "dashboard_window",
    "freshness",
    "heat_island_png",
    "lcz_label",
    "png_markdown",
    "render_site",
    "site_index",
    "wind_cells",
    "write_site",
]
