"""The raw layer keeps what the portal sent, byte for byte, one folder per Paris day."""

import datetime as dt

import pytest

from meteo_assets.portal.days import join_days, split_by_day
from meteo_assets.storage.raw_files import MissingRawPartition, RawStore

from meteo_assets_tests.paths import research_file

HEADER = b"data;id;heure_de_paris;heure_utc\r\n"


def line(stamp: str, payload: str = "aa") -> bytes:
    return f"{payload};42;{stamp};{stamp}\r\n".encode()


def test_split_assigns_lines_to_paris_days_keeping_bytes():
    lines = [
        line("2020-10-24T21:45:00+00:00"),  # 23:45 Paris, 24th
        line("2020-10-24T22:00:00+00:00"),  # 00:00 Paris, 25th (summer time)
        line("2020-10-25T22:45:00+00:00"),  # 23:45 Paris, 25th (winter time)
        line("2020-10-25T23:00:00+00:00"),  # 00:00 Paris, 26th
    ]
    days = [dt.date(2020, 10, 24), dt.date(2020, 10, 25), dt.date(2020, 10, 26)]
    parts = split_by_day(HEADER + b"".join(lines), days)
    assert parts[days[0]] == HEADER + lines[0]
    assert parts[days[1]] == HEADER + lines[1] + lines[2]
    assert parts[days[2]] == HEADER + lines[3]


def test_lines_without_a_usable_timestamp_stay_with_the_first_day():
    junk = b"5,5120252227E+023;;;\r\n"
    outside = line("2021-01-01T00:00:00+00:00")
    days = [dt.date(2020, 10, 24), dt.date(2020, 10, 25)]
    parts = split_by_day(HEADER + junk + outside, days)
    assert parts[days[0]] == HEADER + junk + outside
    assert parts[days[1]] == HEADER


def test_split_then_join_loses_nothing_on_a_real_export():
    content = research_file("station42_compans_cafarelli_2020-10-24_26.csv").read_bytes()
    days = [dt.date(2020, 10, 23) + dt.timedelta(days=i) for i in range(5)]
    parts = split_by_day(content, days)
    (joined,) = join_days(parts[d] for d in days)
    header, *body = content.splitlines(keepends=True)
    assert joined.startswith(header)
    assert sorted(joined.splitlines(keepends=True)[1:]) == sorted(body)
    assert sum(p.count(b"\n") - 1 for p in parts.values()) == len(body)


def test_join_keeps_one_csv_per_schema():
    other = b"data;id;mois;heure_de_paris\n"
    parts = [HEADER + line("2020-10-24T10:00:00+00:00"), other + b"x;42;10;2020-10-25T10:00:00+00:00\n", HEADER]
    joined = join_days(parts)
    assert joined == [HEADER + line("2020-10-24T10:00:00+00:00"), other + b"x;42;10;2020-10-25T10:00:00+00:00\n"]


def test_store_replaces_a_day_whole(tmp_path):
    store = RawStore(tmp_path)
    day = dt.date(2020, 10, 25)
    store.write_day("st42_x", day, {"42-station-meteo-x": b"a", "42-station-meteo-x-archive-2019": b"b"})
    store.write_day("st42_x", day, {"42-station-meteo-x": b"c"})
    assert store.read_day("st42_x", day) == {"42-station-meteo-x": b"c"}
    assert [p.name for p in (tmp_path / "st42_x" / "2020").iterdir()] == ["2020-10-25"]


def test_a_failed_write_leaves_the_previous_day(tmp_path):
    store = RawStore(tmp_path)
    day = dt.date(2020, 10, 25)
    store.write_day("st42_x", day, {"42-station-meteo-x": b"old"})
    with pytest.raises(ValueError):
        store.write_day("st42_x", day, {"42-station-meteo-x": b"new", "../escape": b"!"})
    assert store.read_day("st42_x", day) == {"42-station-meteo-x": b"old"}
    assert [p.name for p in (tmp_path / "st42_x" / "2020").iterdir()] == ["2020-10-25"]


def test_hostile_station_keys_are_refused(tmp_path):
    with pytest.raises(ValueError):
        RawStore(tmp_path).day_dir("../../etc", dt.date(2020, 1, 1))


def test_missing_day_is_a_clear_error(tmp_path):
    with pytest.raises(MissingRawPartition, match="raw/st42_x has no stored partition 2020-10-25"):
        RawStore(tmp_path).read_day("st42_x", dt.date(2020, 10, 25))
