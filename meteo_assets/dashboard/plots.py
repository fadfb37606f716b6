"""Small PNG plots for the Dagster UI's materialisation metadata: Pillow for the per-station daily
plot (one per station and run), matplotlib (Agg, no global state) for the network heat map.

Shown as markdown images with a base64 data URI, so they are kept to a few kilobytes: a small
canvas, a 64-colour palette.
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass

import numpy as np
import pandas as pd

HOURLY_UP_TO_DAYS = 3  # runs of up to this many days are plotted hour by hour from the clean slots
WIDTH_IN, HEIGHT_IN, DPI = 6.4, 2.4, 80
PALETTE_COLOURS = 64
SUPERSAMPLE = 2  # the daily plot is drawn at twice the size, then reduced: smooth lines and text
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
    """Drawn with Pillow, not matplotlib: a daily run draws one per station (50 a day), and a
    matplotlib figure costs ~0.13 s where this costs a few milliseconds."""
    from PIL import Image, ImageDraw

    width, height = round(WIDTH_IN * DPI), round(HEIGHT_IN * DPI)
    image = Image.new("RGB", (width * SUPERSAMPLE, height * SUPERSAMPLE), "white")
    draw = ImageDraw.Draw(image, "RGBA")
    box = _Box(*(SUPERSAMPLE * v for v in (40, width - 44, 18, height - 22)))
    label, tick = _font(10), _font(9)
    draw.text((image.width / 2, 2 * SUPERSAMPLE), title, fill="black", font=label, anchor="mt")
    draw.text((box.left, box.top - 2), "°C", fill=TEMPERATURE, font=tick, anchor="rd")
    draw.text((box.right, box.top - 2), f"rain mm {unit}", fill=RAIN, font=tick, anchor="rd")

    start = frame.index[0] if len(frame) else pd.Timestamp(0)
    span = (frame.index[-1] + step - start) if len(frame) else step
    x = box.left + (box.right - box.left) * ((frame.index - start) / span).to_numpy(dtype=float)
    slot = (box.right - box.left) * (step / span)

    rain = frame["rain"].to_numpy(dtype=float)
    rain_top = _nice_ticks(0.0, max(float(np.nan_to_num(np.nanmax(rain, initial=0.0))) * 1.1, 1.0))
    rain_y = box.bottom - (box.bottom - box.top) * np.nan_to_num(rain) / rain_top[-1]
    for left, top in zip(x + 0.1 * slot, rain_y):
        if top < box.bottom:
            draw.rectangle((left, top, left + max(0.8 * slot, 1), box.bottom), fill=RAIN + "73")
    for value in rain_top:
        y = box.bottom - (box.bottom - box.top) * value / rain_top[-1]
        draw.text((box.right + 3 * SUPERSAMPLE, y), f"{value:g}", fill=RAIN, font=tick, anchor="lm")

    tmin, tmean, tmax = (frame[c].to_numpy(dtype=float) for c in ("tmin", "tmean", "tmax"))
    if np.isnan(tmin).all() or np.isnan(tmax).all():
        draw.text(((box.left + box.right) / 2, (box.top + box.bottom) / 2), "no data", fill="grey", font=label,
                  anchor="mm")
    else:
        ticks = _nice_ticks(float(np.nanmin(tmin)), float(np.nanmax(tmax)))
        to_y = lambda v: box.bottom - (box.bottom - box.top) * (v - ticks[0]) / (ticks[-1] - ticks[0])  # noqa: E731
        for value in ticks:
            draw.line((box.left, to_y(value), box.right, to_y(value)), fill="#e6e6e6", width=SUPERSAMPLE)
            draw.text((box.left - 3 * SUPERSAMPLE, to_y(value)), f"{value:g}", fill=TEMPERATURE, font=tick, anchor="rm")
        centre = x + slot / 2
        for run in _runs(~(np.isnan(tmin) | np.isnan(tmax))):
            band = [*zip(centre[run], to_y(tmax[run])), *reversed(list(zip(centre[run], to_y(tmin[run]))))]
            if len(run) > 1:
                draw.polygon(band, fill=TEMPERATURE + "40")
            else:
                draw.line(band, fill=TEMPERATURE + "40", width=max(int(slot), SUPERSAMPLE))
        for run in _runs(~np.isnan(tmean)):
            draw.line(list(zip(centre[run], to_y(tmean[run]))), fill=TEMPERATURE, width=round(1.2 * SUPERSAMPLE),
                      joint="curve")
    draw.rectangle((box.left, box.top, box.right, box.bottom), outline="#808080", width=SUPERSAMPLE)
    for moment, text in _time_ticks(start, span, step):
        at = box.left + (box.right - box.left) * ((moment - start) / span)
        draw.line((at, box.bottom, at, box.bottom + 3 * SUPERSAMPLE), fill="#808080", width=SUPERSAMPLE)
        draw.text((at, box.bottom + 4 * SUPERSAMPLE), text, fill="black", font=tick, anchor="mt")
    return _quantized_png(image.reduce(SUPERSAMPLE))


@dataclass(frozen=True)
class _Box:
    left: float
    right: float
    top: float
    bottom: float


def _font(points: int):
    from PIL import ImageFont

    return ImageFont.load_default(size=points * SUPERSAMPLE)


def _nice_ticks(low: float, high: float, most: int = 5) -> np.ndarray:
    """Round-valued ticks covering [low, high], at most `most` + 1 of them (1, 2, 2.5 or 5 × 10^k apart)."""
    if high - low < 1e-9:
        low, high = low - 1, high + 1
    raw = (high - low) / most
    magnitude = 10 ** np.floor(np.log10(raw))
    spacing = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    return np.arange(np.floor(low / spacing), np.ceil(high / spacing) + 0.5) * spacing


def _runs(present: np.ndarray) -> list[np.ndarray]:
    """Index arrays of the consecutive stretches where `present` is true (gaps are not bridged)."""
    positions = np.flatnonzero(present)
    return [run for run in np.split(positions, np.flatnonzero(np.diff(positions) > 1) + 1) if len(run)]


def _time_ticks(start: pd.Timestamp, span: pd.Timedelta, step: pd.Timedelta) -> list[tuple[pd.Timestamp, str]]:
    """About six labelled moments: hours within days, days within months, months within years."""
    end = start + span
    if step < pd.Timedelta(days=1):
        every = next((h for h in (3, 6, 12) if span / pd.Timedelta(hours=h) <= 8), 24)
        moments = pd.date_range(start.ceil("h"), end, freq=f"{every}h")
        return [(m, m.strftime("%d %b") if m.hour == 0 else m.strftime("%H:%M")) for m in moments]
    if span <= pd.Timedelta(days=62):
        every = max(1, round(span / pd.Timedelta(days=6)))
        return [(m, m.strftime("%d %b")) for m in pd.date_range(start, end, freq=f"{every}D")]
    months = pd.date_range(start.to_period("M").to_timestamp(), end, freq="MS")
    months = months[(months >= start) & (months < end)][:: max(1, -(-len(months) // 7))]
    return [(m, m.strftime("%Y") if m.month == 1 else m.strftime("%b")) for m in months]


def _quantized_png(image) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    image.quantize(colors=PALETTE_COLOURS, method=Image.Quantize.FASTOCTREE).save(out, format="PNG")
    return out.getvalue()


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
    return _quantized_png(Image.frombuffer("RGBA", canvas.get_width_height(), canvas.buffer_rgba(), "raw", "RGBA", 0, 1).convert("RGB"))
