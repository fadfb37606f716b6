"""The raw layer keeps what the portal sent, byte for byte, one folder per Paris day."""

import datetime as dt
import os
import random
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


def split_line_by_line(content: bytes, days: list[dt.date]) -> dict[dt.date, bytes]:
    """The plain reading of `split_by_day`'s contract, one line at a time: the oracle for its numpy form."""
    lines = content.splitlines(keepends=True)
    if not lines:
        return {day: b"" for day in days}
    fields = lines[0].rstrip(b"\r\n").split(b";")
    column = fields.index(b"heure_de_paris") if b"heure_de_paris" in fields else None
    body: dict[dt.date, list[bytes]] = {day: [] for day in days}
    for text in lines[1:]:
        parts = text.split(b";", column + 1) if column is not None else []
        own = aware_day(parts[column]) if len(parts) > column else None
        body[own if own in body else days[0]].append(text)
    return {day: lines[0] + b"".join(texts) for day, texts in body.items()}


@pytest.mark.parametrize("seed", range(8))
def test_split_matches_a_line_by_line_reading_on_messy_exports(seed):
    """Shuffled generated lines with every form seen or feared: CRLF and LF, a lone CR, padded and
    `Z` stamps, offsets of minutes, missing fields, junk, an unterminated last line, the timestamp
    as the last field, and repeated days in the request. Seeds 6 and 7 add stamps in the usual
    layout that are invalid or far off (hour 24, year 999, offset +24:00)."""
    rng = random.Random(seed)  # noqa: S311 -- test data, not security
    spec = default_network(1, "2020-10-20", "2020-10-30", seed=seed)[0]
    portal = FakePortal([spec])
    header = ";".join(portal.header(spec.dataset_id)).encode()
    if seed % 3 == 2:  # the timestamp as the last field
        names = header.split(b";")
        header = b";".join([n for n in names if n != b"heure_de_paris"] + [b"heure_de_paris"])
    lines = [text + rng.choice([b"\r\n", b"\n"]) for text in portal.lines(spec.dataset_id)]
    lines = [odd_form(text, rng, unreadable=seed >= 6) if rng.random() < 0.05 else text for text in lines]
    rng.shuffle(lines[: len(lines) // 3])
    lines += [b"5,5120252227E+023;;;\r\n", b"just one field\n", b"a;b\rc;d\n", b";;;;;;;;;;;;;;;;;;;;;;;;;;;;;;;;;;;;;;;;;\n"]
    rng.shuffle(lines)
    content = header + b"\r\n" + b"".join(lines)
    content = content.rstrip(b"\r\n") if seed % 2 else content
    days = [dt.date(2020, 10, 21) + dt.timedelta(days=i) for i in range(7)] + [dt.date(2020, 10, 22)]
    expected = split_line_by_line(content, list(dict.fromkeys(days)))
    assert split_by_day(content, days) == expected
    assert split_by_day(b"", days) == {day: b"" for day in days}
    assert split_by_day(header + b"\n", days[:2]) == {day: header + b"\n" for day in days[:2]}


def odd_form(text: bytes, rng: random.Random, unreadable: bool = False) -> bytes:
    """The same line with its timestamp in another form (padded, `Z`, an offset of minutes, broken,
    the same instant at other whole-hour offsets;
    `unreadable`: also in the usual layout but invalid, or beyond the years pandas holds)."""
    stamp = next((field for field in text.split(b";") if len(field) == 25 and field[10:11] == b"T"), None)
    if stamp is None:  # the generator's junk lines have no timestamp
        return text
    instant = dt.datetime.fromisoformat(stamp.decode())
    forms = [b" " + stamp + b" ", stamp[:19] + b"Z", stamp[:19] + b"+05:30", stamp[:14] + b"99" + stamp[16:], b"",
             *(instant.astimezone(dt.timezone(dt.timedelta(hours=h))).isoformat().encode() for h in (2, -3, 11))]
    if unreadable:
        forms += [stamp[:11] + b"24" + stamp[13:], b"0999" + stamp[4:], stamp[:19] + b"+24:00"]
    other = rng.choice(forms)
    return text.replace(stamp, other, 1)


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


def paris_day(stamp: bytes) -> dt.date:
    return dt.datetime.fromisoformat(stamp.strip().decode()).astimezone(PARIS).date()


def aware_day(stamp: bytes) -> dt.date | None:
    """The Paris day of an ISO instant with an offset; None for anything else."""
    try:
        instant = dt.datetime.fromisoformat(stamp.strip().decode())
    except (UnicodeDecodeError, ValueError):
        return None
    return instant.astimezone(PARIS).date() if instant.tzinfo else None


def stamp_day(stamp: bytes) -> dt.date | None:
    try:
        return paris_day(stamp)
    except ValueError:
        return None


@pytest.mark.parametrize("newline", [b"\n", b"\r\n"])
def test_split_of_a_generated_export_puts_each_line_in_its_day_and_keeps_every_byte(newline):
    spec = default_network(7, "2020-10-20", "2020-11-03", seed=8)[6]  # with quirks
    portal = FakePortal([spec])
    header = ";".join(portal.header(spec.dataset_id)).encode() + newline
    body = [line.rstrip(b"\r\n") + newline for line in portal.lines(spec.dataset_id)]
    column = portal.header(spec.dataset_id).index("heure_de_paris")

    def with_stamp(line: bytes, change) -> bytes:
        fields = line.split(b";")
        fields[column] = change(fields[column])
        return b";".join(fields)

    in_its_day = {  # other forms of a timestamp: the line still goes to its own day
        with_stamp(body[100], lambda stamp: b" " + stamp + b" "): paris_day(body[100].split(b";")[column]),
        with_stamp(body[101], lambda stamp: stamp[:10] + b" " + stamp[11:]): paris_day(body[101].split(b";")[column]),
        with_stamp(body[102], lambda stamp: stamp[:19] + b"Z"): paris_day(body[102].split(b";")[column]),
    }
    unusable = [b"5,5120252227E+023;;;" + newline, with_stamp(body[103], lambda _: b"2020-13-45T99:00:00+00:00")]
    last = body[104][: -len(newline)]  # the last line, without a line break
    content = header + b"".join(body[:150][::-1] + body[150:] + list(in_its_day) + unusable + [last])
    days = [dt.date(2020, 10, 24) + dt.timedelta(days=i) for i in range(5)] + [dt.date(2020, 10, 24)]
    parts = split_by_day(content, days)

    assert list(parts) == days[:5]
    assert all(part.startswith(header) for part in parts.values())
    stored = [line for part in parts.values() for line in part[len(header):].splitlines(keepends=True)]
    assert sorted(stored) == sorted(content[len(header):].splitlines(keepends=True))  # every line, once
    for day, part in parts.items():
        for line in part[len(header):].splitlines(keepends=True):
            own = in_its_day.get(line) or stamp_day(line.split(b";")[column] if line.count(b";") >= column else b"")
            # no usable timestamp, or a day outside the range: the first day keeps it
            assert day == (own if own in parts else days[0])
    assert all(line in parts[days[0]] for line in unusable)
    assert parts[days[4]].count(newline) > 20  # a whole day of this hourly station


def test_lines_sharing_an_hour_but_not_an_offset_each_go_to_their_own_day():
    """Days are looked up once per hour and offset: an offset of minutes, another sign or another
    form of the same hour must not borrow a neighbour's day."""
    stamps = [
        "2020-10-24T21:45:00+00:00",  # 23:45 Paris, 24th
        "2020-10-24T21:50:00+05:30",  # 16:20 UTC: 18:20 Paris, 24th
        "2020-10-24T21:10:00-03:00",  # 00:10 UTC on the 25th: 02:10 Paris, 25th
        "2020-10-24T21:59:00+00:00",  # 23:59 Paris, 24th
        "2020-10-24T22:00:00+00:00",  # 00:00 Paris, 25th
        "2020-10-24T21:30:00Z",  # another form, same hour: 23:30 Paris, 24th
        "2020-10-24T23:30:00+02:00",  # 21:30 UTC: 23:30 Paris, 24th
        "2020-10-25T00:30:00+02:00",  # 22:30 UTC: 00:30 Paris, 25th
        "2020-10-25T01:30:00+01:00",  # 00:30 UTC on the fall-back day: 02:30 Paris, 25th
    ]
    lines = [line(stamp, str(i)) for i, stamp in enumerate(stamps)]
    days = [dt.date(2020, 10, 24), dt.date(2020, 10, 25)]
    parts = split_by_day(HEADER + b"".join(lines), days)
    for stamp, text in zip(stamps, lines):
        assert text in parts[paris_day(stamp.encode())], stamp
    assert sum(part.count(b"\n") - 1 for part in parts.values()) == len(lines)
