"""The raw layer keeps what the portal sent, byte for byte, one folder per Paris day."""

import datetime as dt
import os
import time

import pytest

from meteo_assets.portal.days import PARIS, join_days, split_by_day
from meteo_assets.storage.raw_files import MissingRawPartition, RawStore

from meteo_assets_tests.fake_portal import FakePortal, default_network
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


def test_a_range_that_fails_midway_swaps_in_no_day(tmp_path):
    store = RawStore(tmp_path)
    days = [dt.date(2020, 10, 24), dt.date(2020, 10, 25)]
    store.write_days("st42_x", {day: {"42-station-meteo-x": b"old"} for day in days})
    with pytest.raises(ValueError):
        store.write_days("st42_x", {days[0]: {"42-station-meteo-x": b"new"}, days[1]: {"../escape": b"!"}})
    assert store.read_days("st42_x", days) == {day: {"42-station-meteo-x": b"old"} for day in days}
    assert sorted(p.name for p in (tmp_path / "st42_x" / "2020").iterdir()) == ["2020-10-24", "2020-10-25"]


def test_folders_a_killed_writer_left_are_removed_once_old(tmp_path):
    store = RawStore(tmp_path)
    year = tmp_path / "st42_x" / "2020"
    abandoned, in_progress = year / ".2020-10-25.dead.tmp", year / ".2020-10-26.live.tmp"
    for folder in (abandoned, in_progress):
        folder.mkdir(parents=True)
    hours_ago = time.time() - 2 * 3600
    os.utime(abandoned, (hours_ago, hours_ago))
    store.write_day("st42_x", dt.date(2020, 10, 25), {"42-station-meteo-x": b"a"})
    assert sorted(p.name for p in year.iterdir()) == [in_progress.name, "2020-10-25"]


def one_line_at_a_time(content: bytes, days: list[dt.date]) -> dict[dt.date, bytes]:
    """The reference: each line's timestamp field parsed on its own (what `split_by_day` vectorises)."""
    lines = content.splitlines(keepends=True)
    header, body = lines[0], {day: [] for day in days}
    column = header.rstrip(b"\r\n").split(b";").index(b"heure_de_paris")
    for text in lines[1:]:
        parts = text.split(b";", column + 1)
        day = None
        if len(parts) > column:
            try:
                day = dt.datetime.fromisoformat(parts[column].strip().decode()).astimezone(PARIS).date()
            except (UnicodeDecodeError, ValueError):
                day = None
        body[day if day in body else days[0]].append(text)
    return {day: header + b"".join(chosen) for day, chosen in body.items()}


@pytest.mark.parametrize("newline", [b"\n", b"\r\n"])
def test_split_agrees_with_a_line_by_line_reading_of_a_generated_export(newline):
    spec = default_network(7, "2020-10-20", "2020-11-03", seed=8)[6]  # with quirks
    portal = FakePortal([spec])
    header = ";".join(portal.header(spec.dataset_id)).encode() + newline
    body = [line.rstrip(b"\r\n") + newline for line in portal.lines(spec.dataset_id)]
    column = portal.header(spec.dataset_id).index("heure_de_paris")
    stamp_of = body[40].split(b";")[column]
    junk = [
        b"5,5120252227E+023;;;" + newline,  # too few fields
        body[40].replace(stamp_of, b" " + stamp_of + b" "),  # spaces around the timestamp
        body[41].replace(stamp_of[:19], stamp_of[:10] + b" " + stamp_of[11:19]),  # another ISO form
        body[42].replace(stamp_of, b"2020-13-45T99:00:00+00:00"),  # the usual length, not a date
        body[43].replace(stamp_of, stamp_of[:19] + b"Z"),
        body[44][:-len(newline)],  # the last line, without a line break
    ]
    content = header + b"".join(body[:200][::-1] + body[200:] + junk)  # not in time order either
    days = [dt.date(2020, 10, 24) + dt.timedelta(days=i) for i in range(5)] + [dt.date(2020, 10, 24)]
    expected = one_line_at_a_time(content, list(dict.fromkeys(days)))
    assert split_by_day(content, days) == expected
    assert sum(part.count(newline) - 1 for part in expected.values()) == len(body) + len(junk) - 1
