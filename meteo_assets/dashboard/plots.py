"""Small PNG plots for the Dagster UI's materialisation metadata (matplotlib, Agg, no global state).

Shown as markdown images with a base64 data URI, so they are kept to a few kilobytes: a small
canvas, a 64-colour palette.
"""

from __future__ import annotations

import base64
import io

import numpy as np
import pandas as pd

HOURLY_UP_TO_DAYS = 3  # runs of up to this many days are plotted hour by hour from the clean slots
WIDTH_IN, HEIGHT_IN, DPI = 6.4, 2.4, 80
PALETTE_COLOURS = 64
PLOT_SHARE = 0.82  # of the figure's width, between the two y axes (subplots_adjust below)
TEMPERATURE, RAIN = "#d9534f", "#2c7fb8"


def daily_png(daily: pd.DataFrame, clean: pd.DataFrame | None = None) -> bytes:
    """Temperature band (min–max, mean line) and rain of one station over a run's days.

    Runs of a few days are drawn hour by hour from `clean` (the day's curve tells more than one
    band), longer runs day by day from `daily`.
    """
    days = pd.DatetimeIndex(daily["date"])
    if clean is not None and 0 < len(days) <= HOURLY_UP_TO_DAYS:
        in_run = clean[clean["local_time"].dt.normalize().isin(days)]
        hours = in_run.groupby(in_run["local_time"].dt.floor("h"))
        frame = pd.DataFrame({
            "tmin": hours["temperature_c"].min(), "tmean": hours["temperature_c"].mean(),
            "tmax": hours["temperature_c"].max(), "rain": hours["rain_mm"].sum(min_count=1),
        })
        frame = frame.reindex(pd.date_range(days.min(), days.max() + pd.Timedelta(hours=23), freq="h"))
        step, unit = pd.Timedelta(hours=1), "per hour"
    else:
        frame = pd.DataFrame({
            "tmin": daily["temperature_min_c"].to_numpy(), "tmean": daily["temperature_mean_c"].to_numpy(),
            "tmax": daily["temperature_max_c"].to_numpy(), "rain": daily["rain_sum_mm"].to_numpy(),
        }, index=days)
        step, unit = pd.Timedelta(days=1), "per day"
    if not len(days):
        return _band_and_rain(frame, step, unit, "no days")
    title = f"{daily['station'].iloc[0]} · {days.min():%Y-%m-%d}" + (f" … {days.max():%Y-%m-%d}" if len(days) > 1 else "")
    return _band_and_rain(frame, step, unit, title)


def heat_island_png(network_daily: pd.DataFrame) -> bytes:
    """Station × day heat map of `heat_island_index_c` (°C above the network median)."""
    grid = network_daily.pivot_table(index="station", columns="date", values="heat_island_index_c", dropna=False)
    figure, canvas = _figure(height=max(HEIGHT_IN, 0.9 + 0.12 * len(grid)), layout="constrained")
    axes = figure.add_subplot()
    if grid.size and grid.notna().any().any():
        limit = max(float(np.nanmax(np.abs(grid.to_numpy()))), 0.5)
        image = axes.imshow(grid.to_numpy(), aspect="auto", cmap="RdBu_r", vmin=-limit, vmax=limit,
                            interpolation="nearest")
        figure.colorbar(image, ax=axes, label="°C vs network median", pad=0.01)
        axes.set_yticks(range(len(grid)), [str(s) for s in grid.index], fontsize=6)
        ticks = np.linspace(0, grid.shape[1] - 1, min(grid.shape[1], 6)).round().astype(int)
        axes.set_xticks(ticks, [pd.Timestamp(grid.columns[i]).strftime("%d %b") for i in ticks], fontsize=7)
    else:
        _no_data(axes)
    axes.set_title("Urban heat island index by station and day", fontsize=9)
    return _png(figure, canvas)


def png_markdown(png: bytes, alt: str) -> str:
    """The markdown that shows `png` inline (Dagster UI metadata)."""
    return f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode('ascii')})"


def _band_and_rain(frame: pd.DataFrame, step: pd.Timedelta, unit: str, title: str) -> bytes:
    figure, canvas = _figure()
    temperature = figure.add_subplot()
    rain = temperature.twinx()
    x = frame.index.to_pydatetime()
    if frame["rain"].notna().any():
        # one line per slot, drawn as a single collection: a year of `bar` patches takes seconds
        centres = (frame.index + step / 2 if step < pd.Timedelta(days=1) else frame.index).to_pydatetime()
        bar_points = max(0.5, 0.8 * WIDTH_IN * 72 * PLOT_SHARE / len(frame))
        rain.vlines(centres, 0, frame["rain"].fillna(0).to_numpy(), colors=RAIN, alpha=0.45, linewidth=bar_points)
    if len(frame):
        temperature.fill_between(x, frame["tmin"].to_numpy(dtype=float), frame["tmax"].to_numpy(dtype=float),
                                 color=TEMPERATURE, alpha=0.25, linewidth=0)
        temperature.plot(x, frame["tmean"].to_numpy(dtype=float), color=TEMPERATURE, linewidth=1.2)
    if frame[["tmin", "tmax"]].isna().all().all():
        _no_data(temperature)
    temperature.set_ylabel("°C", color=TEMPERATURE, fontsize=8)
    rain.set_ylabel(f"rain mm {unit}", color=RAIN, fontsize=8)
    rain.set_ylim(0, max(float(np.nan_to_num(frame["rain"].max())) * 1.1, 1.0))
    temperature.set_title(title, fontsize=8)
    temperature.set_zorder(rain.get_zorder() + 1)
    temperature.patch.set_visible(False)
    for axes in (temperature, rain):
        axes.tick_params(labelsize=7)
    from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
    from matplotlib.ticker import MaxNLocator

    for axes in (temperature, rain):  # few ticks: laying out tick labels is most of the drawing time
        axes.yaxis.set_major_locator(MaxNLocator(nbins=4))
    locator = AutoDateLocator(maxticks=6)
    temperature.xaxis.set_major_locator(locator)
    temperature.xaxis.set_major_formatter(ConciseDateFormatter(locator, show_offset=False))
    figure.subplots_adjust(left=0.08, right=0.08 + PLOT_SHARE, bottom=0.17, top=0.9)
    return _png(figure, canvas)


def _figure(height: float = HEIGHT_IN, layout: str | None = None):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(WIDTH_IN, height), dpi=DPI, layout=layout)
    return figure, FigureCanvasAgg(figure)


def _no_data(axes) -> None:
    axes.text(0.5, 0.5, "no data", transform=axes.transAxes, ha="center", va="center", color="grey")


def _png(figure, canvas) -> bytes:
    from PIL import Image

    canvas.draw()  # renders once: the RGBA buffer below is that rendering
    image = Image.frombuffer("RGBA", canvas.get_width_height(), canvas.buffer_rgba(), "raw", "RGBA", 0, 1)
    out = io.BytesIO()
    image.convert("RGB").quantize(colors=PALETTE_COLOURS, method=Image.Quantize.FASTOCTREE).save(out, format="PNG")
    return out.getvalue()
