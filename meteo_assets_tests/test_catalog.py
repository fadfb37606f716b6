"""`catalog sync`: datasets.toml follows the portal catalogue and keeps every hand edit.

The catalogue is the real January 2021 snapshot (a v1 response, converted to the v2.1 shape the
client returns) plus the archive datasets named in the station reference, whose naming is
inconsistent (`-archive-2019`, `archive2019`, the truncated `…-centre-equestr-archive-2019`).
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
import os
import subprocess
import sys
import tempfile
import threading
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pandas as pd
import pytest

from meteo_assets import catalog
from meteo_assets.catalog import GONE_COMMENT, SyncError, apply_sync, plan_sync, write_validated
from meteo_assets.config import PROJECT_ROOT, ConfigError, load_network
from meteo_assets.portal import PortalUnreachable
from meteo_assets_tests.paths import research_file

TODAY = dt.date(2021, 1, 22)
SNAPSHOT = "ods_catalog_search_q-meteo_2021-01.json.gz"
LIFE_HALL = "05-station-meteo-toulouse-life-hall-1"  # shares number 05 with Nakache; not in the 2021 snapshot


def _years(base: str, years: str, sep: str = "-archive-") -> list[str]:
    return [f"{base}{sep}{year}" for year in years.split()]


# Live dataset → its archives, as listed in stations.md (in chronological order).
ARCHIVES = {
    "01-station-meteo-toulouse-meteopole": [
        "01-station-meteo-toulouse-meteopole-archive-2019",
        "01-station-meteo-toulouse-meteopole-archive2020",
    ],
    "02-station-meteo-toulouse-marengo": _years("02-station-meteo-toulouse-marengo", "2019 2020", "-archive"),
    "03-station-meteo-toulouse-busca": _years("03-station-meteo-toulouse-busca", "2019 2020", "-archive"),
    "05-station-meteo-toulouse-nakache": ["05-station-meteo-toulouse-nakache-archive2019"],
    "07-station-meteo-toulouse-avenue-de-grande-bretagne": _years(
        "07-station-meteo-toulouse-avenue-de-grande-bretagne", "2019 2020 2021"
    ),
    "08-station-meteo-toulouse-basso-cambo": _years("08-station-meteo-toulouse-basso-cambo", "2019 2020 2021"),
    "09-station-meteo-toulouse-la-salade": _years("09-station-meteo-toulouse-la-salade", "2019 2020 2021"),
    "10-station-meteo-castelginest-ecole": _years("10-station-meteo-castelginest-ecole", "2019 2020"),
    "11-station-meteo-toulouse-soupetard": _years("11-station-meteo-toulouse-soupetard", "2019 2020 2021"),
    "12-station-meteo-toulouse-montaudran": _years("12-station-meteo-toulouse-montaudran", "2019 2020"),
    "13-station-meteo-toulouse-pech-david": _years("13-station-meteo-toulouse-pech-david", "2019 2020"),
    "17-station-meteo-fenouillet-foyer": _years("17-station-meteo-fenouillet-foyer", "2019 2020"),
    "18-station-meteo-brax-ecole": _years("18-station-meteo-brax-ecole", "2019 2020 2021 2022"),
    "19-station-meteo-mondouzil-mairie": _years("19-station-meteo-mondouzil-mairie", "2019 2020 2021 2022"),
    "22-station-meteo-colomiers-za-perget": _years("22-station-meteo-colomiers-za-perget", "2019 2020 2021 2022"),
    "23-station-meteo-pibrac-bouconne-centre-equestre": [
        "23-station-meteo-pibrac-bouconne-centre-equestr-archive-2019",  # sic: truncated base
    ],
}

HAND_WRITTEN = """\
# Hand-written header: kept as is.

[defaults]
start_date = "2019-06-01"     # first daily partition
min_coverage = 0.8            # stricter than the code default

# The reference station.
[[stations]]
dataset = "42-station-meteo-toulouse-parc-compans-cafarelli"
name = "Compans (hand-named)"
sensor_id = 42
start_date = "2019-07-01"     # sensor replaced in June 2019
temperature_c = [-20, 45]

[[stations]]
dataset = "22-station-meteo-colomiers-za-perget"
name = "Colomiers ZA Perget"
archives = ["22-station-meteo-colomiers-za-perget-archive-2019"]   # checked by hand

[[stations]]
dataset = "05-station-meteo-toulouse-life-hall-1"
name = "Toulouse Life Hall 1"

[[stations]]
dataset = "06-station-meteo-toulouse-ecluse"
enabled = false   # sub-station test dataset
"""


def _entry(dataset_id: str, title: str) -> dict:
    return {"dataset_id": dataset_id, "metas": {"default": {"title": title}}, "fields": []}


@pytest.fixture(scope="module")
def snapshot() -> list[dict]:
    """The real catalogue snapshot (API v1) in the v2.1 shape of `PortalClient.catalog`."""
    raw = json.loads(gzip.decompress(research_file(SNAPSHOT).read_bytes()))
    return [
        {"dataset_id": d["datasetid"], "metas": {"default": d["metas"]}, "fields": d["fields"]} for d in raw["datasets"]
    ]


@pytest.fixture(scope="module")
def catalogue(snapshot) -> list[dict]:
    """The snapshot plus every archive of the reference (their titles are irrelevant to the sync)."""
    archives = [_entry(a, a) for archive_ids in ARCHIVES.values() for a in archive_ids]
    return [*snapshot, *archives]


def test_archives_attach_to_their_live_dataset_whatever_their_name(catalogue):
    later = _entry(LIFE_HALL, "05 Station météo Toulouse Life Hall 1")  # Nakache's archive must not go here

    plan = plan_sync("", [*catalogue, later], None, TODAY)

    attached = {s.dataset: list(s.archives) for s in plan.added if s.archives}
    assert attached == ARCHIVES
    assert plan.unattached == {}
    assert len(plan.added) == len(plan.live) == 50
    names = {s.dataset: s.name for s in plan.added}
    assert names["15-station-meteo-l-union-ecole"] == "L'Union école"
    assert names["01-station-meteo-toulouse-meteopole"] == "Toulouse Météopole"


def test_archives_without_a_clear_station_are_reported_not_guessed(catalogue):
    extra = [
        _entry(LIFE_HALL, "05 Station météo Toulouse Life Hall 1"),
        _entry("05-station-meteo-toulouse-archive-2019", ""),  # prefix of both 05 stations
        _entry("70-station-meteo-toulouse-inconnue-archive-2019", ""),
    ]

    plan = plan_sync("", [*catalogue, *extra], None, TODAY)

    assert sorted(plan.unattached) == [
        "05-station-meteo-toulouse-archive-2019",
        "70-station-meteo-toulouse-inconnue-archive-2019",
    ]
    assert "ambiguous" in plan.unattached["05-station-meteo-toulouse-archive-2019"]
    assert "no station dataset numbered 70" in plan.unattached["70-station-meteo-toulouse-inconnue-archive-2019"]


def test_hand_written_content_survives_and_only_new_archives_are_added(catalogue):
    after = apply_sync(HAND_WRITTEN, plan_sync(HAND_WRITTEN, catalogue, None, TODAY))

    kept = [line for line in HAND_WRITTEN.splitlines() if not line.startswith("archives =")]
    assert all(line in after.splitlines() for line in kept)
    assert after.startswith(HAND_WRITTEN[: HAND_WRITTEN.index("[[stations]]")])
    network = load_network_text(after)
    perget = network.station("22-station-meteo-colomiers-za-perget")
    assert list(perget.archives) == ARCHIVES["22-station-meteo-colomiers-za-perget"]
    assert 'archives = ["22-station-meteo-colomiers-za-perget-archive-2019", ' in after
    assert after.count("# checked by hand") == 1
    assert network.defaults.min_coverage == 0.8
    compans = network.station("42-station-meteo-toulouse-parc-compans-cafarelli")
    assert (compans.name, compans.sensor_id, compans.start_date) == ("Compans (hand-named)", 42, dt.date(2019, 7, 1))
    assert compans.contract.temperature_c == (-20.0, 45.0)


def test_new_stations_are_appended_sorted_after_the_hand_written_ones(catalogue):
    after = apply_sync(HAND_WRITTEN, plan_sync(HAND_WRITTEN, catalogue, None, TODAY))

    datasets = [s.dataset for s in load_network_text(after).stations]
    assert datasets[:4] == [
        "42-station-meteo-toulouse-parc-compans-cafarelli",
        "22-station-meteo-colomiers-za-perget",
        LIFE_HALL,
        "06-station-meteo-toulouse-ecluse",
    ]
    assert datasets[4:] == sorted(datasets[4:])
    assert len(datasets) == 4 + 46
    assert "\n\n[[stations]]\ndataset = \"00-station-meteo-toulouse-valade\"\nname = \"Toulouse Valade\"\n" in after


def test_a_station_gone_from_the_catalogue_is_disabled_not_deleted(catalogue):
    plan = plan_sync(HAND_WRITTEN, catalogue, None, TODAY)
    after = apply_sync(HAND_WRITTEN, plan)

    assert plan.disabled == (LIFE_HALL,)
    life_hall = load_network_text(after).station(LIFE_HALL)
    assert (life_hall.enabled, life_hall.name) == (False, "Toulouse Life Hall 1")
    assert f"enabled = false   {GONE_COMMENT}2021-01-22" in after


def test_a_hand_disabled_station_keeps_its_own_comment(catalogue):
    without_ecluse = [e for e in catalogue if e["dataset_id"] != "06-station-meteo-toulouse-ecluse"]

    plan = plan_sync(HAND_WRITTEN, without_ecluse, None, TODAY)

    assert "06-station-meteo-toulouse-ecluse" not in plan.disabled
    assert "enabled = false   # sub-station test dataset\n" in apply_sync(HAND_WRITTEN, plan)


def test_sync_is_idempotent_and_flags_stations_that_came_back(catalogue):
    once = apply_sync(HAND_WRITTEN, plan_sync(HAND_WRITTEN, catalogue, None, TODAY))

    again = plan_sync(once, catalogue, None, TODAY + dt.timedelta(days=1))
    assert not again.changes
    assert apply_sync(once, again) == once

    back = plan_sync(once, [*catalogue, _entry(LIFE_HALL, "05 Station météo Toulouse Life Hall 1")], None, TODAY)
    assert back.reappeared == (LIFE_HALL,)
    assert not back.changes


def test_the_synced_repository_file_loads(tmp_path, catalogue):
    text = (PROJECT_ROOT / "datasets.toml").read_text(encoding="utf-8")
    path = tmp_path / "datasets.toml"
    path.write_text(text, encoding="utf-8")

    write_validated(path, apply_sync(text, plan_sync(text, catalogue, None, TODAY)))

    network = load_network(path)
    live = {e["dataset_id"] for e in catalogue if "archive" not in e["dataset_id"]}
    assert live <= {s.dataset for s in network.stations}
    assert all(a in s.archives for s in network.stations for a in ARCHIVES.get(s.dataset, []))


def test_station_catalogue_mismatches_are_reported_both_ways(catalogue):
    records = [
        {"id_nom": "42-station-meteo-toulouse-parc-compans-cafarelli", "id_numero": 42},
        {"id_nom": "station_meteo_busca", "id_numero": "3"},  # id_nom differs: matched by number
        {"id_nom": "99-station-meteo-projet", "id_numero": 99},
    ]
    live = [e for e in catalogue if e["dataset_id"][:2] in {"03", "42", "58"}]

    plan = plan_sync("", live, records, TODAY)

    assert plan.without_station_record == ("58-station-meteo-toulouse-fondeyre",)
    assert plan.records_without_dataset == ("99 99-station-meteo-projet",)


def test_a_catalogue_without_stations_is_refused():
    with pytest.raises(SyncError, match="no station dataset"):
        plan_sync(HAND_WRITTEN, [_entry("stations-meteo-en-place", "Stations météo en place")], None, TODAY)


def test_an_invalid_result_is_rolled_back(tmp_path):
    path = tmp_path / "datasets.toml"
    path.write_text(HAND_WRITTEN, encoding="utf-8")

    with pytest.raises(ConfigError, match="sensor_id"):
        write_validated(path, HAND_WRITTEN.replace("sensor_id = 42", 'sensor_id = "42"'))

    assert path.read_text(encoding="utf-8") == HAND_WRITTEN
    assert [p.name for p in tmp_path.iterdir()] == ["datasets.toml"]


def test_portal_errors_are_one_line_naming_the_url(tmp_path, monkeypatch, capsys):
    class Unreachable:
        def __init__(self, base_url: str, **_):
            self.base_url = base_url

        def catalog(self):
            url = f"{self.base_url}/api/explore/v2.1/catalog/datasets"
            raise PortalUnreachable(f"catalogue: could not reach the portal. URL: {url}", url=url)

    path = tmp_path / "datasets.toml"
    path.write_text(HAND_WRITTEN, encoding="utf-8")
    monkeypatch.setattr(catalog, "PortalClient", Unreachable)
    monkeypatch.setenv("METEO_PORTAL_URL", "http://portal.invalid")

    assert catalog.main(["sync", "--write", "--datasets-file", str(path)]) == 1

    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "http://portal.invalid" in err
    assert path.read_text(encoding="utf-8") == HAND_WRITTEN


def test_cli_syncs_a_copy_of_the_repository_file(tmp_path, catalogue):
    original = (PROJECT_ROOT / "datasets.toml").read_text(encoding="utf-8")
    compans = '[[stations]]\ndataset = "42-station-meteo-toulouse-parc-compans-cafarelli"\n'
    start = original.index(compans)
    without_compans = original[:start] + original[original.index("[[stations]]", start + 1) :]
    path = tmp_path / "datasets.toml"
    path.write_text(without_compans, encoding="utf-8")

    with portal(catalogue, STATION_RECORDS) as url:
        dry = run_cli(url, path)
        assert dry.returncode == 0, dry.stderr
        assert "Dry run" in dry.stdout and path.read_text(encoding="utf-8") == without_compans
        result = run_cli(url, path, "--write")
    assert result.returncode == 0, result.stderr
    assert f"Wrote {path}" in result.stdout
    assert "58-station-meteo-toulouse-fondeyre" in result.stdout  # not in the served station catalogue

    after = path.read_text(encoding="utf-8")
    assert after.startswith(without_compans[: without_compans.index("[[stations]]")])
    kept = [line for line in without_compans.splitlines() if not line.startswith("archives =")]
    assert all(line in after.splitlines() for line in kept)
    network = load_network(path)
    datasets = [s.dataset for s in network.stations]
    assert datasets[:-1] == [s.dataset for s in load_network_text(without_compans).stations]
    compans_station = network.station(datasets[-1])
    assert (compans_station.dataset, compans_station.name) == (
        "42-station-meteo-toulouse-parc-compans-cafarelli",
        "Toulouse parc Compans Cafarelli",
    )
    assert all(a in network.station(d).archives for d, archives in ARCHIVES.items() for a in archives)
    assert not network.station(LIFE_HALL).enabled and f"{GONE_COMMENT}{dt.date.today()}" in after


def load_network_text(text: str):
    """`load_network` reads files: validate a text through a temporary one."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "datasets.toml"
        path.write_text(text, encoding="utf-8")
        return load_network(path)


def run_cli(url: str, path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "METEO_DATASETS_FILE"} | {"METEO_PORTAL_URL": url}
    command = [sys.executable, "-m", "meteo_assets.catalog", "sync", "--datasets-file", str(path), *args]
    return subprocess.run(command, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=120)


@contextmanager
def portal(results: list[dict], stations: list[dict]):
    """Serve a catalogue and a station catalogue: through the project's fake portal when it is there,
    else through the minimal stub below. The data datasets are empty: the sync reads only the catalogue."""
    try:
        from meteo_assets_tests.fake_portal import FakePortal
    except ImportError:
        with _stub_portal(results, stations) as url:
            yield url
        return
    empty = pd.DataFrame(columns=["heure_de_paris"])
    titles = {r["dataset_id"]: {"title": r["metas"]["default"]["title"]} for r in results}
    with FakePortal(dict.fromkeys(titles, empty), stations=stations, metas=titles) as fake:
        yield fake.url


STATION_RECORDS = [
    {"id_nom": "42-station-meteo-toulouse-parc-compans-cafarelli", "id_numero": "42", "ville": "Toulouse"},
    {"id_nom": "01-station-meteo-toulouse-meteopole", "id_numero": "1", "ville": "Toulouse"},
]


@contextmanager
def _stub_portal(results: list[dict], stations: list[dict]):
    """The two endpoints the sync uses: the paged catalogue and the station catalogue export."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            url = urlsplit(self.path)
            query = {k: v[0] for k, v in parse_qs(url.query).items()}
            if url.path == "/api/explore/v2.1/catalog/datasets":
                offset, limit = int(query.get("offset", 0)), int(query.get("limit", 10))
                self._json(200, {"total_count": len(results), "results": results[offset : offset + limit]})
            elif url.path == "/api/explore/v2.1/catalog/datasets/stations-meteo-en-place/exports/json":
                self._json(200, stations)
            else:
                self._json(404, {"error_code": "NotFound", "message": f"{url.path} not found"})

        def _json(self, status: int, body) -> None:
            payload = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
