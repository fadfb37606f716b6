"""Contract rules 1–8 on real station-42 rows; expectations come from reading the files with
`csv` and explicit criteria, or from values checked by hand in the file."""

from __future__ import annotations

import csv
import gzip
import io
from datetime import date, datetime, timedelta, timezone

import pandas as pd
import pytest

from meteo_assets.transform import (
    CLEAN_COLUMNS,
    MEASUREMENT_COLUMNS,
    REJECTION_RULES,
    ContractSettings,
    clean_observations,
    day_window_utc,
    pandas_dtypes,
    parse_export,
)
from meteo_assets_tests.paths import ANOMALIES, DST_CHANGE, RESEARCH_DATA, STATIONS, requires_research_data



NOW = datetime(2020, 11, 17, tzinfo=timezone.utc)  # just after the exports were taken
STATION = "st42_toulouse_parc_compans_cafarelli"


def csv_rows(payload: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(payload.decode("utf-8-sig"), newline=""), delimiter=";"))


def to_payload(rows: list[dict[str, str]]) -> bytes:
    out = io.StringIO(newline="")
    writer = csv.DictWriter(out, fieldnames=list(rows[0]), delimiter=";", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue().encode()


def clean_rows(rows: list[dict[str, str]], sensor_id: int = 42, **options):
    parsed = parse_export(to_payload(rows)).frame
    return clean_observations(parsed, station=STATION, sensor_id=sensor_id, now=NOW, **options)


def is_all_zero(row: dict[str, str]) -> bool:
    return (row["temperature_en_degre_c"], row["pression"], row["humidite"]) == (
        "-50.0",
        "90000",
        "0",
    )


@pytest.fixture(scope="module")
def anomalies() -> list[dict[str, str]]:
    if not RESEARCH_DATA.is_dir():
        pytest.skip(f"real portal exports not found at {RESEARCH_DATA} (../shared/research-data)")
    return csv_rows(ANOMALIES.read_bytes())


@pytest.fixture(scope="module")
def anomalies_result():
    if not RESEARCH_DATA.is_dir():
        pytest.skip(f"real portal exports not found at {RESEARCH_DATA} (../shared/research-data)")
    parsed = parse_export(ANOMALIES.read_bytes()).frame
    return clean_observations(parsed, station=STATION, sensor_id=42, now=NOW)


def own_timestamped(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    return [row for row in rows if row["heure_de_paris"] and row["id"] == "42"]


def test_rejection_counts_per_rule_on_the_anomalies_file(anomalies, anomalies_result):
    own = own_timestamped(anomalies)
    expected = {
        "no_timestamp": sum(row["heure_de_paris"] == "" for row in anomalies),
        "other_sensor": sum(row["heure_de_paris"] != "" and row["id"] != "42" for row in anomalies),
        "sub_station": 0,
        "future": 0,
        "duplicate": len(own) - len({row["heure_de_paris"] for row in own}),
    }

    assert expected == {
        "no_timestamp": 20,
        "other_sensor": 25,
        "sub_station": 0,
        "future": 0,
        "duplicate": 2,
    }
    assert anomalies_result.rejected == expected
    assert anomalies_result.rows_in == len(anomalies) == 99
    assert len(anomalies_result.frame) == len({row["heure_de_paris"] for row in own}) == 52
    assert anomalies_result.outside_window == 0


def test_flag_counts_match_the_sentinels_of_the_anomalies_file(anomalies, anomalies_result):
    own = own_timestamped(anomalies)
    all_zero_slots = {row["heure_de_paris"] for row in own if is_all_zero(row)}
    pressure_only_slots = {
        row["heure_de_paris"] for row in own if row["pression"] == "90000" and not is_all_zero(row)
    }

    assert anomalies_result.flagged == {
        "all_zero_message": len(all_zero_slots),
        "pressure_missing": len(pressure_only_slots),
        "out_of_range": 0,
    }
    flags = anomalies_result.frame.set_index("observed_at")["qc_flags"]
    assert set(flags[flags == "all_zero_message"].index) == {
        pd.Timestamp(ts) for ts in all_zero_slots
    }
    assert set(flags[flags == "pressure_missing"].index) == {
        pd.Timestamp(ts) for ts in pressure_only_slots
    }
    assert (
        flags[~flags.index.isin([pd.Timestamp(ts) for ts in all_zero_slots | pressure_only_slots])]
        == ""
    ).all()


def test_all_zero_message_nulls_every_measurement_but_keeps_the_slot(anomalies_result):
    frame = anomalies_result.frame.set_index("observed_at")
    row = frame.loc[pd.Timestamp("2019-09-12T15:45:00Z")]  # -50.0 / 90000 / 0 in the file

    assert row["qc_flags"] == "all_zero_message"
    assert row[list(MEASUREMENT_COLUMNS)].isna().all()


def test_pressure_sentinel_nulls_only_the_pressure(anomalies_result):
    frame = anomalies_result.frame.set_index("observed_at")
    row = frame.loc[pd.Timestamp("2019-09-14T03:30:00Z")]  # 17.8 °C, 66 %, pression 90000

    assert row["qc_flags"] == "pressure_missing"
    assert pd.isna(row["pressure_hpa"])
    assert (row["temperature_c"], row["humidity_pct"], row["wind_speed_kmh"]) == (17.8, 66.0, 0.0)


def test_duplicate_tie_keeps_the_greatest_data_string(anomalies_result):
    frame = anomalies_result.frame.set_index("observed_at")

    # 550d0772614801e00d441800 > 550d0772614801c02d441800: wind 0 km/h from 60°, not 1 from 56°
    august = frame.loc[pd.Timestamp("2019-08-13T14:30:00Z")]
    assert (august["wind_speed_kmh"], august["wind_dir_deg"]) == (0.0, 60.0)
    # 553e14cfd27000000cc00000 > 553e14cfa67800000cc00000: 13.4 °C / 78 %, not 12.9 / 79
    september = frame.loc[pd.Timestamp("2020-09-30T09:15:00Z")]
    assert (september["temperature_c"], september["humidity_pct"]) == (13.4, 78.0)
    assert september["pressure_hpa"] == 1002.0


def test_duplicate_keeps_the_most_complete_row_before_the_data_string(anomalies):
    pair = [row for row in anomalies if row["heure_de_paris"] == "2020-09-30T09:15:00+00:00"]
    greater = max(pair, key=lambda row: row["data"])
    pair[pair.index(greater)] = {**greater, "pression": "90000"}  # its pressure goes missing

    result = clean_rows(pair)

    assert result.rejected["duplicate"] == 1
    kept = result.frame.iloc[0]
    assert (kept["temperature_c"], kept["pressure_hpa"], kept["qc_flags"]) == (12.9, 1002.0, "")


def test_rows_of_another_sensor_are_rejected_even_with_a_valid_payload(anomalies):
    sensor_one = [row for row in anomalies if row["id"] == "1"]

    result = clean_rows(sensor_one)
    as_sensor_one = clean_rows(sensor_one, sensor_id=1)

    assert result.rejected["other_sensor"] == len(sensor_one) == 25
    assert result.frame.empty
    assert len(as_sensor_one.frame) == len({row["heure_de_paris"] for row in sensor_one})


def test_rows_without_a_sensor_id_are_another_sensor(anomalies):
    own = own_timestamped(anomalies)[:4]
    rows = own[:2] + [{**row, "id": ""} for row in own[2:]]

    result = clean_rows(rows)

    assert result.rejected["other_sensor"] == 2
    assert len(result.frame) == 2


def test_sub_station_rows_are_rejected_whatever_their_case_and_spacing(anomalies):
    own = own_timestamped(anomalies)[:6]
    spellings = ["sous station", " Sous Station ", "SOUS STATION"]
    renamed = [{**row, "type_de_station": t} for row, t in zip(own[3:], spellings, strict=True)]
    rows = own[:3] + renamed

    result = clean_rows(rows)

    assert result.rejected["sub_station"] == 3
    assert len(result.frame) == 3


def test_rows_more_than_one_hour_ahead_of_the_run_are_rejected(anomalies):
    now = datetime(2020, 1, 7, 4, 0, tzinfo=timezone.utc)
    limit = now + timedelta(hours=1)
    own = own_timestamped(anomalies)
    expected = sum(datetime.fromisoformat(row["heure_de_paris"]) > limit for row in own)

    parsed = parse_export(ANOMALIES.read_bytes()).frame
    result = clean_observations(parsed, station=STATION, sensor_id=42, now=now)

    # 2020-01-07T05:30 (1 h 30 ahead) and the two 2020-09-30T09:15 rows
    assert expected == 3
    assert result.rejected["future"] == expected
    assert result.rejected["duplicate"] == 1  # only the August pair is left to deduplicate
    assert result.frame["observed_at"].max() <= pd.Timestamp(limit)


def test_exactly_one_hour_ahead_is_still_accepted(anomalies):
    row = own_timestamped(anomalies)[0]  # 2019-09-14T03:30Z
    parsed = parse_export(to_payload([row])).frame

    on_the_limit = clean_observations(
        parsed, station=STATION, sensor_id=42, now=datetime(2019, 9, 14, 2, 30, tzinfo=timezone.utc)
    )
    beyond = clean_observations(
        parsed, station=STATION, sensor_id=42, now=datetime(2019, 9, 14, 2, 29, tzinfo=timezone.utc)
    )

    assert (on_the_limit.rejected["future"], beyond.rejected["future"]) == (0, 1)


@requires_research_data
def test_real_out_of_range_readings_are_nulled_and_flagged():
    rows = csv_rows(
        gzip.decompress((STATIONS / "11-station-meteo-toulouse-soupetard.csv.gz").read_bytes())
    )
    # -50.0 °C with 70 % humidity: not an all-zero message, an impossible temperature
    row = next(row for row in rows if row["heure_de_paris"] == "2020-06-27T09:15:00+00:00")

    result = clean_rows([row], sensor_id=11)

    kept = result.frame.iloc[0]
    assert kept["qc_flags"] == "pressure_missing,out_of_range:temperature_c"
    assert pd.isna(kept["temperature_c"]) and pd.isna(kept["pressure_hpa"])
    assert kept["humidity_pct"] == 70.0
    assert result.flagged == {"all_zero_message": 0, "pressure_missing": 1, "out_of_range": 1}


@pytest.mark.parametrize(
    ("field", "raw", "column", "kept"),
    [
        ("temperature_en_degre_c", "50.0", "temperature_c", 50.0),
        ("temperature_en_degre_c", "50.1", "temperature_c", None),
        ("temperature_en_degre_c", "-30.0", "temperature_c", -30.0),
        ("temperature_en_degre_c", "-30.1", "temperature_c", None),
        ("humidite", "1", "humidity_pct", 1.0),
        ("humidite", "0", "humidity_pct", None),
        ("humidite", "101", "humidity_pct", None),
        ("pression", "108500", "pressure_hpa", 1085.0),
        ("pression", "108600", "pressure_hpa", None),
        ("pression", "86900", "pressure_hpa", None),
        ("force_moyenne_du_vecteur_vent", "251", "wind_speed_kmh", None),
        ("force_rafale_max", "250", "gust_speed_kmh", 250.0),
        ("force_rafale_max", "-1", "gust_speed_kmh", None),
        ("pluie", "50.0", "rain_mm", 50.0),
        ("pluie", "50.000000000000004", "rain_mm", 50.0),
        ("pluie", "50.2", "rain_mm", None),
        ("pluie", "-0.2", "rain_mm", None),
        ("pluie_intensite_max", "50.2", "rain_intensity_max_mm", None),
        ("direction_du_vecteur_vent_moyen", "360", "wind_dir_deg", 360.0),
        ("direction_du_vecteur_vent_moyen", "361", "wind_dir_deg", None),
        ("direction_du_vecteur_de_vent_max_en_degres", "-22.5", "gust_dir_deg", None),
    ],
)
def test_ranges_are_inclusive_and_checked_per_variable(anomalies, field, raw, column, kept):
    row = next(
        row for row in anomalies if row["data"] == "553e14cfd27000000cc00000"
    )  # a sound slot

    result = clean_rows([{**row, field: raw}])

    clean = result.frame.iloc[0]
    if kept is None:
        assert pd.isna(clean[column])
        assert clean["qc_flags"] == f"out_of_range:{column}"
        assert result.flagged["out_of_range"] == 1
    else:
        assert clean[column] == kept
        assert clean["qc_flags"] == ""
    others = [name for name in MEASUREMENT_COLUMNS if name != column]
    assert clean[others].notna().all()


def test_several_out_of_range_variables_are_all_listed(anomalies):
    row = next(row for row in anomalies if row["data"] == "553e14cfd27000000cc00000")

    result = clean_rows([{**row, "temperature_en_degre_c": "60.0", "humidite": "0"}])

    assert result.frame.loc[0, "qc_flags"] == "out_of_range:temperature_c,out_of_range:humidity_pct"
    assert result.flagged["out_of_range"] == 1


@requires_research_data
def test_units_hpa_and_rain_float_noise():
    rows = csv_rows(
        gzip.decompress((STATIONS / "58-station-meteo-toulouse-fondeyre.csv.gz").read_bytes())
    )
    row = next(row for row in rows if row["heure_de_paris"] == "2020-08-10T04:00:00+00:00")
    assert (row["pluie"], row["pression"]) == ("2.4000000000000004", "100300")

    kept = clean_rows([row], sensor_id=58).frame.iloc[0]

    assert kept["rain_mm"] == 2.4
    assert kept["rain_intensity_max_mm"] == 0.8
    assert kept["pressure_hpa"] == 1003.0
    assert kept["temperature_c"] == 24.2


@requires_research_data
def test_window_keeps_only_the_partition_and_counts_the_rest():
    payload = DST_CHANGE.read_bytes()
    start, end = day_window_utc(date(2020, 10, 25))
    stamps = [datetime.fromisoformat(row["heure_de_paris"]) for row in csv_rows(payload)]
    inside = sum(start <= stamp < end for stamp in stamps)

    result = clean_observations(
        parse_export(payload).frame, station=STATION, sensor_id=42, now=NOW, window=(start, end)
    )

    assert inside == 92  # 100 slots minus the real 00:00–01:45 UTC hole
    assert len(result.frame) == inside
    assert result.outside_window == len(stamps) - inside
    assert (
        result.frame["observed_at"]
        .between(pd.Timestamp(start), pd.Timestamp(end), inclusive="left")
        .all()
    )
    assert result.rows_in == sum(result.rejected.values()) + result.outside_window + len(
        result.frame
    )


def test_future_rows_of_other_partitions_count_as_outside_the_window(anomalies):
    own = own_timestamped(anomalies)
    now = datetime(2019, 9, 14, 0, 0, tzinfo=timezone.utc)
    start, end = day_window_utc(date(2019, 9, 14))  # 2019-09-13T22:00Z – 2019-09-14T22:00Z
    future_today = {**own[0], "heure_de_paris": "2019-09-14T01:15:00+00:00"}

    result = clean_observations(
        parse_export(to_payload([own[0], future_today, *own[1:]])).frame,
        station=STATION, sensor_id=42, now=now, window=(start, end),
    )  # fmt: skip

    # 03:30Z and 01:15Z are today and beyond now + 1 h; every other slot is another day
    assert result.rejected["future"] == 2
    assert result.outside_window == len(own) - 1
    assert result.frame.empty


def test_output_layout_dtypes_order_and_local_time(anomalies_result):
    frame = anomalies_result.frame

    assert list(frame.columns) == list(CLEAN_COLUMNS)
    assert frame.dtypes.astype(str).to_dict() == pandas_dtypes(CLEAN_COLUMNS)
    assert frame["observed_at"].is_monotonic_increasing and frame["observed_at"].is_unique
    assert (frame["station"] == STATION).all()
    assert list(frame.index) == list(range(len(frame)))
    # 2019-10-27T01:00Z is just after the fall-back change: 02:00 wall clock in winter time
    local = frame.set_index("observed_at")["local_time"]
    assert local[pd.Timestamp("2019-10-27T01:00:00Z")] == pd.Timestamp("2019-10-27T02:00:00")
    assert local[pd.Timestamp("2019-09-14T03:30:00Z")] == pd.Timestamp("2019-09-14T05:30:00")


def test_empty_input_gives_an_empty_typed_frame_and_zero_counts():
    result = clean_observations(parse_export(b"").frame, station=STATION, sensor_id=42, now=NOW)

    assert result.frame.empty
    assert result.frame.dtypes.astype(str).to_dict() == pandas_dtypes(CLEAN_COLUMNS)
    assert result.rejected == dict.fromkeys(REJECTION_RULES, 0)
    assert result.flagged == {"all_zero_message": 0, "pressure_missing": 0, "out_of_range": 0}
    assert result.rows_in == 0


def test_naive_run_time_is_refused():
    with pytest.raises(ValueError, match="timezone-aware"):
        clean_observations(
            parse_export(b"").frame, station=STATION, sensor_id=42, now=datetime(2020, 1, 1)
        )


def test_settings_thresholds_are_honoured(anomalies):
    row = next(row for row in anomalies if row["data"] == "553e14cfd27000000cc00000")  # 13.4 °C
    strict = ContractSettings(temperature_c=(-10.0, 10.0))

    result = clean_rows([row], settings=strict)

    assert pd.isna(result.frame.loc[0, "temperature_c"])


def test_settings_build_from_a_toml_table():
    defaults = ContractSettings.from_mapping({"min_coverage": 0.8, "temperature_c": [-40, 55]})
    station = ContractSettings.from_mapping({"future_tolerance": 2}, base=defaults)

    assert station.min_coverage == 0.8
    assert station.temperature_c == (-40.0, 55.0)
    assert station.future_tolerance == timedelta(hours=2)
    assert "mf_min_coverage" in ContractSettings.field_names()
    with pytest.raises(ValueError, match="unknown contract settings: min_coverag"):
        ContractSettings.from_mapping({"min_coverag": 0.8})


@requires_research_data
@pytest.mark.parametrize(
    "station_file",
    sorted(path.name for path in STATIONS.glob("*.csv.gz")) if STATIONS.is_dir() else [],
)
def test_whole_station_exports_dedup_to_distinct_slots(station_file):
    payload = gzip.decompress((STATIONS / station_file).read_bytes())
    sensor_id = int(station_file[:2])
    rows = csv_rows(payload)
    own = [row for row in rows if row["heure_de_paris"] and row["id"] == str(sensor_id)]

    result = clean_observations(
        parse_export(payload).frame, station=STATION, sensor_id=sensor_id, now=NOW
    )

    assert len(result.frame) == len({row["heure_de_paris"] for row in own})
    assert result.rejected["duplicate"] == len(own) - len(result.frame)
    assert result.rejected["no_timestamp"] == sum(row["heure_de_paris"] == "" for row in rows)
    assert result.rows_in == len(rows) == sum(result.rejected.values()) + len(result.frame)
    assert result.frame["observed_at"].is_unique
