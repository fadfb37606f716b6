"""The portal stand-in: realistic generated exports, and an API that behaves like the real one."""

from __future__ import annotations

import gzip
import re
import subprocess
import sys
from dataclasses import replace
from datetime import datetime, timezone

import numpy as np
import pandas as pd
import pytest
import requests

from meteo_assets_tests.fake_portal import (
    API_BASE,
    CATALOGUE_DATASET_ID,
    FakePortal,
    StationSpec,
    decode_payload,
    default_network,
    generate_frame,
    generate_rows,
    render_csv,
    split_archives,
    station_catalogue,
)
from meteo_assets_tests.fake_portal.generator import FIELDS_15, FIELDS_39, format_rows, is_archive, render_lines
from meteo_assets_tests.paths import RESEARCH_DATA, research_file

UTC = timezone.utc
QUIRKY = StationSpec("70-station-meteo-balma-gare", 70, datetime(2020, 9, 1), datetime(2020, 12, 1), seed=3)
CLEAN = StationSpec("71-station-meteo-launaguet-ecole", 71, datetime(2020, 10, 1), datetime(2020, 11, 1),
                    seed=4, quirks=False, schema_fields=39)
JUNK_DATA = re.compile(r"\d,\d+E\+\d{3}|0|1,79769313486232E\+308")


def _utc(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def _in_window(rows: pd.DataFrame, lo: datetime, hi: datetime) -> pd.DataFrame:
    instants = pd.to_datetime(rows["heure_de_paris"], utc=True, errors="coerce", format="ISO8601")
    return rows[(instants >= lo) & (instants < hi)]


@pytest.fixture(scope="module")
def quirky_rows() -> pd.DataFrame:
    return generate_rows(QUIRKY)


@pytest.fixture(scope="module")
def portal():
    with FakePortal([QUIRKY, CLEAN]) as running:
        yield running


@pytest.fixture
def api(portal):
    portal.reset_requests()
    portal.clear_faults()
    return portal.api_url


def _export(api: str, dataset_id: str, fmt: str = "csv", timeout: float = 10, **params) -> requests.Response:
    return requests.get(f"{api}/catalog/datasets/{dataset_id}/exports/{fmt}", params=params, timeout=timeout)


def _data_lines(response: requests.Response) -> list[bytes]:
    body = response.content.removeprefix(b"\xef\xbb\xbf")
    return body.split(b"\n")[1:-1]


# --------------------------------------------------------------------------- generator
def test_payload_decodes_to_the_row_values(quirky_rows):
    rows = quirky_rows[quirky_rows["heure_de_paris"] != ""]
    for row in rows.sample(2000, random_state=0).to_dict("records"):
        raw = decode_payload(row["data"])
        instant = _utc(row["heure_de_paris"])
        assert raw["id"] == int(row["id"])
        assert (raw["full_year"], raw["month"], raw["day"]) == (instant.year, instant.month, instant.day)
        assert raw["minute_of_day"] == instant.hour * 60 + instant.minute
        assert raw["temperature"] == float(row["temperature_en_degre_c"])
        assert raw["humidity"] == int(row["humidite"])
        assert raw["pressure_pa"] == int(row["pression"])
        assert raw["rain_tips"] * 0.2 == float(row["pluie"])
        assert raw["rain_1min_tips"] * 0.2 == float(row["pluie_intensite_max"])
        assert raw["wind_dir"] == int(row["direction_du_vecteur_vent_moyen"])
        assert raw["wind"] == int(row["force_moyenne_du_vecteur_vent"])
        assert raw["gust_sector"] == int(row["direction_du_vecteur_de_vent_max"])
        assert raw["gust_sector"] * 22.5 == float(row["direction_du_vecteur_de_vent_max_en_degres"])
        assert raw["gust"] == int(row["force_rafale_max"])
    assert rows["data"].is_unique


def test_decoder_agrees_with_real_rows():
    real = pd.read_csv(research_file("station42_compans_cafarelli_anomalies.csv"), sep=";", dtype=str,
                       keep_default_na=False)
    real = real[real["data"].str.fullmatch(r"[0-9a-f]{24}")]
    for row in real.to_dict("records"):
        raw = decode_payload(row["data"])
        assert raw["temperature"] == float(row["temperature_en_degre_c"])
        assert raw["pressure_pa"] == int(row["pression"])
        assert raw["humidity"] == int(row["humidite"]) and raw["gust"] == int(row["force_rafale_max"])


def test_negative_temperatures_encode_like_the_sensor():
    winter = StationSpec("72-station-meteo-seilh-golf", 72, datetime(2021, 1, 1), datetime(2021, 3, 1),
                         seed=9, lcz=14, quirks=False)
    rows = generate_rows(winter)
    cold = rows[rows["temperature_en_degre_c"].astype(float) < 0]
    assert len(cold) > 0
    for row in cold.to_dict("records"):
        assert decode_payload(row["data"])["temperature"] == float(row["temperature_en_degre_c"])
        assert float(row["temperature_en_degre_c"]) <= -1.0  # -0.x cannot be encoded


def test_quirk_free_mode_is_a_perfect_sorted_grid():
    rows = generate_rows(replace(CLEAN, schema_fields=15))
    instants = pd.to_datetime(rows["heure_de_paris"], utc=True)
    expected = pd.date_range("2020-10-01", "2020-11-01", freq="15min", inclusive="left", tz="UTC")
    assert list(instants) == list(expected)
    assert set(rows["id"]) == {"71"} and set(rows["type_de_station"]) == {"ISS"}
    assert (rows["temperature_en_degre_c"] != "-50.0").all() and (rows["pression"] != "90000").all()
    outage = replace(CLEAN, outages=[(datetime(2020, 10, 5), datetime(2020, 10, 7))])
    assert len(generate_rows(outage)) == len(rows) - 2 * 96


def test_quirks_are_present_at_realistic_rates(quirky_rows):
    frame = generate_frame(QUIRKY)
    share = frame["kind"].value_counts(normalize=True)
    assert 0.9 < share["ok"] < 0.99
    ceilings = {"zero": 0.04, "no_pressure": 0.05, "duplicate": 0.01, "other_sensor": 0.01,
                "sous_station": 0.005, "future": 0.005, "junk": 0.005}  # real exports: 0.3-3 % sentinels
    for kind, ceiling in ceilings.items():
        assert 0 < share[kind] < ceiling, kind
    rows = quirky_rows
    junk = rows[rows["heure_de_paris"] == ""]
    assert len(junk) and junk["data"].str.fullmatch(JUNK_DATA).all()
    assert (junk.drop(columns=["data", "id"]) == "").all().all()
    zero = rows[rows["temperature_en_degre_c"] == "-50.0"]
    assert len(zero) and (zero["pression"] == "90000").all() and (zero["humidite"] == "0").all()
    assert ((rows["pression"] == "90000") & (rows["temperature_en_degre_c"] != "-50.0")).any()
    assert (rows["id"] == "1").any() and (rows["type_de_station"] == "sous station").any()
    dated = rows[rows["heure_de_paris"] != ""]
    dup = dated[dated.duplicated("heure_de_paris", keep=False) & (dated["id"] == "70")]
    assert dup.groupby("heure_de_paris")["data"].nunique().max() > 1
    assert (dated["heure_de_paris"].str[:4].astype(int) >= 2027).any()
    assert not dated["heure_de_paris"].is_monotonic_increasing
    instants = np.sort(pd.to_datetime(dated["heure_de_paris"], utc=True).unique())
    assert (np.diff(instants) >= np.timedelta64(24, "h")).any()  # a hole of days
    dst_hole = dated["heure_de_paris"].str.match(r"2020-10-25T0[01]:")
    assert not dst_hole.any()


def test_each_month_holds_every_quirk():
    frame = generate_frame(replace(QUIRKY, start=datetime(2020, 3, 1), end=datetime(2020, 6, 1)))
    month = pd.to_datetime(frame["slot"], unit="m").dt.month
    kinds = frame.groupby(month)["kind"].agg(set)
    for present in kinds:
        assert {"zero", "no_pressure", "duplicate", "other_sensor", "sous_station", "future", "junk"} <= present


def test_generation_is_deterministic_and_window_stable():
    whole = generate_rows(QUIRKY)
    assert whole.equals(generate_rows(QUIRKY))
    assert not whole.equals(generate_rows(replace(QUIRKY, seed=4)))
    pieces = split_archives(QUIRKY, datetime(2020, 10, 15), style="nohyphen")
    assert [p.dataset_id for p in pieces] == ["70-station-meteo-balma-gare-archive2020", QUIRKY.dataset_id]
    union = sorted(line for piece in pieces for line in render_lines(generate_rows(piece)))
    assert union == sorted(render_lines(whole))
    longer = generate_rows(replace(QUIRKY, end=datetime(2021, 1, 1)))
    assert set(render_lines(whole)) <= set(render_lines(longer))


def test_physics_is_plausible_for_toulouse():
    year = replace(QUIRKY, start=datetime(2020, 1, 1), end=datetime(2021, 1, 1), quirks=False)
    frame = generate_frame(year)
    when = pd.to_datetime(frame["ts"], unit="m")
    temp = frame["t10"] / 10
    monthly = temp.groupby(when.dt.month).mean()
    assert 2 < monthly[1] < 12 and 18 < monthly[7] < 30
    assert temp.min() > -10 and 30 < temp.max() < 42
    hourly = temp.groupby(when.dt.hour).mean()
    assert hourly.idxmin() in range(3, 8) and hourly.idxmax() in range(12, 17)
    assert 93 <= frame["hum"].max() <= 98 and frame["hum"].min() >= 12
    assert np.corrcoef(temp, frame["hum"])[0, 1] < -0.4
    hpa = frame["press"] + 900
    assert 970 < hpa.min() and hpa.max() < 1035
    assert (frame["gust"] >= frame["wind"]).all()
    assert 0.005 < (frame["rain"] > 0).mean() < 0.05
    rows = format_rows(frame, 15)
    assert set(rows["pluie"]) >= {"0.0", "0.2", "0.6000000000000001"}
    assert rows["pression"].str.fullmatch(r"\d+00").all()


def test_urban_station_is_warmer_at_night_than_rural():
    base = dict(start=datetime(2020, 6, 1), end=datetime(2020, 9, 1), quirks=False, weather_seed=5)
    urban = generate_frame(StationSpec("73-a", 73, seed=1, lcz=2, **base))
    rural = generate_frame(StationSpec("74-b", 74, seed=2, lcz=14, **base))
    night = (urban["ts"] % 1440) // 60 == 3
    day = (urban["ts"] % 1440) // 60 == 14
    assert (urban["t10"][night] - rural["t10"][night]).mean() > 15  # tenths of a degree
    assert abs((urban["t10"][day] - rural["t10"][day]).mean()) < 10
    assert np.corrcoef(urban["t10"], rural["t10"])[0, 1] > 0.9  # same regional weather


def test_39_field_rows_match_the_real_layout():
    header = research_file("station58_fondeyre_39cols_sample.csv").read_text().splitlines()[0].split(";")
    assert [n for n, _, _ in FIELDS_39] == header
    assert [n for n, _, _ in FIELDS_15] == header[:1] + [
        "id", "humidite", "direction_du_vecteur_de_vent_max", "pluie_intensite_max", "pression",
        "direction_du_vecteur_vent_moyen", "type_de_station", "pluie", "direction_du_vecteur_de_vent_max_en_degres",
        "force_moyenne_du_vecteur_vent", "force_rafale_max", "temperature_en_degre_c", "heure_de_paris", "heure_utc"]
    rows = generate_rows(CLEAN)
    assert list(rows.columns) == header
    row = rows[rows["heure_de_paris"] == "2020-10-10T16:00:00+00:00"].iloc[0]
    assert row["false_message"] == str(int(row["data"][12:], 16))
    assert row["heure_paris_dd_mm_yy_hh_mm"] == "2020-10-10T16:00:00+02:00"
    assert (row["jour_mois"], row["dd_mm_yy_utc"], row["hh_mm_utc"]) == ("10/10", "10/10/2020", "16:0")
    assert row["numero_de_message"] == "65" and row["annee"] == "1" and row["annee_reelle"] == "2020"
    assert int(row["temperature_decodee"]) == int(row["temperature_partie_entiere"]) - 50
    winter = rows[rows["heure_de_paris"] == "2020-10-30T16:00:00+00:00"].iloc[0]
    assert winter["heure_paris_dd_mm_yy_hh_mm"].endswith("+01:00")


def test_render_csv_writes_the_portal_format():
    rows = generate_rows(replace(CLEAN, end=datetime(2020, 10, 1, 1), schema_fields=15))
    body = render_csv(rows)
    assert body.startswith(b"data;id;humidite;") and body.endswith(b"+00:00\n") and b"\r" not in body
    assert body.count(b"\n") == 5


def test_default_network_and_catalogue():
    specs = default_network(12, "2019-07-01", "2021-01-01", seed=1)
    ids = [s.dataset_id for s in specs]
    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch(r"\d{2,3}-station-meteo-[a-z0-9-]+", i) for i in ids)
    live = [s for s in specs if not is_archive(s.dataset_id)]
    assert len(live) == 12 and {s.schema_fields for s in live} == {15, 39}
    archives = [i for i in ids if is_archive(i)]
    assert any("-archive-2019" in i for i in archives) and any(re.search(r"-archive\d{4}$", i) for i in archives)
    prefixes = [i.split("-")[0] for i in ids if not is_archive(i)]
    assert len(prefixes) != len(set(prefixes))  # two datasets share a number, like the real 05
    catalogue = station_catalogue(specs, seed=1)
    numbers = {int(r["id_numero"]) for r in catalogue}
    assert {s.sensor_id for s in live} - numbers and numbers - {s.sensor_id for s in live}
    assert any(r["id_nom"] not in ids for r in catalogue)
    for row in catalogue:
        assert 43.5 <= float(row["latitude"]) <= 43.72 and 1.3 <= float(row["longitude"]) <= 1.56
        assert row["geopoint"] == f"{row['latitude']}, {row['longitude']}"


def test_a_year_of_a_network_has_a_year_of_rows():
    specs = default_network(10, "2020-01-01", "2021-01-01", seed=2)
    assert sum(len(generate_rows(s)) for s in specs) > 250_000


# --------------------------------------------------------------------------- server
def test_windowed_export_returns_exactly_the_generated_rows(api, quirky_rows):
    lo, hi = datetime(2020, 10, 3, 22, tzinfo=UTC), datetime(2020, 10, 12, tzinfo=UTC)
    where = f"heure_de_paris >= date'{lo.isoformat()}' AND heure_de_paris < date'{hi.isoformat()}'"
    response = _export(api, QUIRKY.dataset_id, where=where)
    assert response.status_code == 200 and response.headers["Content-Type"].startswith("text/csv")
    expected = render_lines(_in_window(quirky_rows, lo, hi))
    assert _data_lines(response) == expected  # stored order kept without order_by
    ordered = _export(api, QUIRKY.dataset_id, where=where, order_by="heure_de_paris")
    stamps = [line.rsplit(b";", 2)[1] for line in _data_lines(ordered)]
    assert stamps == sorted(stamps) and sorted(_data_lines(ordered)) == sorted(expected)
    latest = _export(api, QUIRKY.dataset_id, where=where, order_by="heure_de_paris desc", limit=3)
    assert [line.rsplit(b";", 2)[1] for line in _data_lines(latest)] == stamps[::-1][:3]


def test_where_literal_forms_and_null_timestamps(api, quirky_rows):
    forms = ["heure_de_paris >= date'2020-10-05' and heure_de_paris < date'2020-10-06'",
             "heure_de_paris >= '2020-10-05T00:00:00+00:00' AND heure_de_paris < \"2020-10-06T00:00:00Z\"",
             "(heure_de_paris >= date'2020-10-05T02:00:00+02:00') AND (heure_de_paris <= date'2020-10-05T23:45:00')"]
    bodies = {_export(api, QUIRKY.dataset_id, where=w).content for w in forms}
    assert len(bodies) == 1
    everything = _data_lines(_export(api, QUIRKY.dataset_id, where="heure_de_paris >= date'1900-01-01'"))
    assert len(everything) == (quirky_rows["heure_de_paris"] != "").sum()
    assert len(_data_lines(_export(api, QUIRKY.dataset_id))) == len(quirky_rows)


def test_dst_windows(api):
    # 2020-10-25 00:00 Paris summer time .. 03:00 Paris winter time = 22:00Z .. 02:00Z: 16 slots.
    where = "heure_de_paris >= '2020-10-25T00:00:00+02:00' AND heure_de_paris < '2020-10-25T03:00:00+01:00'"
    clean = _data_lines(_export(api, CLEAN.dataset_id, where=where, order_by="heure_de_paris"))
    assert len(clean) == 16
    assert clean[0].split(b";")[-1] == b"2020-10-24T22:00:00+00:00"
    assert clean[-1].split(b";")[-1] == b"2020-10-25T01:45:00+00:00"
    paris_day = "heure_de_paris >= '2020-10-25T00:00:00+02:00' AND heure_de_paris < '2020-10-26T00:00:00+01:00'"
    assert len(_data_lines(_export(api, CLEAN.dataset_id, where=paris_day))) == 100  # a 25-hour day
    quirky = _data_lines(_export(api, QUIRKY.dataset_id, where=where))
    assert not any(b"2020-10-25T00:" in line or b"2020-10-25T01:" in line for line in quirky)


def test_bom_labels_select_and_delimiter(api):
    window = {"where": "heure_de_paris >= date'2020-10-02' AND heure_de_paris < date'2020-10-02T01:00:00'"}
    with_bom = _export(api, CLEAN.dataset_id, **window)
    assert with_bom.content.startswith(b"\xef\xbb\xbfdata;id;mois;")
    without = _export(api, CLEAN.dataset_id, with_bom="false", **window)
    assert without.content == with_bom.content[3:]
    labels = _export(api, QUIRKY.dataset_id, use_labels="true", with_bom="false", limit=1)
    header = labels.text.splitlines()[0].split(";")
    assert "temperature" in header and "temperature_en_degre_c" not in header
    picked = _export(api, CLEAN.dataset_id, select="heure_de_paris,temperature_en_degre_c", delimiter=",",
                     with_bom="false", order_by="heure_de_paris", **window)
    lines = picked.text.splitlines()
    assert lines[0] == "heure_de_paris,temperature_en_degre_c" and len(lines) == 5
    assert re.fullmatch(r"2020-10-02T00:00:00\+00:00,-?\d+\.\d", lines[1])


def test_json_and_jsonl_exports_are_typed(api):
    window = {"where": "heure_de_paris >= date'2020-10-02' AND heure_de_paris < date'2020-10-02T01:00:00'",
              "order_by": "heure_de_paris"}
    records = _export(api, CLEAN.dataset_id, "json", **window).json()
    assert len(records) == 4 and isinstance(records[0]["id"], int) and isinstance(records[0]["pluie"], float)
    assert records[0]["heure_de_paris"] == "2020-10-02T00:00:00+00:00"
    lines = _export(api, CLEAN.dataset_id, "jsonl", **window).text.splitlines()
    assert len(lines) == 4


def test_errors_are_json(api):
    missing = requests.get(f"{api}/catalog/datasets/99-station-meteo-nowhere", timeout=10)
    assert missing.status_code == 404
    assert missing.json() == {"error_code": "NotFoundError", "message": "Unknown dataset: 99-station-meteo-nowhere"}
    assert _export(api, "99-station-meteo-nowhere").status_code == 404
    for where in ("temperature_en_degre_c > 3", "heure_de_paris > date'2020-01-01' OR heure_de_paris < date'2019'",
                  "heure_de_paris >= date'not a date'"):
        bad = _export(api, QUIRKY.dataset_id, where=where)
        assert bad.status_code == 400 and bad.json()["error_code"] == "ODSQLError", where
    records = f"{api}/catalog/datasets/{QUIRKY.dataset_id}/records"
    assert requests.get(records, params={"limit": 101}, timeout=10).status_code == 400
    assert requests.get(records, params={"limit": 100, "offset": 9950}, timeout=10).status_code == 400
    assert _export(api, QUIRKY.dataset_id, limit=100, offset=9950).status_code == 400


def test_records_endpoint(api, quirky_rows):
    url = f"{api}/catalog/datasets/{QUIRKY.dataset_id}/records"
    last = requests.get(url, params={"select": "max(heure_de_paris) as last"}, timeout=10).json()
    expected = max(_utc(t) for t in quirky_rows["heure_de_paris"] if t)
    assert last == {"total_count": 1, "results": [{"last": expected.isoformat()}]}
    assert expected.year >= 2027  # a corrupted payload: why a client should not trust max() alone
    window = "heure_de_paris < date'2020-12-01'"
    in_range = requests.get(url, params={"select": "max(heure_de_paris) as last, count(*) as n", "where": window},
                            timeout=10).json()["results"][0]
    assert in_range["last"] == "2020-11-30T23:45:00+00:00" or in_range["last"] < "2020-12-01"
    page = requests.get(url, params={"limit": 5, "offset": 10, "order_by": "heure_de_paris"}, timeout=10).json()
    assert page["total_count"] == len(quirky_rows) and len(page["results"]) == 5


def test_catalogue_listing(api, portal):
    listing = requests.get(f"{api}/catalog/datasets", timeout=30).json()
    assert listing["total_count"] == 3
    ids = [r["dataset_id"] for r in listing["results"]]
    assert ids == sorted([QUIRKY.dataset_id, CLEAN.dataset_id, CATALOGUE_DATASET_ID])
    entry = listing["results"][0]
    assert {"title", "modified", "data_processed", "records_count"} <= set(entry["metas"]["default"])
    assert entry["fields"][0] == {"name": "data", "label": "data", "type": "text"}
    page = requests.get(f"{api}/catalog/datasets", params={"limit": 1, "offset": 1}, timeout=10).json()
    assert page["total_count"] == 3 and [r["dataset_id"] for r in page["results"]] == ids[1:2]
    for where in ('search("station-meteo")', 'dataset_id like "70-station-meteo*"'):
        found = requests.get(f"{api}/catalog/datasets", params={"where": where}, timeout=10).json()
        assert CATALOGUE_DATASET_ID not in [r["dataset_id"] for r in found["results"]]
    assert requests.get(f"{api}/catalog/datasets", params={"limit": 101}, timeout=10).status_code == 400
    one = requests.get(f"{api}/catalog/datasets/{CLEAN.dataset_id}", timeout=10).json()
    assert one["metas"]["default"]["records_count"] == 31 * 96 and len(one["fields"]) == 39


def test_station_catalogue_dataset(api):
    body = _export(api, CATALOGUE_DATASET_ID, with_bom="false").text.splitlines()
    assert body[0] == "id_nom;id_numero;longitude;latitude;altitude;ville;installation;type_stati;lcz;emission;bati;veg_haute;geopoint"
    assert {line.split(";")[1] for line in body[1:]} == {"70", "71"}
    records = requests.get(f"{api}/catalog/datasets/{CATALOGUE_DATASET_ID}/records", params={"limit": 10},
                           timeout=10).json()
    assert records["total_count"] == 2 and isinstance(records["results"][0]["geopoint"], dict)


def test_data_and_metadata_change_between_calls():
    spec = replace(CLEAN, dataset_id="75-station-meteo-beaupuy-ecole", sensor_id=75, end=datetime(2020, 10, 2))
    with FakePortal([spec]) as portal:
        meta_url = f"{portal.api_url}/catalog/datasets/{spec.dataset_id}"
        before = requests.get(meta_url, timeout=10).json()["metas"]["default"]
        assert before["modified"] == "2020-10-02T00:00:00+00:00" and before["records_count"] == 96
        portal.set_rows(spec.dataset_id, replace(spec, end=datetime(2020, 10, 3)))
        after = requests.get(meta_url, timeout=10).json()["metas"]["default"]
        assert after["records_count"] == 192 and after["modified"] > before["modified"]
        assert after["data_processed"] == after["modified"]
        when = datetime(2030, 1, 1, 12, tzinfo=UTC)
        portal.touch(spec.dataset_id, when)
        assert requests.get(meta_url, timeout=10).json()["metas"]["default"]["modified"] == when.isoformat()
        extra = generate_rows(replace(spec, start=datetime(2020, 10, 3), end=datetime(2020, 10, 3, 1)))
        portal.append_rows(spec.dataset_id, extra)
        moved = requests.get(meta_url, timeout=10).json()["metas"]["default"]
        assert moved["records_count"] == 196 and moved["modified"] > when.isoformat()
        tail = _export(portal.api_url, spec.dataset_id, order_by="heure_de_paris desc", limit=4, with_bom="false")
        assert _data_lines(tail) == render_lines(extra)[::-1]
        portal.set_rows(spec.dataset_id, [{"data": "x", "heure_de_paris": "2020-10-04T00:00:00+00:00"}])
        assert _export(portal.api_url, spec.dataset_id, with_bom="false").text == (
            "data;heure_de_paris\nx;2020-10-04T00:00:00+00:00\n")


def test_fault_injection(api, portal):
    url = f"{api}/catalog/datasets/{CLEAN.dataset_id}/exports/csv"
    portal.inject(CLEAN.dataset_id, "status", count=2, status=503, retry_after=7)
    first = requests.get(url, timeout=10)
    assert first.status_code == 503 and first.headers["Retry-After"] == "7"
    assert first.json()["error_code"] == "ServiceUnavailable"
    assert requests.get(f"{api}/catalog/datasets/{QUIRKY.dataset_id}", timeout=10).status_code == 200  # other dataset
    assert requests.get(url, timeout=10).status_code == 503
    assert requests.get(url, timeout=10).status_code == 200

    portal.inject(None, "status", status=429, endpoint="records")
    assert requests.get(url, params={"limit": 1}, timeout=10).status_code == 200
    assert requests.get(f"{api}/catalog/datasets/{CLEAN.dataset_id}/records", timeout=10).status_code == 429

    portal.inject(CLEAN.dataset_id, "truncate")
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        requests.get(url, timeout=10)
    portal.inject(CLEAN.dataset_id, "reset")
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(url, timeout=10)
    portal.inject(CLEAN.dataset_id, "hang", seconds=1.5)
    with pytest.raises(requests.exceptions.ReadTimeout):
        requests.get(url, timeout=0.3)
    assert requests.get(url, timeout=10).status_code == 200

    paths = [r.path for r in portal.requests]
    assert paths.count(f"{API_BASE}/catalog/datasets/{CLEAN.dataset_id}/exports/csv") == 8
    assert portal.requests[-1].params == {}
    portal.reset_requests()
    assert portal.requests == []


def test_real_exports_are_served_byte_for_byte():
    research_file("stations/42-station-meteo-toulouse-parc-compans-cafarelli.csv.gz")
    dataset_id = "42-station-meteo-toulouse-parc-compans-cafarelli"
    raw = gzip.decompress((RESEARCH_DATA / "stations" / f"{dataset_id}.csv.gz").read_bytes())
    with FakePortal.from_research_data(RESEARCH_DATA) as portal:
        assert len([d for d in portal.dataset_ids if d != CATALOGUE_DATASET_ID]) == 10
        full = _export(portal.api_url, dataset_id)
        assert full.content == b"\xef\xbb\xbf" + raw
        window = _export(portal.api_url, dataset_id, with_bom="false",
                         where="heure_de_paris >= date'2020-10-24' AND heure_de_paris < date'2020-10-27'")
        sample = research_file("station42_compans_cafarelli_2020-10-24_26.csv").read_bytes()
        assert window.content == sample.replace(b"\r\n", b"\n")  # same rows, same order
        meta = requests.get(f"{portal.api_url}/catalog/datasets/{dataset_id}", timeout=10).json()
        assert meta["metas"]["default"]["title"] == "42 Station météo Toulouse parc Compans Cafarelli"
        assert meta["metas"]["default"]["records_count"] == raw.count(b"\n") - 1
        last = requests.get(f"{portal.api_url}/catalog/datasets/{dataset_id}/records",
                            params={"select": "max(heure_de_paris) as last"}, timeout=10).json()
        assert last["results"][0]["last"] == "2020-11-16T23:00:00+00:00"
        wide = _export(portal.api_url, "58-station-meteo-toulouse-fondeyre", "json", limit=1).json()[0]
        assert len(wide) == 39 and isinstance(wide["false_message"], str)


def test_a_year_export_in_one_request():
    year = replace(QUIRKY, start=datetime(2020, 1, 1), end=datetime(2021, 1, 1))
    with FakePortal([year]) as portal:
        response = _export(portal.api_url, year.dataset_id, order_by="heure_de_paris",
                           where="heure_de_paris >= date'2020-01-01' AND heure_de_paris < date'2021-01-01'")
    assert len(_data_lines(response)) > 30_000


def test_command_line_serves_a_network():
    process = subprocess.Popen(
        [sys.executable, "-m", "meteo_assets_tests.fake_portal", "--port", "0", "--stations", "2",
         "--start", "2020-10-01", "--end", "2020-10-03"],
        stdout=subprocess.PIPE, text=True)
    try:
        first = process.stdout.readline()
        url = re.search(r"(http://127\.0\.0\.1:\d+) ", first).group(1)
        listed = []
        for line in process.stdout:
            if line.startswith("Ctrl-C"):
                break
            listed.append(line.split()[-1])
        catalogue = requests.get(f"{url}{API_BASE}/catalog/datasets", params={"limit": 100}, timeout=30).json()
        assert sorted(r["dataset_id"] for r in catalogue["results"]) == sorted(listed)
        assert CATALOGUE_DATASET_ID in listed and len(listed) >= 3
    finally:
        process.terminate()
        assert process.wait(timeout=30) == 0  # stops cleanly on SIGTERM
