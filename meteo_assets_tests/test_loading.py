"""The notebook loading API (`meteo_assets.load*`, `local_time`) on data materialised from the
stand-in portal through Dagster, in both storage modes; and reads in a loop while another process
backfills a range, which must neither fail nor starve the writer, and must see whole partitions only.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import threading
import time
from collections import Counter

import duckdb
import numpy as np
import pandas as pd
import pytest
from dagster import AssetKey

from meteo_assets import load, load_clean, load_daily, load_network_daily, load_stations, local_time
from meteo_assets.config import PROJECT_ROOT, Settings, load_network
from meteo_assets.resources import build_resources
from meteo_assets.storage.write_intent import WriterBusy, announced_write, write_announced
from meteo_assets.transform import DAILY_COLUMNS
from meteo_assets.transform.network import NETWORK_DAILY_COLUMNS
from meteo_assets_tests.fake_portal import FakePortal, default_network
from meteo_assets_tests.materialised import materialise
from meteo_assets_tests.s3_server import STORAGE_MODES, once_per_storage_mode, s3_server  # noqa: F401 (fixture)
from meteo_assets_tests.stand_in import stand_in

# six generated stations: one of them split into archive datasets, two sharing the number prefix 74
SPECS = default_network(6, "2023-06-20", "2023-07-12", seed=6)
FIRST, LAST = dt.date(2023, 6, 28), dt.date(2023, 7, 3)  # across a month end: two lake files per station
DAYS = [FIRST + dt.timedelta(days=i) for i in range((LAST - FIRST).days + 1)]


@pytest.fixture(scope="module")
def datasets(tmp_path_factory, s3_server):
    """The same network materialised once per storage mode (raw, clean, daily, stations, network/daily)."""
    with once_per_storage_mode(tmp_path_factory, s3_server, SPECS, lambda: materialise(FIRST, LAST)) as modes:
        yield {mode: (env, settings) for mode, (env, settings, _) in modes.items()}


def use(monkeypatch, settings: dict[str, str]) -> None:
    for name, value in settings.items():
        monkeypatch.setenv(name, value)


@pytest.fixture
def local(datasets, monkeypatch):
    env, settings = datasets["local"]
    use(monkeypatch, settings)
    return env


@pytest.fixture(params=STORAGE_MODES)
def stored(request, datasets, monkeypatch):
    env, settings = datasets[request.param]
    use(monkeypatch, settings)
    return env


def stations():
    return load_network(Settings.from_env().datasets_file).stations


def with_unique_number():
    numbers = Counter(s.number for s in stations())
    return next(s for s in stations() if numbers[s.number] == 1 and s.archives)


def test_stations_by_key_dataset_id_or_number(local):
    station = with_unique_number()
    by_key = load_daily(stations=station.key)
    assert set(by_key["station"]) == {station.key}
    assert by_key["date"].dt.date.tolist() == DAYS
    for ref in (station.dataset, station.number, str(station.number), [station.key], (station.number,)):
        pd.testing.assert_frame_equal(load_daily(stations=ref), by_key)

    other = next(s for s in stations() if s.key != station.key)
    both = load_daily(stations=[other.dataset, station.number])
    assert both["station"].tolist() == sorted([station.key] * len(DAYS) + [other.key] * len(DAYS))

    shared = next(n for n, count in Counter(s.number for s in stations()).items() if count > 1)
    with pytest.raises(KeyError, match=f"station number {shared} is ambiguous: st{shared}_.*, st{shared}_.*; use a key"):
        load_daily(stations=shared)
    with pytest.raises(KeyError, match="unknown station 'st99_nowhere'"):
        load_clean(stations="st99_nowhere")


def test_days_as_strings_dates_or_datetimes_with_end_included(local):
    day, last = DAYS[1], DAYS[3]
    want = load_daily(start=day.isoformat(), end=last.isoformat())
    assert sorted(set(want["date"].dt.date)) == DAYS[1:4]
    assert len(want) == len(stations()) * 3
    paris_midnight_in_utc = dt.datetime.combine(day - dt.timedelta(days=1), dt.time(22, 30), tzinfo=dt.timezone.utc)
    for start, end in (
        (day, last),
        (dt.datetime.combine(day, dt.time(23, 59)), dt.datetime.combine(last, dt.time(0, 1))),
        (pd.Timestamp(day), pd.Timestamp(last)),
        (f"{day}T08:00:00", last),
        (paris_midnight_in_utc, last),  # an aware moment counts on its Paris day: 00:30 on `day`
    ):
        pd.testing.assert_frame_equal(load_daily(start=start, end=end), want)

    assert set(load_daily(start=LAST)["date"].dt.date) == {LAST}
    assert set(load_daily(end=FIRST)["date"].dt.date) == {FIRST}
    with pytest.raises(ValueError, match=f"end {day} is before start {last}"):
        load_daily(start=last, end=day)

    one_day = load_clean(start=day, end=day)
    assert set(local_time(one_day["observed_at"]).dt.date) == {day}
    assert len(one_day) == want.loc[want["date"].dt.date == day, "slots_reported"].sum() > 0


def test_observed_at_is_utc_and_local_time_is_paris_time(local):
    obs = load_clean(start=FIRST, end=LAST)
    assert str(obs["observed_at"].dt.tz) == "UTC"
    paris = local_time(obs["observed_at"])
    assert str(paris.dt.tz) == "Europe/Paris"
    assert (paris.dt.tz_localize(None) == obs["local_time"]).all()  # the table's wall-clock column agrees
    assert ((paris - obs["observed_at"]) == pd.Timedelta(0)).all()  # the same instants
    assert set(paris.dt.hour) == set(range(24)) and set(paris.dt.date) == set(DAYS)


def test_local_time_is_unambiguous_on_the_night_clocks_go_back():
    instants = pd.Series(pd.to_datetime(["2020-10-25 00:30", "2020-10-25 01:30"], utc=True))
    assert [t.isoformat() for t in local_time(instants)] == ["2020-10-25T02:30:00+02:00", "2020-10-25T02:30:00+01:00"]
    assert local_time(pd.Timestamp("2020-07-01 10:00")).isoformat() == "2020-07-01T12:00:00+02:00"  # naive = UTC
    assert local_time(dt.datetime(2020, 1, 1, 23, 0, tzinfo=dt.timezone.utc)).isoformat() == "2020-01-02T00:00:00+01:00"
    assert list(local_time(pd.DatetimeIndex(["2020-03-29 00:59Z", "2020-03-29 01:00Z"])).hour) == [1, 3]


def test_load_takes_any_asset_key(stored):
    station = with_unique_number()
    daily = load_daily(stations=station.key, start=FIRST, end=LAST)
    for key in (f"daily/{station.key}", f"daily/{station.number}", f"daily/{station.dataset}", ["daily", station.key],
                AssetKey(["daily", station.key]), f"/daily/{station.key}/"):
        pd.testing.assert_frame_equal(load(key, start=FIRST, end=LAST), daily)
    pd.testing.assert_frame_equal(load(f"clean/{station.number}", start=DAYS[2], end=DAYS[2]),
                                  load_clean(stations=station.key, start=DAYS[2], end=DAYS[2]))
    pd.testing.assert_frame_equal(load("clean", start=DAYS[2], end=DAYS[2]), load_clean(start=DAYS[2], end=DAYS[2]))
    pd.testing.assert_frame_equal(load("daily"), load_daily())
    pd.testing.assert_frame_equal(load("network/daily", start=DAYS[1]), load_network_daily(start=DAYS[1]))
    pd.testing.assert_frame_equal(load(AssetKey("stations")), load_stations())

    with pytest.raises(ValueError, match="stations is one table, not daily partitions"):
        load("stations", start=FIRST)
    with pytest.raises(ValueError, match="dashboard is a static site"):
        load("dashboard")
    with pytest.raises(KeyError, match="no asset 'weather/st42'"):
        load("weather/st42")
    with pytest.raises(KeyError, match="unknown station 'st99_nowhere'"):
        load("daily/st99_nowhere")


def test_raw_gives_the_stored_portal_bytes_per_day(stored):
    station = with_unique_number()
    raw = load(f"raw/{station.number}", start=DAYS[0], end=DAYS[1])
    assert list(raw) == DAYS[:2]
    store = build_resources(Settings.from_env())["raw_io_manager"].store()
    assert raw == {day: store.read_day(station.key, day) for day in DAYS[:2]}
    for files in raw.values():  # one file per source dataset (the live one, an archive), header first
        assert set(files) <= set(station.datasets)
        day_rows = 0
        for dataset, content in files.items():
            header, *rows = content.splitlines()
            assert header == ";".join(stored.portal.header(dataset)).encode()
            assert set(rows) <= {line.rstrip(b"\r\n") for line in stored.portal.lines(dataset)}
            day_rows += len(rows)
        assert day_rows > 24

    assert list(load(f"raw/{station.key}", start=LAST)) == [LAST]  # end defaults to start
    with pytest.raises(FileNotFoundError, match=f"raw/{station.key} has no stored partition {LAST + dt.timedelta(days=1)}"):
        load(f"raw/{station.key}", start=LAST, end=LAST + dt.timedelta(days=3))
    with pytest.raises(ValueError, match=r"give start="):
        load(f"raw/{station.key}")


def test_network_daily_has_every_station_day_with_its_zone_and_index(stored):
    frame = load_network_daily(start=FIRST, end=LAST)
    enabled = sorted(s.key for s in stations() if s.enabled)
    assert list(frame.columns) == list(NETWORK_DAILY_COLUMNS)
    assert len(frame) == len(enabled) * len(DAYS)
    assert list(zip(frame["date"].dt.date, frame["station"])) == [(day, key) for day in DAYS for key in enabled]
    median = frame.groupby("date")["temperature_mean_c"].transform("median")
    assert frame["heat_island_index_c"].notna().sum() > len(frame) / 2
    assert np.allclose(frame["heat_island_index_c"], frame["temperature_mean_c"] - median, atol=0.011, equal_nan=True)
    zones = load_stations().set_index("station")["lcz"]
    assert (frame["lcz"].fillna("?") == frame["station"].map(zones).fillna("?")).all()
    assert frame["lcz"].notna().sum() >= len(frame) - len(DAYS)  # at most one station missing from the catalogue

    station = with_unique_number()
    one = load_network_daily(stations=station.number, start=DAYS[2], end=DAYS[2])
    assert one[["station", "date"]].values.tolist() == [[station.key, pd.Timestamp(DAYS[2])]]
    daily = load_daily(start=FIRST, end=LAST).sort_values(["date", "station"], ignore_index=True)
    pd.testing.assert_frame_equal(frame[list(DAILY_COLUMNS)], daily)  # the stations' own daily rows
    assert load_network_daily(start=LAST + dt.timedelta(days=1)).empty
    assert len(load_network_daily()) == len(frame)


def test_both_storage_modes_load_the_same(datasets):
    loaded = {}
    for mode, (env, settings) in datasets.items():
        with pytest.MonkeyPatch.context() as patch:
            use(patch, settings)
            station = with_unique_number()
            loaded[mode] = (load_network_daily(), load("network/daily", start=DAYS[1], end=DAYS[2]),
                            load(f"raw/{station.number}", start=DAYS[3]), load(f"daily/{station.dataset}"))
    local_frames, s3_frames = loaded["local"], loaded["s3"]
    for local_value, s3_value in zip(local_frames, s3_frames):
        if isinstance(local_value, pd.DataFrame):
            pd.testing.assert_frame_equal(local_value, s3_value)
        else:
            assert local_value == s3_value


def test_nothing_materialised_yet_says_so(tmp_path, monkeypatch):
    monkeypatch.setenv("METEO_STORAGE", "local")
    monkeypatch.setenv("METEO_DATA_DIR", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="no database at .*meteo.duckdb: materialise some assets first"):
        load_daily()
    duckdb.connect(str(tmp_path / "meteo.duckdb")).close()
    with pytest.raises(FileNotFoundError, match="stations is not materialised in .*meteo.duckdb"):
        load_stations()
    assert load_network_daily().columns.tolist() == list(NETWORK_DAILY_COLUMNS) and load_network_daily().empty
    assert load_daily(start="2023-07-01").empty


def test_a_writer_announces_itself_and_readers_keep_away(tmp_path):
    database = tmp_path / "meteo.duckdb"
    assert not write_announced(database)  # no writer ever: nothing to see, nothing created
    assert not (tmp_path / "meteo.duckdb.write-intent").exists()
    with announced_write(database):
        assert write_announced(database)
        with pytest.raises(WriterBusy, match=f"another process has been writing {database} .* is a run stuck"):
            with announced_write(database, wait_seconds=0.2):
                pass
    assert not write_announced(database)


def test_a_read_waits_for_an_announced_writer(local):
    announced, released = threading.Event(), threading.Event()

    def write() -> None:
        with announced_write(Settings.from_env().duckdb_path):
            announced.set()
            time.sleep(0.5)
            released.set()

    writer = threading.Thread(target=write)
    writer.start()
    announced.wait()
    frame = load_daily(start=FIRST, end=FIRST)
    assert released.is_set(), "the read did not wait for the writer"
    assert len(frame) == len(stations())
    writer.join()


# --- reading while another process backfills -------------------------------------------------------

BACKFILL_SPECS = default_network(6, "2023-04-25", "2023-06-05", seed=6)
BACKFILL_FIRST, BACKFILL_BEFORE, BACKFILL_LAST = dt.date(2023, 5, 1), dt.date(2023, 5, 4), dt.date(2023, 5, 16)
READER_THREADS = 2  # e.g. two notebooks' kernels, or a notebook and a dashboard


def snapshot() -> dict[str, tuple]:
    """What a reader sees of each table: `clean/<station>` its rows per Paris day, `daily/<station>`
    its days, `network/daily` its rows per day."""
    clean = load_clean(start=BACKFILL_FIRST, end=BACKFILL_LAST)
    daily = load_daily(start=BACKFILL_FIRST, end=BACKFILL_LAST)
    network = load_network_daily(start=BACKFILL_FIRST, end=BACKFILL_LAST)
    per_day = clean.groupby([clean["station"], clean["local_time"].dt.date]).size()
    state = {"network/daily": tuple(network.groupby(network["date"].dt.date).size().items())}
    for key in sorted({s.key for s in stations()}):
        state[f"clean/{key}"] = tuple(per_day[key].items()) if key in per_day.index.get_level_values(0) else ()
        state[f"daily/{key}"] = tuple(daily.loc[daily["station"] == key, "date"].dt.date)
    return state


@pytest.mark.parametrize("mode", STORAGE_MODES)
def test_reads_in_a_loop_while_another_process_backfills(tmp_path, monkeypatch, request, mode):
    settings = request.getfixturevalue("s3_server").storage_env() if mode == "s3" else {"METEO_STORAGE": "local"}
    use(monkeypatch, settings)
    with stand_in(tmp_path, FakePortal(BACKFILL_SPECS), BACKFILL_SPECS) as env, env.activated():
        # the first days exist already: the backfill replaces them and adds the others
        materialise(BACKFILL_FIRST, BACKFILL_BEFORE, network=False)
        before = snapshot()
        log = tmp_path / "backfill.log"
        with open(log, "w") as output:
            writer = subprocess.Popen(
                [sys.executable, "-m", "meteo_assets.run", "--start", BACKFILL_FIRST.isoformat(),
                 "--end", BACKFILL_LAST.isoformat()],
                env={**os.environ, "METEO_AUTOMATION": "off"}, cwd=PROJECT_ROOT, stdout=output, stderr=subprocess.STDOUT,
            )
            seen: list[list[dict]] = [[] for _ in range(READER_THREADS)]
            errors: list[BaseException] = []

            def read_in_a_loop(mine: list[dict]) -> None:
                while writer.poll() is None:
                    try:
                        mine.append(snapshot())
                    except Exception as exc:  # any error on the reading side fails the test
                        errors.append(exc)
                        time.sleep(0.1)

            readers = [threading.Thread(target=read_in_a_loop, args=(mine,)) for mine in seen]
            for reader in readers:
                reader.start()
            for reader in readers:
                reader.join(timeout=900)
            if writer.poll() is None:
                writer.kill()
            writer.wait()
        summary = log.read_text(encoding="utf-8")
        after = snapshot()

    assert writer.returncode == 0 and "FAILED" not in summary, summary[-3000:]
    assert not errors, errors[:3]
    all_days = tuple(BACKFILL_FIRST + dt.timedelta(days=i) for i in range((BACKFILL_LAST - BACKFILL_FIRST).days + 1))
    stations_written = [name.partition("/")[2] for name, rows in after.items() if name.startswith("clean/") and rows]
    assert len(stations_written) >= 4
    for key in stations_written:
        assert after[f"daily/{key}"] == all_days
        clean_before, clean_after = dict(before[f"clean/{key}"]), dict(after[f"clean/{key}"])
        assert max(clean_after) > BACKFILL_BEFORE and clean_after | clean_before == clean_after  # first days: same rows
    assert not before["network/daily"] and [day for day, _ in after["network/daily"]] == list(all_days)
    changed = [name for name in after if after[name] != before[name]]
    assert len(changed) == 2 * len(stations_written) + 1

    # every read saw each table as it was before the backfill or as the backfill left it: whole
    # days, the whole window at once (one DuckDB transaction per table; in S3 mode one PUT per
    # month file, and the window lies in one month), and never going back
    overlapping = 0
    for reads in seen:
        assert len(reads) > 5
        progress: dict[str, int] = {}
        for state in reads:
            for name in changed:
                assert state[name] in (before[name], after[name]), f"a read saw {name} half written: {state[name]}"
                stage = int(state[name] == after[name])
                assert stage >= progress.get(name, 0), f"a read saw {name} go back to its previous version"
                progress[name] = stage
            overlapping += {progress[f"clean/{key}"] for key in stations_written} == {0, 1}
    assert overlapping, "no read happened while only some stations were written: the reads did not overlap the backfill"
