"""Parser tests on the real portal exports (expectations read independently with `csv`)."""

from __future__ import annotations

import csv
import gzip
import io
from datetime import datetime

import pandas as pd
import pytest

from meteo_assets.transform import (
    PARSED_DTYPES,
    PARSER_FIELDS,
    ParsedExport,
    UnknownSchemaError,
    concat_parsed,
    parse_export,
)
from meteo_assets_tests.paths import ANOMALIES, DST_CHANGE, RESEARCH_DATA, requires_research_data


FONDEYRE_SAMPLE = RESEARCH_DATA / "station58_fondeyre_39cols_sample.csv"
FONDEYRE_STATION = RESEARCH_DATA / "stations" / "58-station-meteo-toulouse-fondeyre.csv.gz"


def csv_rows(payload: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(payload.decode("utf-8-sig"), newline=""), delimiter=";"))


def utc(text: str) -> pd.Timestamp:
    return pd.Timestamp(datetime.fromisoformat(text)).tz_convert("UTC")


def assert_parsed_dtypes(parsed: ParsedExport) -> None:
    assert list(parsed.frame.columns) == list(PARSED_DTYPES)
    assert parsed.frame.dtypes.astype(str).to_dict() == PARSED_DTYPES


@requires_research_data
def test_every_row_of_the_anomalies_file_comes_out_typed():
    payload = ANOMALIES.read_bytes()
    expected = csv_rows(payload)

    parsed = parse_export(payload)

    assert_parsed_dtypes(parsed)
    assert (parsed.schema_fields, parsed.malformed_rows) == (15, 0)
    assert len(parsed.frame) == len(expected) == 99
    first = parsed.frame.iloc[0]
    assert first["data"] == "552e01f0e210000000000000"
    assert first["sensor_id"] == 42
    assert first["station_type"] == "ISS"
    assert first["observed_at"] == pd.Timestamp("2019-09-14T03:30:00Z")
    assert (first["temperature"], first["humidity"], first["pressure_pa"]) == (17.8, 66.0, 90000.0)


@requires_research_data
def test_junk_rows_become_rows_without_timestamp_instead_of_crashing():
    payload = ANOMALIES.read_bytes()
    junk = [row for row in csv_rows(payload) if row["heure_de_paris"] == ""]

    frame = parse_export(payload).frame
    parsed_junk = frame[frame["observed_at"].isna()]

    assert len(junk) == 20
    assert parsed_junk["data"].tolist() == [row["data"] for row in junk]
    assert "5,5120252227E+023" in parsed_junk["data"].tolist()
    assert parsed_junk["temperature"].isna().all()
    # `0;0;;;…` has a sensor id but nothing else; the other junk rows have no id at all
    assert parsed_junk["sensor_id"].isna().sum() == len(junk) - 1


@requires_research_data
def test_39_field_schema_is_mapped_by_name_and_ignores_its_misleading_text_dates():
    payload = FONDEYRE_SAMPLE.read_bytes()
    expected = csv_rows(payload)

    parsed = parse_export(payload)

    assert (parsed.schema_fields, parsed.malformed_rows) == (39, 0)
    assert_parsed_dtypes(parsed)
    assert parsed.frame["observed_at"].tolist() == [utc(row["heure_de_paris"]) for row in expected]
    # heure_paris_dd_mm_yy_hh_mm says 16:00+02:00 for the very same 16:00 UTC slot
    assert expected[0]["heure_paris_dd_mm_yy_hh_mm"] == "2020-07-10T16:00:00+02:00"
    first = parsed.frame.iloc[0]
    assert first["observed_at"] == pd.Timestamp("2020-07-10T16:00:00Z")
    assert first["temperature"] == 27.1
    assert first["pressure_pa"] == 100300.0
    assert (first["wind_speed"], first["wind_dir"]) == (7.0, 266.0)
    assert (first["gust_speed"], first["gust_dir"]) == (21.0, 270.0)


@requires_research_data
def test_whole_39_field_station_export_parses_every_row():
    payload = gzip.decompress(FONDEYRE_STATION.read_bytes())
    expected = csv_rows(payload)

    parsed = parse_export(payload)

    assert (parsed.schema_fields, parsed.malformed_rows) == (39, 0)
    assert len(parsed.frame) == len(expected)
    assert parsed.frame["observed_at"].notna().all()
    assert (parsed.frame["sensor_id"] == 58).all()


@requires_research_data
def test_bom_and_crlf_parse_like_plain_lf():
    crlf = DST_CHANGE.read_bytes()
    assert b"\r\n" in crlf
    lf = crlf.replace(b"\r\n", b"\n")

    with_bom = parse_export(b"\xef\xbb\xbf" + crlf)
    plain = parse_export(lf)

    assert len(plain.frame) == len(csv_rows(lf)) == 280
    pd.testing.assert_frame_equal(with_bom.frame, plain.frame)
    assert with_bom.frame["station_type"].eq("ISS").all()  # no '\r' left on any field


@requires_research_data
@pytest.mark.parametrize("line_end", [b"", b"\n", b"\r\n"])
def test_header_only_export_gives_zero_typed_rows(line_end):
    header = ANOMALIES.read_bytes().split(b"\n", 1)[0]

    parsed = parse_export(b"\xef\xbb\xbf" + header + line_end)

    assert len(parsed.frame) == 0
    assert (parsed.schema_fields, parsed.malformed_rows) == (15, 0)
    assert_parsed_dtypes(parsed)


def test_empty_payload_gives_zero_typed_rows():
    parsed = parse_export(b"")

    assert len(parsed.frame) == 0
    assert (parsed.schema_fields, parsed.malformed_rows) == (0, 0)
    assert_parsed_dtypes(parsed)


@requires_research_data
def test_labels_instead_of_field_names_is_an_unknown_schema_listing_what_is_missing():
    header, body = ANOMALIES.read_bytes().split(b"\n", 1)
    labelled = header.replace(b"temperature_en_degre_c", b"temperature").replace(
        b"heure_de_paris", b"heure"
    )

    with pytest.raises(UnknownSchemaError) as raised:
        parse_export(labelled + b"\n" + body)

    assert raised.value.missing == ["heure_de_paris", "temperature_en_degre_c"]
    message = str(raised.value)
    assert "missing fields the parser needs: heure_de_paris, temperature_en_degre_c" in message
    assert "schema has 15 fields: data, id, humidite" in message
    assert isinstance(raised.value, ValueError)


def test_parser_needs_the_contract_fields():
    assert set(PARSER_FIELDS) == {
        "data", "id", "type_de_station", "heure_de_paris", "temperature_en_degre_c", "humidite",
        "pression", "pluie", "pluie_intensite_max", "force_moyenne_du_vecteur_vent",
        "direction_du_vecteur_vent_moyen", "force_rafale_max",
        "direction_du_vecteur_de_vent_max_en_degres",
    }  # fmt: skip


@requires_research_data
def test_rows_with_a_wrong_field_count_are_skipped_and_counted():
    header, first, second, *rest = DST_CHANGE.read_bytes().split(b"\r\n")
    truncated = b";".join(first.split(b";")[:5])
    one_field_too_many = second + b";extra"

    parsed = parse_export(b"\r\n".join([header, truncated, one_field_too_many, *rest]))

    assert parsed.malformed_rows == 2
    assert len(parsed.frame) == 280 - 2
    assert parsed.frame["observed_at"].notna().all()


@requires_research_data
def test_concat_parsed_stacks_exports_and_keeps_dtypes():
    exports = [
        parse_export(ANOMALIES.read_bytes()),
        parse_export(b""),
        parse_export(DST_CHANGE.read_bytes()),
    ]

    frame = concat_parsed(exports)

    assert len(frame) == 99 + 280
    assert frame.index.is_unique
    assert frame.dtypes.astype(str).to_dict() == PARSED_DTYPES
    assert concat_parsed([]).dtypes.astype(str).to_dict() == PARSED_DTYPES


def test_unparseable_values_become_null_not_errors():
    header = ";".join(PARSER_FIELDS).encode()
    row = b"abc;4x2;ISS;2020-13-45T99:00:00+00:00;warm;;1e3;0.2;;;;;"

    frame = parse_export(header + b"\n" + row + b"\n").frame

    assert frame["sensor_id"].isna().all()
    assert frame["observed_at"].isna().all()
    assert frame["temperature"].isna().all() and frame["humidity"].isna().all()
    assert frame.loc[0, "pressure_pa"] == 1000.0
    assert frame.loc[0, "rain"] == 0.2


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("12.5", 12.5), (" -3.25 ", -3.25), ("+2", 2.0), (".5", 0.5), ("5.", 5.0), ("0012", 12.0),
        ("1E-2", 0.01), ("1e3", 1000.0), ("\t7", 7.0), ("inf", float("inf")), ("-Infinity", float("-inf")),
        ("1,5", None), ("0x10", None), ("1_000", None), ("1.2.3", None), ("-", None), ("", None),
        ("NULL", None), ("1 000", None), ("e3", None), ("1.5e400", None), ("nan", None),
    ],
)
def test_decimal_exponent_and_infinity_texts_are_read_and_any_other_text_is_null(text, value):
    header = ";".join(PARSER_FIELDS).encode()
    row = f"d;70;ISS;2023-01-01T00:00:00+00:00;{text};;;;;;;;".encode()

    temperature = parse_export(header + b"\n" + row + b"\n").frame.loc[0, "temperature"]

    assert pd.isna(temperature) if value is None else temperature == value
