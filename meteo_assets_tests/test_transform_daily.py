"""Daily table: Paris civil days (DST included), completeness, mean wind direction and the
Météo-France windows, on real exports and on realistic hand-built days."""

from __future__ import annotations

import csv
import gzip
import io
import math
from datetime import date, datetime, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pytest

from meteo_assets.transform.contract import paris_wall_time
from meteo_assets.transform import (
    CLEAN_COLUMNS,
    DAILY_COLUMNS,
    PARIS,
    ContractSettings,
    clean_observations,
    daily_summary,
    day_window_utc,
    empty_clean_frame,
    pandas_dtypes,
    parse_export,
    round_half_away_from_zero,
    slots_expected,
)
from meteo_assets_tests.paths import DST_CHANGE, STATIONS, requires_research_data


NOW = datetime(2020, 11, 17, tzinfo=timezone.utc)
STATION = "st42_toulouse_parc_compans_cafarelli"
SUMMER_DAY = date(2020, 7, 15)  # Paris day = 2020-07-14T22:00Z – 2020-07-15T22:00Z


def csv_rows(payload: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(payload.decode("utf-8-sig"), newline=""), delimiter=";"))


def paris_day_bounds(day: date) -> tuple[datetime, datetime]:
    """Independent of the code under test: zoneinfo arithmetic only."""
    paris = ZoneInfo("Europe/Paris")
    start = datetime(day.year, day.month, day.day, tzinfo=paris)
    end = start.replace(tzinfo=None) + timedelta(days=1)
    return start.astimezone(timezone.utc), end.replace(tzinfo=paris).astimezone(timezone.utc)


def rows_between(
    rows: list[dict[str, str]], start: datetime, end: datetime
) -> list[dict[str, str]]:
    return [
        row
        for row in rows
        if row["heure_de_paris"] and start <= datetime.fromisoformat(row["heure_de_paris"]) < end
    ]


def decimal_round(value: Decimal, step: str) -> float:
    return float(value.quantize(Decimal(step), rounding=ROUND_HALF_UP))


def clean_slots(start: str, end: str, **columns) -> pd.DataFrame:
    """A clean table of every 15-minute slot in [start, end) UTC with plausible summer values;
    `columns` overrides a variable with a scalar or one value per slot."""
    observed_at = pd.date_range(start, end, freq="15min", inclusive="left", tz="UTC")
    values = {
        "temperature_c": 22.4,
        "humidity_pct": 61.0,
        "pressure_hpa": 1003.0,
        "rain_mm": 0.0,
        "rain_intensity_max_mm": 0.0,
        "wind_speed_kmh": 4.0,
        "wind_dir_deg": 292.0,
        "gust_speed_kmh": 11.0,
        "gust_dir_deg": 292.5,
        **columns,
    }
    frame = pd.DataFrame(
        {
            "station": STATION,
            "observed_at": observed_at,
            "local_time": observed_at.tz_convert(PARIS).tz_localize(None),
            **values,
            "qc_flags": "",
        }
    )
    return frame[list(CLEAN_COLUMNS)].astype(pandas_dtypes(CLEAN_COLUMNS))


def summer_day(**columns) -> pd.DataFrame:
    return clean_slots("2020-07-14T22:00Z", "2020-07-15T22:00Z", **columns)


def one_day(clean: pd.DataFrame, day: date = SUMMER_DAY, **options) -> pd.Series:
    return daily_summary(clean, station=STATION, days=[day], **options).iloc[0]


@pytest.mark.parametrize(
    ("day", "expected", "start", "end"),
    [
        (date(2020, 3, 29), 92, "2020-03-28T23:00Z", "2020-03-29T22:00Z"),
        (date(2020, 10, 25), 100, "2020-10-24T22:00Z", "2020-10-25T23:00Z"),
        (date(2020, 7, 15), 96, "2020-07-14T22:00Z", "2020-07-15T22:00Z"),
        (date(2020, 1, 15), 96, "2020-01-14T23:00Z", "2020-01-15T23:00Z"),
    ],
)
def test_paris_civil_day_windows_and_slot_counts(day, expected, start, end):
    assert slots_expected(day) == expected
    assert day_window_utc(day) == (
        pd.Timestamp(start).to_pydatetime(),
        pd.Timestamp(end).to_pydatetime(),
    )
    assert day_window_utc(day) == paris_day_bounds(day)


@requires_research_data
def test_fall_back_day_with_its_real_two_hour_hole():
    payload = DST_CHANGE.read_bytes()
    rows = csv_rows(payload)
    day_rows = rows_between(rows, *paris_day_bounds(date(2020, 10, 25)))
    hole = rows_between(
        rows,
        datetime(2020, 10, 25, 0, tzinfo=timezone.utc),
        datetime(2020, 10, 25, 2, tzinfo=timezone.utc),
    )
    temperatures = [Decimal(row["temperature_en_degre_c"]) for row in day_rows]
    assert hole == [] and len(day_rows) == 92  # the file has no sentinel nor duplicate that day

    clean = clean_observations(
        parse_export(payload).frame, station=STATION, sensor_id=42, now=NOW
    ).frame
    daily = one_day(clean, date(2020, 10, 25))

    assert (daily["slots_expected"], daily["slots_reported"]) == (100, 92)
    assert daily["coverage_temperature"] == daily["coverage_wind"] == 0.92
    assert daily["temperature_min_c"] == float(min(temperatures))
    assert daily["temperature_max_c"] == float(max(temperatures))
    # 1239.7 / 92 = 13.475 exactly: a tie, which float noise must not turn into 13.47
    assert (
        daily["temperature_mean_c"]
        == decimal_round(sum(temperatures) / len(temperatures), "0.01")
        == 13.48
    )
    assert daily["rain_sum_mm"] == decimal_round(
        sum(Decimal(row["pluie"]) for row in day_rows), "0.1"
    )
    pressures = [Decimal(row["pression"]) / 100 for row in day_rows]
    assert daily["pressure_mean_hpa"] == decimal_round(sum(pressures) / len(pressures), "0.01")


@requires_research_data
def test_fall_back_day_meteo_france_windows_from_the_raw_rows():
    payload = DST_CHANGE.read_bytes()
    rows = csv_rows(payload)
    day = datetime(2020, 10, 25, tzinfo=timezone.utc)
    tn_rows = rows_between(rows, day - timedelta(hours=6), day + timedelta(hours=18))
    tx_rows = rows_between(rows, day + timedelta(hours=6), day + timedelta(hours=30))
    assert len(tn_rows) == 96 - 8 and len(tx_rows) == 96  # the hole sits in the Tn window

    clean = clean_observations(
        parse_export(payload).frame, station=STATION, sensor_id=42, now=NOW
    ).frame
    daily = one_day(clean, date(2020, 10, 25))

    assert daily["tn_mf_c"] == min(float(row["temperature_en_degre_c"]) for row in tn_rows)
    assert daily["tx_mf_c"] == max(float(row["temperature_en_degre_c"]) for row in tx_rows)
    assert daily["rr_mf_mm"] == round(sum(float(row["pluie"]) for row in tx_rows), 1)


@requires_research_data
def test_spring_forward_day_on_a_real_station():
    payload = gzip.decompress((STATIONS / "17-station-meteo-fenouillet-foyer.csv.gz").read_bytes())
    day_rows = rows_between(csv_rows(payload), *paris_day_bounds(date(2020, 3, 29)))
    distinct_slots = {row["heure_de_paris"] for row in day_rows if row["id"] == "17"}

    clean = clean_observations(
        parse_export(payload).frame, station="st17_fenouillet_foyer", sensor_id=17, now=NOW
    ).frame
    daily = one_day(clean, date(2020, 3, 29))

    assert len(distinct_slots) == 92
    assert (daily["slots_expected"], daily["slots_reported"]) == (92, len(distinct_slots))
    assert (
        daily[[f"coverage_{v}" for v in ("temperature", "humidity", "rain", "wind")]].le(1.0).all()
    )
    assert daily["temperature_min_c"] <= daily["temperature_mean_c"] <= daily["temperature_max_c"]


@pytest.mark.parametrize(
    ("directions", "speeds", "expected"),
    [
        ([350.0, 10.0], [6.0, 6.0], 0.0),
        ([355.0, 345.0], [3.0, 3.0], 350.0),
        ([80.0, 100.0], [10.0, 10.0], 90.0),
        ([0.0, 90.0], [3.0, 1.0], round(math.degrees(math.atan2(1, 3)), 2)),
        ([270.0, 180.0], [5.0, 5.0], 225.0),
        ([359.999, 0.001], [2.0, 2.0], 0.0),
    ],
)
def test_mean_wind_direction_is_the_direction_of_the_mean_vector(directions, speeds, expected):
    repeats = 96 // len(directions)
    clean = summer_day(wind_dir_deg=directions * repeats, wind_speed_kmh=speeds * repeats)

    assert one_day(clean)["wind_dir_mean_deg"] == expected


def test_calm_slots_do_not_weigh_on_the_mean_direction_and_all_calm_is_null():
    speeds = [0.0] * 80 + [7.0] * 16
    directions = [0.0] * 80 + [135.0] * 16  # the sensor reports 0° when calm

    assert (
        one_day(summer_day(wind_speed_kmh=speeds, wind_dir_deg=directions))["wind_dir_mean_deg"]
        == 135.0
    )
    calm = one_day(summer_day(wind_speed_kmh=0.0, wind_dir_deg=0.0))
    assert math.isnan(calm["wind_dir_mean_deg"])
    assert calm["wind_speed_mean_kmh"] == 0.0


def test_opposite_winds_cancelling_out_have_no_direction():
    daily = one_day(summer_day(wind_dir_deg=[90.0, 270.0] * 48, wind_speed_kmh=5.0))

    assert math.isnan(daily["wind_dir_mean_deg"])


@pytest.mark.parametrize(
    ("day", "start", "end", "present", "complete"),
    [
        (SUMMER_DAY, "2020-07-14T22:00Z", "2020-07-15T22:00Z", 72, True),
        (SUMMER_DAY, "2020-07-14T22:00Z", "2020-07-15T22:00Z", 71, False),
        (date(2020, 3, 29), "2020-03-28T23:00Z", "2020-03-29T22:00Z", 69, True),
        (date(2020, 3, 29), "2020-03-28T23:00Z", "2020-03-29T22:00Z", 68, False),
        (date(2020, 10, 25), "2020-10-24T22:00Z", "2020-10-25T23:00Z", 75, True),
        (date(2020, 10, 25), "2020-10-24T22:00Z", "2020-10-25T23:00Z", 74, False),
    ],
)
def test_statistics_need_three_quarters_of_the_expected_slots(day, start, end, present, complete):
    clean = clean_slots(start, end)
    missing = np.arange(len(clean)) >= present
    for column in ("temperature_c", "humidity_pct", "pressure_hpa", "rain_mm", "wind_speed_kmh"):
        clean.loc[missing, column] = np.nan

    daily = one_day(clean, day)

    assert daily["slots_reported"] == len(clean)
    assert daily["coverage_temperature"] == present / slots_expected(day)
    statistics = [
        "temperature_mean_c", "temperature_min_c", "temperature_max_c", "humidity_mean_pct",
        "pressure_mean_hpa", "rain_sum_mm", "rain_intensity_max_mm", "wind_speed_mean_kmh",
        "gust_max_kmh", "wind_dir_mean_deg",
    ]  # fmt: skip
    assert daily[statistics].notna().all() == complete
    assert daily[statistics].isna().all() != complete


def test_each_statistic_follows_its_own_variable_coverage():
    clean = summer_day()
    clean.loc[clean.index[:30], "humidity_pct"] = np.nan  # 66/96 humidity
    clean.loc[clean.index[:25], "rain_mm"] = np.nan  # 71/96 rain

    daily = one_day(clean)

    assert math.isnan(daily["humidity_mean_pct"])
    assert math.isnan(daily["rain_sum_mm"]) and math.isnan(daily["rain_intensity_max_mm"])
    assert daily["temperature_mean_c"] == 22.4 and daily["pressure_mean_hpa"] == 1003.0
    assert daily["gust_max_kmh"] == 11.0 and daily["wind_dir_mean_deg"] == 292.0
    assert daily["coverage_humidity"] == 66 / 96 and daily["coverage_rain"] == 71 / 96


def test_all_zero_slots_are_reported_but_not_covered():
    clean = summer_day()
    sentinels = clean.index[:30]
    clean.loc[sentinels, list(CLEAN_COLUMNS)[3:-1]] = np.nan
    clean.loc[sentinels, "qc_flags"] = "all_zero_message"

    daily = one_day(clean)

    assert daily["slots_reported"] == 96
    assert daily["coverage_temperature"] == daily["coverage_wind"] == 66 / 96
    assert math.isnan(daily["temperature_mean_c"])


def test_rain_sums_lose_their_float_noise_and_means_are_rounded():
    rain = [0.2, 0.2, 0.2, 2.4000000000000004] + [0.0] * 92
    temperature = [18.0, 18.1, 18.1] * 32  # mean 18.0666…
    wind = [3.0] * 95 + [4.0]  # mean 3.0104…

    daily = one_day(summer_day(rain_mm=rain, temperature_c=temperature, wind_speed_kmh=wind))

    assert sum(rain) == 3.0000000000000004  # float noise of the plain sum
    assert daily["rain_sum_mm"] == 3.0
    assert daily["temperature_mean_c"] == 18.07
    assert daily["wind_speed_mean_kmh"] == 3.01
    assert daily["temperature_min_c"] == 18.0 and daily["temperature_max_c"] == 18.1


@pytest.mark.parametrize(
    ("value", "decimals", "expected"),
    [
        (1239.6999999999996 / 92, 2, 13.48),  # 13.475 as a float sum gives it: still a tie
        (2.4000000000000004, 1, 2.4),
        (-2.25, 1, -2.3),
        (-0.004, 2, 0.0),
        (359.996, 2, 360.0),
    ],
)
def test_rounding_decides_ties_on_the_decimal_value(value, decimals, expected):
    rounded = round_half_away_from_zero(pd.Series([value, np.nan]), decimals)

    assert rounded[0] == expected and math.copysign(1, rounded[0]) == math.copysign(1, expected)
    assert math.isnan(rounded[1])


def test_meteo_france_windows_reach_into_the_neighbouring_days():
    # D-1, D and D+1 (UTC, around the 2020-07-15 Paris day) at a steady 20 °C, no rain
    clean = clean_slots("2020-07-13T22:00Z", "2020-07-16T22:00Z", temperature_c=20.0)
    at = clean.set_index("observed_at").index

    def set_value(instant: str, column: str, value: float) -> None:
        clean.loc[at == pd.Timestamp(instant), column] = value

    set_value("2020-07-14T18:00Z", "temperature_c", 11.0)  # first Tn slot, day D-1 in Paris
    set_value("2020-07-14T17:45Z", "temperature_c", 9.0)  # just before the Tn window
    set_value("2020-07-15T18:00Z", "temperature_c", 10.0)  # Tn window is half-open
    set_value("2020-07-16T05:45Z", "temperature_c", 31.0)  # last Tx slot, day D+1 in Paris
    set_value("2020-07-16T06:00Z", "temperature_c", 33.0)  # first slot after the Tx window
    set_value("2020-07-15T05:45Z", "rain_mm", 5.0)  # before the RR window
    set_value("2020-07-15T06:00Z", "rain_mm", 0.2)
    set_value("2020-07-16T05:45Z", "rain_mm", 0.4)
    set_value("2020-07-16T06:00Z", "rain_mm", 7.0)  # after the RR window

    daily = one_day(clean)

    assert daily["tn_mf_c"] == 11.0
    assert daily["tx_mf_c"] == 31.0
    assert daily["rr_mf_mm"] == 0.6
    # the civil-day statistics see none of the neighbours' extremes
    assert daily["temperature_min_c"] == 10.0 and daily["temperature_max_c"] == 20.0
    assert daily["rain_sum_mm"] == 5.2


@pytest.mark.parametrize(("lost", "kept"), [(24, True), (25, False)])
def test_meteo_france_windows_need_72_of_their_96_slots(lost, kept):
    clean = clean_slots("2020-07-13T22:00Z", "2020-07-16T22:00Z", temperature_c=20.0, rain_mm=0.2)
    at = clean["observed_at"]
    tn_only = (at >= pd.Timestamp("2020-07-14T18:00Z")) & (at < pd.Timestamp("2020-07-15T06:00Z"))
    tx_only = (at >= pd.Timestamp("2020-07-15T18:00Z")) & (at < pd.Timestamp("2020-07-16T06:00Z"))
    clean.loc[clean.index[tn_only][:lost], "temperature_c"] = np.nan
    clean.loc[clean.index[tx_only][:lost], "rain_mm"] = np.nan

    daily = one_day(clean)

    assert (daily["tn_mf_c"] == 20.0) == kept
    assert daily["tx_mf_c"] == 20.0  # the lost temperatures are outside the Tx window
    assert (daily["rr_mf_mm"] == round((96 - lost) * 0.2, 1)) == kept
    assert math.isnan(daily["rr_mf_mm"]) != kept
    relaxed = one_day(clean, settings=ContractSettings(mf_min_coverage=0.7))
    assert relaxed["rr_mf_mm"] == round((96 - lost) * 0.2, 1)


def test_missing_neighbour_partitions_leave_the_meteo_france_columns_null():
    # only the Paris day: Tn sees 80 slots (22:00Z→18:00Z), Tx and RR only 64 (06:00Z→22:00Z)
    daily = one_day(summer_day())

    assert daily["tn_mf_c"] == 22.4
    assert math.isnan(daily["tx_mf_c"]) and math.isnan(daily["rr_mf_mm"])


def test_one_row_per_requested_day_even_without_data():
    days = [date(2020, 7, 16), SUMMER_DAY, date(2020, 3, 29), SUMMER_DAY]

    daily = daily_summary(summer_day(), station=STATION, days=days)

    assert daily["date"].tolist() == [
        pd.Timestamp("2020-03-29"),
        pd.Timestamp("2020-07-15"),
        pd.Timestamp("2020-07-16"),
    ]
    assert daily["slots_expected"].tolist() == [92, 96, 96]
    assert daily["slots_reported"].tolist() == [0, 96, 0]
    empty_day = daily.iloc[0]
    assert empty_day[[c for c in DAILY_COLUMNS if c.startswith("coverage_")]].eq(0.0).all()
    assert empty_day[["temperature_mean_c", "gust_max_kmh", "tn_mf_c", "rr_mf_mm"]].isna().all()
    assert list(daily.columns) == list(DAILY_COLUMNS)
    assert daily.dtypes.astype(str).to_dict() == pandas_dtypes(DAILY_COLUMNS)
    assert (daily["station"] == STATION).all()


def test_no_requested_day_and_no_data_give_typed_frames():
    assert daily_summary(summer_day(), station=STATION, days=[]).dtypes.astype(
        str
    ).to_dict() == pandas_dtypes(DAILY_COLUMNS)
    daily = daily_summary(empty_clean_frame(), station=STATION, days=[SUMMER_DAY])
    assert daily["slots_reported"].tolist() == [0]
    assert daily.dtypes.astype(str).to_dict() == pandas_dtypes(DAILY_COLUMNS)


@requires_research_data
@pytest.mark.parametrize(
    "station_file",
    sorted(path.name for path in STATIONS.glob("*.csv.gz")) if STATIONS.is_dir() else [],
)
def test_whole_station_history_gives_sane_daily_rows(station_file):
    payload = gzip.decompress((STATIONS / station_file).read_bytes())
    clean = clean_observations(
        parse_export(payload).frame, station=STATION, sensor_id=int(station_file[:2]), now=NOW
    ).frame
    first, last = clean["local_time"].min().date(), clean["local_time"].max().date()
    days = [first + timedelta(days=offset) for offset in range((last - first).days + 1)]

    daily = daily_summary(clean, station=STATION, days=days)

    assert len(daily) == len(days)
    assert daily["slots_reported"].sum() == len(clean)
    assert (clean["observed_at"].dt.floor("15min") == clean["observed_at"]).all()  # on the grid
    assert clean["observed_at"].is_unique
    assert (daily["slots_reported"] <= daily["slots_expected"]).all()
    coverages = daily[[c for c in DAILY_COLUMNS if c.startswith("coverage_")]]
    assert coverages.ge(0).all().all() and coverages.le(1).all().all()
    assert coverages.le(daily["slots_reported"] / daily["slots_expected"], axis=0).all().all()
    full = daily.dropna(subset=["temperature_mean_c"])
    assert len(full) > 0
    assert (full["temperature_min_c"] <= full["temperature_mean_c"] + 0.005).all()
    assert (full["temperature_mean_c"] <= full["temperature_max_c"] + 0.005).all()
    assert full["coverage_temperature"].ge(0.75).all()
    assert daily["humidity_mean_pct"].dropna().between(1, 100).all()
    assert daily["rain_sum_mm"].dropna().ge(0).all()
    assert daily["wind_dir_mean_deg"].dropna().between(0, 360, inclusive="left").all()
    assert daily["temperature_mean_c"].isna().eq(daily["coverage_temperature"] < 0.75).all()
    both = daily.dropna(subset=["tn_mf_c", "temperature_min_c"])
    assert both["tn_mf_c"].between(-30, 50).all()


@requires_research_data
def test_statistics_match_a_plain_groupby_whatever_the_row_order():
    """The per-day statistics against pandas' own groupby on a real year, rows shuffled (tables
    loaded back from DuckDB come in no particular order)."""
    station_file = sorted(STATIONS.glob("*.csv.gz"))[0]
    clean = clean_observations(parse_export(gzip.decompress(station_file.read_bytes())).frame,
                               station=STATION, sensor_id=int(station_file.name[:2]), now=NOW).frame
    first = clean["local_time"].min().date()
    days = [first + timedelta(days=offset) for offset in range(365)]
    shuffled = clean.sample(frac=1.0, random_state=7).reset_index(drop=True)

    daily = daily_summary(shuffled, station=STATION, days=days)

    pd.testing.assert_frame_equal(daily, daily_summary(clean, station=STATION, days=days))
    on_days = clean[clean["local_time"].dt.date.isin(days)]
    by_day = on_days.groupby(on_days["local_time"].dt.normalize().dt.tz_localize(None))
    expected = pd.DataFrame({"slots": by_day.size(), "tmin": by_day["temperature_c"].min(),
                             "tmax": by_day["temperature_c"].max(), "tmean": by_day["temperature_c"].mean(),
                             "rain": by_day["rain_mm"].sum(), "hum": by_day["humidity_pct"].mean()})
    got = daily.set_index(pd.DatetimeIndex(daily["date"])).reindex(expected.index)
    full = got["coverage_temperature"] >= 0.75
    assert full.sum() > 50
    assert (got["slots_reported"] == expected["slots"]).all()
    np.testing.assert_array_equal(got.loc[full, "temperature_min_c"], expected.loc[full, "tmin"])
    np.testing.assert_array_equal(got.loc[full, "temperature_max_c"], expected.loc[full, "tmax"])
    np.testing.assert_allclose(got.loc[full, "temperature_mean_c"], expected.loc[full, "tmean"], atol=0.005)
    rain = got["coverage_rain"] >= 0.75
    np.testing.assert_allclose(got.loc[rain, "rain_sum_mm"], expected.loc[rain, "rain"], atol=0.05)
    humid = got["coverage_humidity"] >= 0.75
    np.testing.assert_allclose(got.loc[humid, "humidity_mean_pct"], expected.loc[humid, "hum"], atol=0.005)


def test_paris_wall_time_is_the_zoneinfo_conversion_across_every_change_of_time():
    """The vectorised conversion gives what `ZoneInfo("Europe/Paris")` gives, slot by slot from
    2019 to 2027: eighteen changes of time, including the repeated hour of each October."""
    instants = pd.Series(pd.date_range("2019-01-01", "2027-12-31 23:45", freq="15min", tz="UTC"))
    expected = pd.Series([t.astimezone(ZoneInfo("Europe/Paris")).replace(tzinfo=None) for t in instants])
    wall = paris_wall_time(instants)
    assert wall.dt.tz is None
    pd.testing.assert_series_equal(wall, expected.astype(wall.dtype))
    assert wall.duplicated().sum() == 9 * 4  # each October's 02:00-02:45 is shown twice
