"""datasets.toml and environment settings: valid files load, invalid ones fail naming the line."""

import datetime as dt
import textwrap

import pytest

from meteo_assets.config import ConfigError, Settings, load_network, station_key
from meteo_assets.config import PROJECT_ROOT
from meteo_assets.portal.catalogue import match_records

VALID = """\
[defaults]
start_date = "2019-06-01"
min_coverage = 0.8

[[stations]]
dataset = "42-station-meteo-toulouse-parc-compans-cafarelli"
name = "Toulouse parc Compans Cafarelli"

[[stations]]
dataset = "05-station-meteo-toulouse-nakache"
archives = ["05-station-meteo-toulouse-nakache-archive2019"]
sensor_id = 7
start_date = "2020-01-15"
min_coverage = 0.5
temperature_c = [-20, 45]
enabled = false
"""


def write(tmp_path, text):
    path = tmp_path / "datasets.toml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def test_station_key_follows_the_contract():
    assert station_key("42-station-meteo-toulouse-parc-compans-cafarelli") == "st42_toulouse_parc_compans_cafarelli"
    assert station_key("05-station-meteo-toulouse-life-hall-1") == "st05_toulouse_life_hall_1"


def test_a_network_past_station_99_keeps_whole_numbers(tmp_path):
    path = tmp_path / "datasets.toml"
    path.write_text('[[stations]]\ndataset = "104-station-meteo-blagnac-aeroport"\n', encoding="utf-8")
    (station,) = load_network(path).stations
    assert (station.key, station.number, station.sensor_id) == ("st104_blagnac_aeroport", 104, 104)
    records = [{"id_nom": "other", "id_numero": 10}, {"id_nom": "renamed", "id_numero": 104.0}]
    assert match_records([station.dataset, "10-station-meteo-x"], records) == {station.dataset: 1, "10-station-meteo-x": 0}


def test_valid_file_loads_with_defaults_and_overrides(tmp_path):
    network = load_network(write(tmp_path, VALID))
    first, second = network.stations
    assert network.start_date == dt.date(2019, 6, 1)
    assert first.sensor_id == 42 and first.archives == () and first.enabled
    assert first.contract.min_coverage == 0.8  # from [defaults]
    assert second.sensor_id == 7 and second.start_date == dt.date(2020, 1, 15)
    assert second.datasets == ("05-station-meteo-toulouse-nakache", "05-station-meteo-toulouse-nakache-archive2019")
    assert second.contract.min_coverage == 0.5 and second.contract.temperature_c == (-20.0, 45.0)
    assert network.enabled == (first,)
    assert network.station("42") is first and network.station(first.dataset) is first and network.station(5) is second


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ('[[stations]]\ndataset = "42-station-meteo-x"\ncolour = "red"\n', 3, "unknown key 'colour'"),
        ('[defaults]\nstart_date = "2019-13-01"\n', 2, "start_date must be a date"),
        ('[[stations]]\ndataset = "42-station-meteo-a"\n\n[[stations]]\ndataset = "42-station-meteo-a"\n', 5, "duplicate dataset"),
        ('[[stations]]\nname = "x"\ndataset = "../../etc/passwd"\n', 3, "dataset must be a portal station dataset id"),
        ('[[stations]]\ndataset = "42-station-meteo-a"\narchives = ["nope"]\n', 3, "archives must be a list"),
        ('[defaults]\nmin_coverage = "high"\n', 2, "min_coverage must be a number"),
        ('[[stations]]\ndataset = "42-station-meteo-a"\nsensor_id = -1\n', 3, "sensor_id must be"),
        ('[[stations]]\ndataset = "42-station-meteo-a"\ntemperature_c = [1]\n', 3, "[low, high]"),
    ],
)
def test_invalid_file_fails_naming_the_line(tmp_path, text, line, words):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as error:
        load_network(path)
    assert f"{path}:{line}" in str(error.value)
    assert words in str(error.value)


def test_toml_syntax_error_names_the_line(tmp_path):
    with pytest.raises(ConfigError, match=r"line 2"):
        load_network(write(tmp_path, '[defaults]\nstart_date = \n'))


def test_committed_datasets_file_is_valid_and_complete():
    network = load_network(PROJECT_ROOT / "datasets.toml")
    stations_md = PROJECT_ROOT.parent / "shared" / "reference" / "stations.md"
    assert len(network.stations) >= 50
    assert network.station("st22_colomiers_za_perget").archives == tuple(
        f"22-station-meteo-colomiers-za-perget-archive-{y}" for y in range(2019, 2023)
    )
    if stations_md.exists():
        import re

        listed = set(re.findall(r"^\| \d\d \| `([^`]+)`", stations_md.read_text(), re.M))
        assert listed == {s.dataset for s in network.stations}


def test_settings_from_environment(tmp_path):
    settings = Settings.from_env({"METEO_PORTAL_URL": "http://127.0.0.1:9/", "METEO_DATA_DIR": str(tmp_path)})
    assert settings.portal_url == "http://127.0.0.1:9"
    assert settings.duckdb_path == tmp_path / "meteo.duckdb"
    assert Settings.from_env({}).portal_url == "https://data.toulouse-metropole.fr"
    with pytest.raises(ConfigError, match="METEO_PORTAL_CONCURRENCY"):
        Settings.from_env({"METEO_PORTAL_CONCURRENCY": "0"})
