"""Synthetic Toulouse Métropole weather-station exports, deterministic by seed.

The rows look like the portal's CSV exports, field for field and byte for byte in their formatting,
so that the pipeline can be tested on realistic data without the network and on any span of time.

Determinism: the regional weather depends only on ``weather_seed`` and absolute time, and each
calendar month of a station is generated from ``(seed, year, month)``.  So the rows of a window do
not depend on the spec's ``start``/``end``: a spec split into archive + live datasets yields exactly
the rows of the whole spec, and extending ``end`` only adds rows (useful for incremental tests).
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta, timezone
from typing import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

UTC = timezone.utc
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_WEATHER_ORIGIN_DAYS = (datetime(2019, 1, 1, tzinfo=UTC) - _EPOCH).days  # time axis of the weather

# (name, label, type) in the portal's order.  Labels differ from names for two fields only.
FIELDS_15: list[tuple[str, str, str]] = [
    ("data", "data", "text"),
    ("id", "id", "int"),
    ("humidite", "humidite", "int"),
    ("direction_du_vecteur_de_vent_max", "direction_du_vecteur_de_vent_max", "int"),
    ("pluie_intensite_max", "pluie_intensite_max", "double"),
    ("pression", "pression", "int"),
    ("direction_du_vecteur_vent_moyen", "direction_du_vecteur_vent_moyen", "int"),
    ("type_de_station", "type_de_station", "text"),
    ("pluie", "pluie", "double"),
    ("direction_du_vecteur_de_vent_max_en_degres", "direction_du_vecteur_de_rafale_de_vent_max", "double"),
    ("force_moyenne_du_vecteur_vent", "force_moyenne_du_vecteur_vent", "int"),
    ("force_rafale_max", "force_rafale_max", "int"),
    ("temperature_en_degre_c", "temperature", "double"),
    ("heure_de_paris", "heure_de_paris", "datetime"),
    ("heure_utc", "heure_utc", "text"),
]
_F15 = {name: (label, typ) for name, label, typ in FIELDS_15}
_EXTRA_39 = {
    "mois": "text", "jour": "int", "annee": "int", "numero_de_message": "int",
    "temperature_partie_entiere": "int", "temperature_partie_decimale": "int", "pluie_en_augets": "int",
    "direction_du_vecteur_moyen_de_vent": "int", "force_moyenne_du_vecteur_de_vent": "int",
    "pression_a_decoder": "int", "force_du_vecteur_de_vent_max": "int",
    "pluie_la_plus_intense_durant_1_min": "int", "type_station": "int", "heure": "int",
    "annee_reelle": "text", "minute": "int", "temperature_decodee": "int", "jour_mois": "text",
    "dd_mm_yy_utc": "text", "hh_mm_utc": "text", "dd_mm_yy_hh_mm": "text", "false_message": "text",
    "dd_mm_yy_hh_mm_utc": "text", "heure_paris_dd_mm_yy_hh_mm": "text",
}
_ORDER_39 = (
    "data id mois jour annee numero_de_message temperature_partie_entiere temperature_partie_decimale "
    "humidite pluie_en_augets direction_du_vecteur_moyen_de_vent force_moyenne_du_vecteur_de_vent "
    "pression_a_decoder direction_du_vecteur_de_vent_max force_du_vecteur_de_vent_max "
    "pluie_la_plus_intense_durant_1_min type_station pluie_intensite_max heure annee_reelle minute "
    "pression temperature_decodee direction_du_vecteur_vent_moyen type_de_station pluie "
    "direction_du_vecteur_de_vent_max_en_degres force_moyenne_du_vecteur_vent force_rafale_max jour_mois "
    "dd_mm_yy_utc hh_mm_utc dd_mm_yy_hh_mm temperature_en_degre_c false_message dd_mm_yy_hh_mm_utc "
    "heure_paris_dd_mm_yy_hh_mm heure_de_paris heure_utc"
).split()
FIELDS_39: list[tuple[str, str, str]] = [
    (name, *_F15[name]) if name in _F15 else (name, name, _EXTRA_39[name]) for name in _ORDER_39
]
CATALOGUE_DATASET_ID = "stations-meteo-en-place"
CATALOGUE_FIELDS: list[tuple[str, str, str]] = [
    ("id_nom", "id_nom", "text"), ("id_numero", "id_numero", "int"), ("longitude", "longitude", "double"),
    ("latitude", "latitude", "double"), ("altitude", "altitude", "double"), ("ville", "ville", "text"),
    ("installation", "installation", "date"), ("type_stati", "type_stati", "text"), ("lcz", "lcz", "int"),
    ("emission", "emission", "text"), ("bati", "bati", "text"), ("veg_haute", "veg_haute", "text"),
    ("geopoint", "geopoint", "geo_point_2d"),
]
KNOWN_FIELDS: dict[str, tuple[str, str]] = {n: (lab, t) for n, lab, t in FIELDS_39 + CATALOGUE_FIELDS}


def schema(schema_fields: int) -> list[tuple[str, str, str]]:
    """The (name, label, type) list of a 15- or 39-field station dataset."""
    if schema_fields == 15:
        return FIELDS_15
    if schema_fields == 39:
        return FIELDS_39
    raise ValueError(f"schema_fields must be 15 or 39, not {schema_fields}")


# --------------------------------------------------------------------------- payload
# Bit ranges [a, b), MSB first, of the 96-bit message (portal.md).
PAYLOAD_LAYOUT: dict[str, tuple[int, int]] = {
    "id": (0, 7), "month": (7, 11), "day": (11, 16), "year": (16, 20), "message": (20, 27),
    "temp_int": (27, 34), "temp_tenths": (34, 38), "humidity": (38, 45), "rain_tips": (45, 52),
    "wind_dir_half": (52, 60), "wind": (60, 67), "pressure": (67, 75), "gust_sector": (75, 79),
    "gust": (79, 86), "rain_1min_tips": (86, 90),
}
_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
_MASK48 = np.uint64((1 << 48) - 1)


def encode_payloads(values: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Pack raw field values (keys of PAYLOAD_LAYOUT) into 24-hex strings, vectorised.

    Returns ``(hex strings, low 48 bits)``; the low word is the 39-field ``false_message``.
    The 96 bits are held as two 48-bit words so that every shift fits in uint64.
    """
    n = len(next(iter(values.values())))
    hi = np.zeros(n, dtype=np.uint64)
    lo = np.zeros(n, dtype=np.uint64)
    for name, (a, b) in PAYLOAD_LAYOUT.items():
        v = np.asarray(values[name], dtype=np.uint64) & np.uint64((1 << (b - a)) - 1)
        shift = 96 - b  # position of the value's LSB in the 96-bit integer
        if shift >= 48:
            hi |= v << np.uint64(shift - 48)
        else:
            lo |= (v << np.uint64(shift)) & _MASK48
            if b - a + shift > 48:
                hi |= v >> np.uint64(48 - shift)
    nibbles = np.empty((n, 24), dtype=np.uint8)
    for k in range(12):
        nibbles[:, k] = ((hi >> np.uint64(44 - 4 * k)) & np.uint64(15)).astype(np.uint8)
        nibbles[:, 12 + k] = ((lo >> np.uint64(44 - 4 * k)) & np.uint64(15)).astype(np.uint8)
    text = np.ascontiguousarray(_HEX[nibbles]).view("S24").ravel().astype(str).astype(object)
    return text, lo


def decode_payload(data: str) -> dict[str, int | float]:
    """Decode one 24-hex message into its raw fields plus the physical values they mean."""
    if not re.fullmatch(r"[0-9a-fA-F]{24}", data):
        raise ValueError(f"not a 24-hex payload: {data!r}")
    bits = int(data, 16)
    raw: dict[str, int | float] = {
        name: (bits >> (96 - b)) & ((1 << (b - a)) - 1) for name, (a, b) in PAYLOAD_LAYOUT.items()
    }
    ti, tt = raw["temp_int"], raw["temp_tenths"]
    raw["temperature"] = round((ti - 50) + (tt if ti >= 50 else -tt) / 10, 1)
    raw["pressure_pa"] = 90000 if raw["pressure"] == 0 else (raw["pressure"] + 900) * 100
    raw["wind_dir"] = raw["wind_dir_half"] * 2
    raw["minute_of_day"] = 15 * (raw["message"] - 1)
    raw["full_year"] = 2019 + raw["year"]
    return raw


# --------------------------------------------------------------------------- spec
def _utc(value: datetime | date | str) -> datetime:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    elif not isinstance(value, datetime):
        value = datetime(value.year, value.month, value.day)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _minutes(dt: datetime) -> int:
    return int((dt - _EPOCH).total_seconds() // 60)


@dataclass(frozen=True)
class StationSpec:
    """One station dataset to synthesise: rows for messages in ``[start, end)`` (UTC).

    ``quirks=False`` gives a sorted, perfect grid (every ``interval_minutes``) for exact tests;
    ``outages`` and ``degraded`` periods (about one message a day gets through) apply in both modes.
    ``weather_seed`` is the regional weather shared by a network; ``seed`` the station's own noise
    and quirks.  Naive datetimes are taken as UTC.
    """

    dataset_id: str
    sensor_id: int
    start: datetime
    end: datetime
    seed: int = 0
    schema_fields: int = 15
    lat: float = 43.6045
    lon: float = 1.4440
    altitude: float = 146.0
    lcz: int = 6
    quirks: bool = True
    interval_minutes: int = 15
    outages: Sequence[tuple[datetime, datetime]] = field(default_factory=tuple)
    degraded: Sequence[tuple[datetime, datetime]] = field(default_factory=tuple)
    weather_seed: int = 0
    ville: str = "Toulouse"

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "start", _utc(self.start))
        set_(self, "end", _utc(self.end))
        set_(self, "outages", tuple((_utc(a), _utc(b)) for a, b in self.outages))
        set_(self, "degraded", tuple((_utc(a), _utc(b)) for a, b in self.degraded))
        schema(self.schema_fields)
        if not 1 <= self.sensor_id <= 127:
            raise ValueError("sensor_id must fit the payload's 7 bits (1..127)")
        if self.interval_minutes % 15 or 1440 % self.interval_minutes:
            raise ValueError("interval_minutes must be a multiple of 15 dividing a day")
        if self.end <= self.start:
            raise ValueError("end must be after start")

    @property
    def fields(self) -> list[tuple[str, str, str]]:
        return schema(self.schema_fields)


# --------------------------------------------------------------------------- weather
class _Weather:
    """Regional smooth weather processes: sums of random sinusoids of absolute time (days)."""

    def __init__(self, weather_seed: int):
        rng = np.random.default_rng([weather_seed, 7001])
        self.temp = self._field(rng, 14, 2.5, 45.0)
        self.cloud = self._field(rng, 14, 1.2, 12.0)
        self.press = self._field(rng, 12, 2.0, 20.0)
        self.wind = self._field(rng, 12, 0.6, 10.0)
        self.regime = self._field(rng, 10, 1.5, 15.0)
        self.seed = weather_seed

    @staticmethod
    def _field(rng: np.random.Generator, k: int, pmin: float, pmax: float):
        periods = np.exp(rng.uniform(np.log(pmin), np.log(pmax), k))
        weights = np.sqrt(periods) * rng.uniform(0.5, 1.5, k)
        amps = weights / np.sqrt((weights**2).sum() / 2)  # unit standard deviation
        return periods, rng.uniform(0, 2 * np.pi, k), amps

    @staticmethod
    def eval(f, days: np.ndarray) -> np.ndarray:
        periods, phases, amps = f
        return np.sin(2 * np.pi * days[:, None] / periods + phases) @ amps


_RAIN_EPISODES_PER_MONTH = [11, 10, 11, 13, 13, 9, 6, 7, 8, 10, 12, 11]


def _rain_episodes(weather: _Weather, year: int, month: int) -> np.ndarray:
    """Regional rain episodes starting in a month: rows (start minute, duration, peak tips/15 min)."""
    rng = np.random.default_rng([weather.seed, year, month, 7002])
    m0 = _minutes(datetime(year, month, 1, tzinfo=UTC))
    m1 = _minutes(_month_after(year, month))
    starts = np.sort(rng.uniform(m0, m1, rng.poisson(2.5 * _RAIN_EPISODES_PER_MONTH[month - 1])))
    cloud = 1 / (1 + np.exp(-1.6 * _Weather.eval(weather.cloud, starts / 1440 - _WEATHER_ORIGIN_DAYS)))
    starts = starts[rng.uniform(size=starts.size) < cloud**2]
    summer = 6 <= month <= 9
    duration = np.maximum(15, rng.exponential(70 if summer else 200, starts.size))
    peak = rng.lognormal(np.log(2.6 if summer else 1.3), 0.6, starts.size)
    return np.column_stack([starts, duration, peak])


def _month_after(year: int, month: int) -> datetime:
    return datetime(year + month // 12, month % 12 + 1, 1, tzinfo=UTC)


def _last_sunday_of_october(year: int) -> date:
    last = date(year, 10, 31)
    return last - timedelta(days=(last.weekday() + 1) % 7)


_UHI_NIGHT = {1: 2.6, 2: 2.3, 3: 1.9, 4: 1.5, 5: 1.3, 6: 1.0, 7: 1.1, 8: 0.8, 9: 0.4, 10: 1.0,
              11: -0.6, 12: -0.4, 13: -0.5, 14: -1.0, 15: 0.3, 16: -0.8, 17: -0.3}
_EXPOSURE = {1: 0.5, 2: 0.55, 3: 0.6, 4: 0.7, 5: 0.75, 6: 0.8, 7: 0.8, 8: 0.9, 9: 1.0, 10: 0.9,
             11: 0.65, 12: 0.9, 13: 1.0, 14: 1.3, 15: 1.2, 16: 1.2, 17: 1.1}
_URBAN_LCZ = {1, 2, 3, 4, 5, 6, 7, 8, 10}


class _Station:
    """Constant traits of a station drawn from its seed and local climate zone."""

    def __init__(self, spec: StationSpec):
        rng = np.random.default_rng([spec.seed, 7101])
        self.temp_offset = rng.normal(0, 0.3) - 0.0065 * (spec.altitude - 146)
        self.uhi = _UHI_NIGHT.get(spec.lcz, 0.5) * rng.uniform(0.8, 1.2)
        self.exposure = _EXPOSURE.get(spec.lcz, 0.9) * rng.lognormal(0, 0.2)
        self.rh_max = int(rng.integers(93, 99))
        self.dry = 0.8 if spec.lcz in _URBAN_LCZ else 0.0
        self.rain_factor = rng.lognormal(0, 0.15)
        self.dir_shift = rng.normal(0, 15)
        self.noise = _Weather._field(rng, 8, 0.15, 2.0)


def _diurnal(hour: np.ndarray) -> np.ndarray:
    """-1 at 05:30 UTC (minimum), +1 at 14:30 UTC (maximum): slow rise, slower decay."""
    h_min, h_max = 5.5, 14.5
    rising = (hour >= h_min) & (hour < h_max)
    tau = np.mod(hour - h_max, 24)
    return np.where(rising, -np.cos(np.pi * (hour - h_min) / (h_max - h_min)), np.cos(np.pi * tau / 15))


@functools.lru_cache(maxsize=8)
def _weather(weather_seed: int) -> _Weather:
    return _Weather(weather_seed)


@functools.lru_cache(maxsize=128)
def _regional(weather_seed: int, year: int, month: int, interval: int) -> dict[str, np.ndarray]:
    """The weather every station of a network shares over one month (cached, read-only arrays)."""
    weather = _weather(weather_seed)
    m0, m1 = _minutes(datetime(year, month, 1, tzinfo=UTC)), _minutes(_month_after(year, month))
    slots = np.arange(m0, m1, interval, dtype=np.int64)
    days = slots / 1440 - _WEATHER_ORIGIN_DAYS
    doy = pd.DatetimeIndex(slots.astype("datetime64[m]")).dayofyear.to_numpy()
    season = -np.cos(2 * np.pi * (doy - 18) / 365.25)  # -1 mid-January .. +1 mid-July

    # Rain: episodes of this month and of the previous one, which may spill over.
    rate = np.zeros(slots.size)
    near = np.zeros(slots.size, dtype=bool)
    prev = (year, month - 1) if month > 1 else (year - 1, 12)
    for start, duration, peak in np.vstack([_rain_episodes(weather, *prev), _rain_episodes(weather, year, month)]):
        i0, i1 = np.searchsorted(slots, [start, start + duration])
        rate[i0:i1] += peak * (0.35 + 0.65 * np.sin(np.pi * (slots[i0:i1] - start) / duration))
        j0, j1 = np.searchsorted(slots, [start - 60, start + duration + 60])
        near[j0:j1] = True
    wet = np.convolve((rate > 0).astype(float), np.ones(5) / 5, mode="same")
    cloud = 1 / (1 + np.exp(-1.6 * _Weather.eval(weather.cloud, days)))
    cloud = np.maximum(cloud, np.minimum(1, 2 * wet))
    hour = (slots % 1440) / 60
    d = _diurnal(hour)
    strength = 3.6 * np.exp(0.6 * _Weather.eval(weather.wind, days)) * (0.65 + 0.7 * (1 + d) / 2)
    out = {
        "days": days, "season": season, "rate": rate, "near": near, "wet": wet, "cloud": cloud, "diurnal": d,
        "base": 14.3 + 8.3 * season + 3.2 * _Weather.eval(weather.temp, days),
        "slp": (1016 + 6.5 * _Weather.eval(weather.press, days) - 7 * (cloud - 0.5)
                + 0.6 * np.cos(4 * np.pi * (hour - 10) / 24)),
        "strength": strength, "regime": _Weather.eval(weather.regime, days),
    }
    for array in out.values():
        array.setflags(write=False)
    return out


def _physics(spec: StationSpec, st: _Station, n: int, rng: np.random.Generator,
             year: int, month: int) -> dict[str, np.ndarray]:
    """Measured values at the month's slots, as the station would encode them."""
    r = _regional(spec.weather_seed, year, month, spec.interval_minutes)
    season, wet, cloud, d, base = r["season"], r["wet"], r["cloud"], r["diurnal"], r["base"]
    summer_w = (1 + season) / 2
    tips = np.minimum(rng.poisson(r["rate"] * st.rain_factor * spec.interval_minutes / 15), 127)
    one_min = np.where(tips > 0, 1 + rng.binomial(np.maximum(tips - 1, 0), 0.12), 0)
    one_min = np.where((tips == 0) & r["near"] & (rng.uniform(size=n) < 0.15), 1, one_min)
    one_min = np.minimum(one_min, 15)

    night = (1 - d) / 2
    amplitude = (5.6 + 1.6 * season) * (1.35 - 0.9 * cloud)
    temp = (base + amplitude * d + st.temp_offset + st.uhi * night * (1.3 - cloud) + 0.25 * (st.uhi > 0.5) * (1 - night)
            - 1.8 * wet + 0.35 * _Weather.eval(st.noise, r["days"]) + rng.normal(0, 0.1, n))
    t10 = np.rint(temp * 10).astype(np.int64)
    t10 = np.where((t10 < 0) & (t10 > -10), np.where(t10 > -5, 0, -10), t10)  # -0.x has no encoding

    depression = (1.6 + 7.5 * summer_w) * (1.2 - 0.85 * cloud) + st.dry
    dew = base - depression
    rh = 100 * np.exp(17.62 * dew / (243.12 + dew) - 17.62 * temp / (243.12 + temp))
    rh = np.where(wet > 0.3, np.maximum(rh, 86 + 10 * wet), rh) + rng.normal(0, 1.2, n)
    hum = np.clip(np.rint(rh), 12, st.rh_max).astype(np.int64)

    press = np.rint(r["slp"] - spec.altitude / 8.3).astype(np.int64) - 900  # hPa - 900, 1 hPa resolution

    strength = r["strength"]
    wind_f = strength * st.exposure * rng.lognormal(0, 0.35, n) - 0.8
    wind = np.clip(np.rint(wind_f), 0, 127).astype(np.int64)
    gust_kmh = np.maximum(wind, wind * 1.6 + rng.gamma(2.0, 0.9 + 0.12 * strength, n))
    mph = np.maximum(np.rint(gust_kmh / 1.609344), np.ceil(wind / 1.609344))
    mph = np.where((wind == 0) & (rng.uniform(size=n) < 0.6), 0, mph)
    gust = np.minimum(np.rint(mph * 1.609344), 127).astype(np.int64)  # mph sensor shown in km/h

    direction = np.where(r["regime"] > 0.2, 295.0, 118.0) + st.dir_shift + rng.normal(0, 30, n)
    direction = np.mod(direction, 360)
    zero_dir = rng.uniform(size=n) < np.where(wind == 0, 0.84, 0.38)  # the sensor often sends 0
    wind_dir = np.where(zero_dir, 0, (direction // 2) * 2).astype(np.int64)
    sector = np.mod(np.rint(direction / 22.5) + rng.integers(-1, 2, n), 16)
    sector = np.where((gust == 0) | (rng.uniform(size=n) < 0.1), 0, sector).astype(np.int64)

    return {"t10": t10, "hum": hum, "rain": tips.astype(np.int64), "wdir": wind_dir, "wind": wind,
            "press": press, "gsec": sector, "gust": gust, "r1": one_min.astype(np.int64)}


# --------------------------------------------------------------------------- quirks
_VALUES = ["t10", "hum", "rain", "wdir", "wind", "press", "gsec", "gust", "r1"]
KINDS = ("ok", "zero", "no_pressure", "duplicate", "other_sensor", "sous_station", "future", "junk")


def _in_periods(slots: np.ndarray, periods: Iterable[tuple[datetime, datetime]]) -> np.ndarray:
    mask = np.zeros(slots.size, dtype=bool)
    for a, b in periods:
        mask |= (slots >= _minutes(a)) & (slots < _minutes(b))
    return mask


def _runs(rng: np.random.Generator, n: int, count: int, min_len: int, max_len: int) -> np.ndarray:
    """A mask of ``count`` random runs of consecutive positions."""
    mask = np.zeros(n, dtype=bool)
    for _ in range(count):
        length = int(rng.integers(min_len, max_len + 1))
        i = int(rng.integers(0, max(1, n - length)))
        mask[i:i + length] = True
    return mask


def _junk_data(rng: np.random.Generator, payloads: np.ndarray) -> tuple[list[str], list[str]]:
    """Garbage ``data`` values as Excel wrote them from digit-only payloads (``5,5120252227E+023``)."""
    data, ids = [], []
    for hexa in payloads:
        u = rng.uniform()
        if u < 0.08:
            data.append("1,79769313486232E+308"), ids.append("")
        elif u < 0.16:
            data.append("0"), ids.append("0")
        else:
            digits = "".join(c if c.isdigit() else str(rng.integers(10)) for c in hexa[:12]).rstrip("0").ljust(2, "0")
            data.append(f"{digits[0]},{digits[1:]}E+023"), ids.append("")
    return data, ids


Table = dict  # column name -> numpy array, all of one length: cheaper than DataFrames on small chunks


def _take(table: Table, rows) -> Table:
    return {name: col[rows] for name, col in table.items()}


def _concat(tables: Sequence[Table]) -> Table:
    return {name: np.concatenate([t[name] for t in tables]) for name in tables[0]}


def _month_frame(spec: StationSpec, st: _Station, year: int, month: int) -> Table:
    """All rows of one calendar month of a station, quirks applied (before the span cut)."""
    m0, m1 = _minutes(datetime(year, month, 1, tzinfo=UTC)), _minutes(_month_after(year, month))
    slots = np.arange(m0, m1, spec.interval_minutes, dtype=np.int64)
    n = slots.size
    rng = np.random.default_rng([spec.seed, year, month, 7201])
    q = np.random.default_rng([spec.seed, year, month, 7202])
    table: Table = {
        "slot": slots, "ts": slots.copy(), "sensor": np.full(n, spec.sensor_id, dtype=np.int64),
        "kind": np.full(n, "ok", dtype=object), **_physics(spec, st, n, rng, year, month),
        "junk_data": np.full(n, "", dtype=object),
    }
    keep = ~(_in_periods(slots, spec.degraded) & (rng.uniform(size=n) > spec.interval_minutes / 1440))
    if spec.quirks:
        per_hour = max(1, 60 // spec.interval_minutes)
        keep &= ~_runs(q, n, 1 + q.poisson(1.5), per_hour, 12 * per_hour)  # holes of hours
        keep &= ~_runs(q, n, 1, 24 * per_hour, 60 * per_hour)  # a hole of days
        if month == 10:  # the real 2-hour hole at the October DST change
            dst = _minutes(datetime.combine(_last_sunday_of_october(year), datetime.min.time(), UTC))
            keep &= ~((slots >= dst) & (slots < dst + 120))
    table = _take(table, keep)
    if spec.quirks and keep.sum() >= 50:
        table = _apply_quirks(table, q)
    return table


def _apply_quirks(table: Table, q: np.random.Generator) -> Table:
    """Sentinels, duplicates, foreign rows, junk and corrupted dates, at rates seen in real exports."""
    n = table["slot"].size
    kind = table["kind"]
    day = table["slot"] // 1440
    zero = ((day == q.choice(day)) & (q.uniform(size=n) < 0.3)) | (q.uniform(size=n) < 0.002)
    zero[q.integers(n)] = True
    kind[zero] = "zero"
    for name in _VALUES:
        table[name][zero] = 0
    table["t10"][zero] = -500
    no_p = (_runs(q, n, 1 + q.poisson(1.0), 1, max(1, min(40, n // 20))) | (q.uniform(size=n) < 0.003)) & (kind == "ok")
    kind[no_p] = "no_pressure"
    table["press"][no_p] = 0

    ok = np.flatnonzero(kind == "ok")
    if ok.size < 5:
        return table
    fut = q.choice(ok)
    kind[fut] = "future"
    moment = datetime(2019 + int(q.integers(8, 16)), int(q.integers(1, 13)), int(q.integers(1, 29)), tzinfo=UTC)
    table["ts"][fut] = _minutes(moment) + table["slot"][fut] % 1440
    ok = np.flatnonzero(kind == "ok")

    dup = _take(table, q.choice(ok, 1 + q.poisson(1.5), replace=False))
    k = dup["slot"].size
    dup["kind"][:] = "duplicate"
    dup["t10"] += q.choice([-4, -3, -2, -1, 1, 2, 3, 4, 5], k)
    dup["hum"] = np.clip(dup["hum"] + q.integers(-2, 3, k), 12, 98)
    dup["wdir"] = np.where(dup["wdir"] > 0, np.mod(dup["wdir"] + 2 * q.integers(-3, 4, k), 360), 0)

    sub = _take(table, [q.choice(ok)])
    sub["kind"][:] = "sous_station"
    for name in ("rain", "wdir", "wind", "press", "gsec", "gust", "r1"):
        sub[name][:] = 0
    sub["t10"] += q.integers(-15, 16)
    sub["hum"] = np.clip(sub["hum"] + q.integers(-6, 7), 12, 98)

    start = int(q.integers(0, n - 16))
    block = np.arange(start, start + int(q.integers(4, 17)))
    other = _take(table, block[np.isin(kind[block], ["ok", "no_pressure"])])
    other["kind"][:] = "other_sensor"
    other["sensor"][:] = 1
    other["t10"] += int(q.integers(-12, 13))
    other["hum"] = np.clip(other["hum"] + int(q.integers(-5, 6)), 12, 98)
    other["press"] = np.where(other["press"] > 0, other["press"] + int(q.integers(-2, 3)), 0)

    junk = _take(table, q.choice(n, 1 + q.poisson(0.8)))
    junk["kind"][:] = "junk"
    payloads, _ = encode_payloads(_payload_fields(junk))
    data, ids = _junk_data(q, payloads)
    junk["junk_data"] = np.array(data, dtype=object)
    junk["sensor"] = np.array([int(i) if i else -1 for i in ids], dtype=np.int64)
    return _concat([table, dup, sub, other, junk])


# --------------------------------------------------------------------------- generation
def generate_frame(spec: StationSpec) -> pd.DataFrame:
    """The numeric truth of a station dataset, one row per exported line.

    Columns: ``slot`` (epoch minutes of the message's real slot), ``ts`` (epoch minutes shown in
    ``heure_de_paris``; differs only for ``future`` rows), ``sensor``, ``kind`` (one of KINDS),
    the encoded values ``t10`` (°C × 10), ``hum``, ``rain`` and ``r1`` (tips), ``wdir`` (degrees),
    ``wind``, ``gust`` (km/h), ``gsec`` (0–15), ``press`` (hPa − 900, 0 = missing), and ``junk_data``.
    """
    st = _Station(spec)
    months, (y, m) = [], (spec.start.year, spec.start.month)
    while datetime(y, m, 1, tzinfo=UTC) < spec.end:
        months.append(_month_frame(spec, st, y, m))
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    table = _concat(months)
    slot = table["slot"]
    inside = (slot >= _minutes(spec.start)) & (slot < _minutes(spec.end)) & ~_in_periods(slot, spec.outages)
    rows = np.flatnonzero(inside)
    if spec.quirks:
        rows = rows[np.random.default_rng([spec.seed, 7301]).permutation(rows.size)]
    return pd.DataFrame(_take(table, rows))


def _temperature_bits(t10: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    magnitude = np.abs(t10)
    return np.where(t10 < 0, 50 - magnitude // 10, 50 + magnitude // 10), magnitude % 10


def _payload_fields(table: Table | pd.DataFrame) -> dict[str, np.ndarray]:
    col = {name: np.asarray(table[name]) for name in ("ts", "sensor", "t10", "hum", "rain", "wdir", "wind",
                                                       "press", "gsec", "gust", "r1")}
    idx = pd.DatetimeIndex(col["ts"].astype("datetime64[m]"))
    ti, tt = _temperature_bits(col["t10"])
    return {
        "id": np.maximum(col["sensor"], 0), "month": idx.month.to_numpy(), "day": idx.day.to_numpy(),
        "year": idx.year.to_numpy() - 2019, "message": (col["ts"] % 1440) // 15 + 1,
        "temp_int": ti, "temp_tenths": tt, "humidity": col["hum"], "rain_tips": col["rain"],
        "wind_dir_half": col["wdir"] // 2, "wind": col["wind"], "pressure": col["press"],
        "gust_sector": col["gsec"], "gust": col["gust"], "rain_1min_tips": col["r1"],
    }


def _lookup(strings: list[str]) -> np.ndarray:
    return np.array(strings, dtype=object)


_INT_STR = _lookup([str(i) for i in range(512)])
_TIPS_STR = _lookup([repr(i * 0.2) for i in range(128)])  # 3 tips -> '0.6000000000000001'
_SECTOR_DEG = _lookup([repr(i * 22.5) for i in range(16)])
_TEMP_STR = _lookup([repr(i / 10) for i in range(-500, 1000)])


def format_rows(frame: pd.DataFrame, schema_fields: int = 15) -> pd.DataFrame:
    """Render a generate_frame() result as the export's text fields (columns in schema order)."""
    kind = frame["kind"].to_numpy()
    junk = kind == "junk"
    payload, low = encode_payloads(_payload_fields(frame))
    ts = frame["ts"].to_numpy().astype("datetime64[m]")
    clock = np.datetime_as_string(ts, unit="m").astype(object) + ":00"
    iso = clock + "+00:00"
    t10 = frame["t10"].to_numpy()
    press = frame["press"].to_numpy()
    ints = {c: _INT_STR[frame[c].to_numpy()] for c in ["hum", "gsec", "wdir", "wind", "gust", "rain", "r1"]}
    out = {
        "data": np.where(junk, frame["junk_data"].to_numpy(), payload),
        "id": _INT_STR[np.maximum(frame["sensor"].to_numpy(), 0)],
        "humidite": ints["hum"],
        "direction_du_vecteur_de_vent_max": ints["gsec"],
        "pluie_intensite_max": _TIPS_STR[np.minimum(frame["r1"].to_numpy(), 127)],
        "pression": np.where(press == 0, "90000", (press + 900) * 100).astype(str).astype(object),
        "direction_du_vecteur_vent_moyen": _INT_STR[frame["wdir"].to_numpy()],
        "type_de_station": np.where(kind == "sous_station", "sous station", "ISS").astype(object),
        "pluie": _TIPS_STR[frame["rain"].to_numpy()],
        "direction_du_vecteur_de_vent_max_en_degres": _SECTOR_DEG[frame["gsec"].to_numpy()],
        "force_moyenne_du_vecteur_vent": ints["wind"],
        "force_rafale_max": ints["gust"],
        "temperature_en_degre_c": _TEMP_STR[t10 + 500],
        "heure_de_paris": iso,
        "heure_utc": iso,
    }
    if schema_fields == 39:
        idx = pd.DatetimeIndex(ts)
        ti, tt = _temperature_bits(t10)
        paris = idx.tz_localize(UTC).tz_convert("Europe/Paris").tz_localize(None)
        offset = np.where((paris - idx) == pd.Timedelta(hours=2), "+02:00", "+01:00").astype(object)
        year = idx.year.to_numpy()
        day_s, month_s, year_s = _INT_STR[idx.day.to_numpy()], _INT_STR[idx.month.to_numpy()], year.astype(str).astype(object)
        hour_s, minute_s = _INT_STR[idx.hour.to_numpy()], _INT_STR[idx.minute.to_numpy()]
        out.update({
            "mois": month_s, "jour": day_s, "annee": _INT_STR[year - 2019],
            "numero_de_message": _INT_STR[(frame["ts"].to_numpy() % 1440) // 15 + 1],
            "temperature_partie_entiere": _INT_STR[ti], "temperature_partie_decimale": _INT_STR[tt],
            "pluie_en_augets": ints["rain"], "direction_du_vecteur_moyen_de_vent": _INT_STR[frame["wdir"].to_numpy() // 2],
            "force_moyenne_du_vecteur_de_vent": ints["wind"], "pression_a_decoder": _INT_STR[press],
            "force_du_vecteur_de_vent_max": ints["gust"], "pluie_la_plus_intense_durant_1_min": ints["r1"],
            "type_station": np.where(kind == "sous_station", "1", "0").astype(object),
            "heure": hour_s, "annee_reelle": year_s, "minute": minute_s,
            "temperature_decodee": (ti - 50).astype(str).astype(object),
            "jour_mois": day_s + "/" + month_s, "dd_mm_yy_utc": day_s + "/" + month_s + "/" + year_s,
            "hh_mm_utc": hour_s + ":" + minute_s, "dd_mm_yy_hh_mm": clock,
            "false_message": low.astype(str).astype(object), "dd_mm_yy_hh_mm_utc": iso,
            "heure_paris_dd_mm_yy_hh_mm": clock + offset,
        })
    names = [name for name, _, _ in schema(schema_fields)]
    rows = pd.DataFrame({name: out[name] for name in names})
    if junk.any():
        rows.loc[junk, names[1:]] = ""
        rows.loc[junk, "id"] = np.where(frame.loc[junk, "sensor"] == 0, "0", "")
    return rows


def generate_rows(spec: StationSpec) -> pd.DataFrame:
    """The dataset's rows as the portal's CSV holds them: a DataFrame of strings, schema order."""
    return format_rows(generate_frame(spec), spec.schema_fields)


def _text_column(values: pd.Series) -> list[str]:
    if pd.api.types.infer_dtype(values, skipna=False) == "string":
        return values.tolist()
    return ["" if v is None or (isinstance(v, float) and math.isnan(v)) else str(v) for v in values]


def render_lines(rows: pd.DataFrame | Sequence[Mapping[str, str]], fields: Sequence[str] | None = None,
                 delimiter: str = ";") -> list[bytes]:
    """Each row as one CSV line (no terminator), fields joined in ``fields`` order."""
    frame = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows), dtype=object)
    names = list(fields) if fields is not None else list(frame.columns)
    if frame.empty:
        return []
    columns = [_text_column(frame[name]) for name in names]
    return "\n".join(map(delimiter.join, zip(*columns))).encode().split(b"\n")


def render_csv(rows: pd.DataFrame | Sequence[Mapping[str, str]], fields: Sequence[str] | None = None) -> bytes:
    """A whole export body as the portal writes it: ``;``, LF, a header of field names."""
    frame = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows), dtype=object)
    names = list(fields) if fields is not None else list(frame.columns)
    lines = [";".join(names).encode(), *render_lines(frame, names)]
    return b"\n".join(lines) + b"\n"


# --------------------------------------------------------------------------- network
# (commune slug, place slug, ville, lat, lon, lcz): made-up sites, none of them a real station.
_SITES = [
    ("balma", "gare", "Balma", 43.611, 1.499, 6), ("aucamville", "mairie", "Aucamville", 43.670, 1.429, 6),
    ("launaguet", "ecole", "Launaguet", 43.673, 1.457, 6), ("saint-orens", "lycee", "Saint-Orens-de-Gameville", 43.553, 1.534, 6),
    ("quint-fonsegrives", "stade", "Quint-Fonsegrives", 43.584, 1.531, 9), ("ramonville", "canal", "Ramonville-Saint-Agne", 43.546, 1.474, 6),
    ("castanet", "centre", "Castanet-Tolosan", 43.516, 1.498, 6), ("labege", "innopole", "Labège", 43.541, 1.512, 8),
    ("beauzelle", "parc", "Beauzelle", 43.668, 1.373, 12), ("aussonne", "ecole", "Aussonne", 43.682, 1.322, 9),
    ("seilh", "golf", "Seilh", 43.693, 1.355, 14), ("cornebarrieu", "mairie", "Cornebarrieu", 43.649, 1.326, 9),
    ("villeneuve-tolosane", "ecole", "Villeneuve-Tolosane", 43.525, 1.345, 6), ("portet", "gare", "Portet-sur-Garonne", 43.523, 1.404, 8),
    ("saint-jean", "mairie", "Saint-Jean", 43.665, 1.503, 6), ("rouffiac", "ecole", "Rouffiac-Tolosan", 43.664, 1.524, 9),
    ("flourens", "bois", "Flourens", 43.596, 1.548, 11), ("dremil-lafage", "ecole", "Drémil-Lafage", 43.594, 1.545, 9),
    ("pin-balma", "mairie", "Pin-Balma", 43.628, 1.537, 9), ("gagnac", "berges", "Gagnac-sur-Garonne", 43.699, 1.375, 14),
    ("lespinasse", "ecole", "Lespinasse", 43.698, 1.386, 9), ("bruguieres", "stade", "Bruguières", 43.697, 1.410, 9),
    ("gratentour", "mairie", "Gratentour", 43.696, 1.432, 9), ("saint-alban", "ecole", "Saint-Alban", 43.690, 1.412, 6),
    ("fonbeauzard", "mairie", "Fonbeauzard", 43.679, 1.434, 6), ("aigrefeuille", "village", "Aigrefeuille", 43.569, 1.546, 9),
    ("beaupuy", "ecole", "Beaupuy", 43.648, 1.546, 9), ("toulouse", "minimes", "Toulouse", 43.620, 1.432, 3),
    ("toulouse", "saint-agne", "Toulouse", 43.580, 1.454, 3), ("toulouse", "rangueil", "Toulouse", 43.567, 1.461, 5),
    ("toulouse", "jolimont", "Toulouse", 43.612, 1.468, 3), ("toulouse", "borderouge", "Toulouse", 43.641, 1.453, 5),
    ("toulouse", "lalande", "Toulouse", 43.652, 1.432, 6), ("toulouse", "croix-daurade", "Toulouse", 43.637, 1.470, 6),
    ("toulouse", "bonnefoy", "Toulouse", 43.617, 1.461, 3), ("toulouse", "patte-d-oie", "Toulouse", 43.600, 1.419, 2),
    ("toulouse", "mirail-universite", "Toulouse", 43.578, 1.404, 5), ("toulouse", "arenes", "Toulouse", 43.593, 1.418, 5),
    ("toulouse", "sept-deniers", "Toulouse", 43.626, 1.414, 6), ("toulouse", "ginestous", "Toulouse", 43.658, 1.406, 14),
    ("toulouse", "bagatelle", "Toulouse", 43.581, 1.415, 5), ("toulouse", "guilhemery", "Toulouse", 43.599, 1.472, 3),
    ("toulouse", "capitole", "Toulouse", 43.604, 1.443, 2), ("toulouse", "saint-michel", "Toulouse", 43.589, 1.447, 2),
    ("toulouse", "bois-de-limayrac", "Toulouse", 43.593, 1.477, 11), ("toulouse", "prairie-des-filtres", "Toulouse", 43.597, 1.436, 12),
    ("toulouse", "zi-montredon", "Toulouse", 43.623, 1.498, 8), ("toulouse", "port-saint-sauveur", "Toulouse", 43.596, 1.454, 2),
    ("toulouse", "les-izards", "Toulouse", 43.650, 1.442, 5), ("toulouse", "barriere-de-paris", "Toulouse", 43.628, 1.433, 2),
    ("toulouse", "la-cepiere", "Toulouse", 43.591, 1.403, 8), ("toulouse", "jardin-raymond-vi", "Toulouse", 43.601, 1.434, 11),
    ("toulouse", "empalot-garonne", "Toulouse", 43.580, 1.441, 12), ("toulouse", "parc-des-sports", "Toulouse", 43.575, 1.418, 14),
    ("toulouse", "lycee-bellevue", "Toulouse", 43.569, 1.447, 5), ("toulouse", "chateau-de-l-hers", "Toulouse", 43.606, 1.487, 6),
    ("toulouse", "saint-simon", "Toulouse", 43.557, 1.378, 9), ("toulouse", "ancely", "Toulouse", 43.612, 1.398, 5),
]
# Numbers absent from the real network first (70-99, then the real gaps), then 3 digits.
_NUMBERS = list(range(70, 100)) + [16, 29, 35, 43, 44, 46, 52, 54, 55, 56, 57, 59, 60, 64] + list(range(100, 128))


def _archive_boundary(start: datetime, end: datetime) -> datetime | None:
    """Where archives end and the live dataset begins: 1 January of the last year, else mid-span."""
    new_year = datetime(end.year if end > datetime(end.year, 1, 1, tzinfo=UTC) else end.year - 1, 1, 1, tzinfo=UTC)
    if start < new_year:
        return new_year
    middle = start + (end - start) / 2
    boundary = datetime(middle.year, middle.month, 1, tzinfo=UTC)
    return boundary if start < boundary < end else None


def split_archives(spec: StationSpec, boundary: datetime, style: str = "hyphen") -> list[StationSpec]:
    """Split a station into yearly archive datasets before ``boundary`` and the live one after.

    ``style`` names archives like the portal's inconsistent ones: ``hyphen`` (``…-archive-2019``),
    ``nohyphen`` (``…-archive2019``) or ``truncated`` (last word cut short, ``…-equestr-archive-2019``).
    The union of the pieces' rows is exactly the rows of ``spec``.
    """
    boundary = _utc(boundary)
    base = spec.dataset_id
    if style == "truncated" and len(base.rsplit("-", 1)[-1]) > 3:
        base = base[:-1]
    suffix = {"hyphen": "-archive-{}", "nohyphen": "-archive{}", "truncated": "-archive-{}"}[style]
    pieces, cursor = [], spec.start
    while cursor < min(boundary, spec.end):
        stop = min(boundary, spec.end, datetime(cursor.year + 1, 1, 1, tzinfo=UTC))
        pieces.append(replace(spec, dataset_id=base + suffix.format(cursor.year), start=cursor, end=stop))
        cursor = stop
    if boundary < spec.end:
        pieces.append(replace(spec, start=max(boundary, spec.start)))
    return pieces


def default_network(n_stations: int, start: datetime | date | str, end: datetime | date | str,
                    seed: int = 0, quirks: bool = True) -> list[StationSpec]:
    """A plausible made-up network around Toulouse: live datasets plus some archive datasets.

    Mixes 15- and 39-field schemas and local climate zones; with ``quirks`` it also has a late
    installation, a long outage, a degraded period, an hourly reporter and two datasets sharing a
    number prefix (the second one's sensor id differs from its prefix, like the real portal's 05).
    All stations share the regional weather of ``seed``.
    """
    if not 1 <= n_stations <= len(_SITES):
        raise ValueError(f"n_stations must be between 1 and {len(_SITES)}")
    start, end = _utc(start), _utc(end)
    rng = np.random.default_rng([seed, 7401])
    sites = [_SITES[i] for i in rng.permutation(len(_SITES))[:n_stations]]
    span = end - start
    specs: list[StationSpec] = []
    for i, (commune, place, ville, lat, lon, lcz) in enumerate(sites):
        number = _NUMBERS[i]
        prefix = _NUMBERS[i - 1] if quirks and i == 5 else number
        spec = StationSpec(
            dataset_id=f"{prefix:02d}-station-meteo-{commune}-{place}",
            sensor_id=number, start=start, end=end, seed=seed * 1000 + number,
            schema_fields=39 if (i % 4 == 1 or rng.uniform() < 0.1) else 15,
            lat=round(lat + rng.uniform(-0.004, 0.004), 7), lon=round(lon + rng.uniform(-0.004, 0.004), 7),
            altitude=round(float(rng.uniform(135, 175) + (60 if lcz in (11, 14) and rng.uniform() < 0.3 else 0)), 2),
            lcz=lcz, quirks=quirks, weather_seed=seed, ville=ville,
        )
        if quirks and i == 2:
            spec = replace(spec, start=_day(start + span / 3))
        if quirks and i == 3:
            spec = replace(spec, outages=((_day(start + span / 4), _day(start + span / 2)),))
        if quirks and i == 4:
            spec = replace(spec, degraded=((_day(start + span / 2), _day(start + 3 * span / 4)),))
        if quirks and i == 6:
            spec = replace(spec, interval_minutes=60)
        boundary = _archive_boundary(spec.start, spec.end)
        if i % 3 == 0 and boundary is not None:
            specs.extend(split_archives(spec, boundary, ["hyphen", "nohyphen", "truncated"][(i // 3) % 3]))
        else:
            specs.append(spec)
    return specs


def _day(moment: datetime) -> datetime:
    return datetime(moment.year, moment.month, moment.day, tzinfo=UTC)


_ARCHIVE_RE = re.compile(r"-archive-?\d{4}$")


def is_archive(dataset_id: str) -> bool:
    return bool(_ARCHIVE_RE.search(dataset_id))


def station_catalogue(specs: Sequence[StationSpec], seed: int = 0, quirks: bool = True) -> list[dict[str, str]]:
    """Rows of ``stations-meteo-en-place`` for the live datasets of ``specs``.

    With ``quirks`` it mimics the real catalogue's mismatches: one ``id_nom`` longer than its
    dataset id, one live station missing, one row for a station that has no dataset.
    """
    rng = np.random.default_rng([seed, 7501])
    first_start: dict[int, datetime] = {}
    for spec in specs:
        first_start[spec.sensor_id] = min(first_start.get(spec.sensor_id, spec.start), spec.start)
    live = [s for s in specs if not is_archive(s.dataset_id)]
    rows = []
    for i, spec in enumerate(live):
        if quirks and len(live) > 2 and i == len(live) - 1:
            continue
        urban = spec.lcz in _URBAN_LCZ
        rows.append({
            "id_nom": spec.dataset_id + ("-nord" if quirks and i == 1 else ""),
            "id_numero": str(spec.sensor_id),
            "longitude": repr(spec.lon), "latitude": repr(spec.lat), "altitude": repr(spec.altitude),
            "ville": spec.ville, "installation": first_start[spec.sensor_id].date().isoformat(),
            "type_stati": "ISS", "lcz": str(spec.lcz), "emission": "O" if rng.uniform() < 0.3 else "N",
            "bati": f"{rng.uniform(40000, 90000) if urban else rng.uniform(2000, 30000):.4f}",
            "veg_haute": f"{rng.uniform(5000, 30000) if urban else rng.uniform(30000, 120000):.4f}",
            "geopoint": f"{spec.lat!r}, {spec.lon!r}",
        })
    if quirks and live:
        rows.append({
            "id_nom": "127-station-meteo-toulouse-depot-demontee", "id_numero": "127",
            "longitude": "1.4612", "latitude": "43.6233", "altitude": "141.0", "ville": "Toulouse",
            "installation": "2019-06-01", "type_stati": "TH", "lcz": "8", "emission": "N",
            "bati": "51234.1200", "veg_haute": "8123.4400", "geopoint": "43.6233, 1.4612",
        })
    return rows
