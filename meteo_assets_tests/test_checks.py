"""Quality and freshness checks: each one fails on crafted data and passes on clean data; through
Dagster, one result per check per ranged run, and a broken schema blocks clean and daily."""

import datetime as dt

import numpy as np
import pandas as pd
import pytest
from dagster import (
    AssetCheckExecutionContext,
    AssetKey,
    AssetMaterialization,
    AssetObservation,
    AssetSelection,
    AssetSpec,
    DagsterEventType,
    DagsterInstance,
    Definitions,
    MetadataValue,
    define_asset_job,
    multi_asset_check,
)
from dagster._core.events import DagsterEvent, StepMaterializationData

from meteo_assets.checks import FRESH_UNTIL_KEY, freshness_result, station_freshness_checks
from meteo_assets.config import load_network
from meteo_assets.definitions import PIPELINE_JOB, build_definitions
from meteo_assets.partitions import daily_partitions
from meteo_assets.portal.days import split_by_day
from meteo_assets.transform import (
    PARIS,
    ContractSettings,
    clean_observations,
    daily_summary,
    empty_clean_frame,
    parse_export,
)
from meteo_assets.transform import quality
from meteo_assets_tests.fake_portal import FakePortal, StationSpec, split_archives
from meteo_assets_tests.paths import research_file
from meteo_assets_tests.stand_in import stand_in

SPEC = StationSpec("70-station-meteo-toulouse-prairie-des-filtres", 70, "2020-10-01", "2020-10-15", seed=3, quirks=False)
DAYS = [dt.date(2020, 10, 5) + dt.timedelta(days=n) for n in range(5)]
NOW = dt.datetime(2020, 11, 17, tzinfo=dt.timezone.utc)
SETTINGS = ContractSettings()


def export_of(portal: FakePortal, dataset: str) -> bytes:
    return (";".join(portal.header(dataset)) + "\n").encode() + b"".join(line + b"\n" for line in portal.lines(dataset))


@pytest.fixture(scope="module")
def generated():
    """Raw days, clean rows and daily rows of a realistic generated station (no quirks)."""
    content = export_of(FakePortal([SPEC]), SPEC.dataset_id)
    every_day = [dt.date(2020, 10, 1) + dt.timedelta(days=n) for n in range(14)]
    raw = {d.isoformat(): {SPEC.dataset_id: part} for d, part in split_by_day(content, every_day).items() if d in DAYS}
    # the clean rows the daily asset would read: the run's days and their neighbours
    window = (pd.Timestamp(f"{DAYS[0] - dt.timedelta(days=1)}", tz=PARIS).tz_convert("UTC"),
              pd.Timestamp(f"{DAYS[-1] + dt.timedelta(days=2)}", tz=PARIS).tz_convert("UTC"))
    clean = clean_observations(parse_export(content).frame, station="st70", sensor_id=70, now=NOW, window=window).frame
    daily = daily_summary(clean, station="st70", days=DAYS)
    return raw, clean, daily


# --------------------------------------------------------------------------- raw (blocking)
def test_raw_checks_pass_on_portal_exports_real_and_generated(generated):
    raw, _, _ = generated
    assert quality.raw_schema(raw).passed and quality.raw_bytes(raw).passed
    real = {
        "2020-10-25": {"42-station-meteo-toulouse-parc-compans-cafarelli": research_file("station42_compans_cafarelli_2020-10-24_26.csv").read_bytes()},
        "2020-10-26": {"58-station-meteo-toulouse-fondeyre": research_file("station58_fondeyre_39cols_sample.csv").read_bytes()},
    }
    assert quality.raw_schema(real).passed
    verdict = quality.raw_bytes(real)
    assert verdict.passed and verdict.figures["rows"] > 200


def test_raw_schema_names_the_missing_field_and_the_days(generated):
    raw, _, _ = generated
    drifted = {day: {ds: content.replace(b"temperature_en_degre_c", b"temperature", 1) for ds, content in files.items()}
               for day, files in raw.items()}
    drifted["2020-10-09"] = raw["2020-10-09"]  # only the first four days drifted
    verdict = quality.raw_schema(drifted)
    assert not verdict.passed
    assert sorted(verdict.failed_days) == [d.isoformat() for d in DAYS[:4]]
    assert "temperature_en_degre_c" in verdict.summary and SPEC.dataset_id in verdict.summary
    assert "2020-10-05…2020-10-08" in verdict.summary


def test_raw_bytes_fail_on_undecodable_or_unsplittable_exports(generated):
    raw, _, _ = generated
    day = "2020-10-06"
    binary = {**raw, day: {SPEC.dataset_id: raw[day][SPEC.dataset_id].replace(b"ISS", b"IS\xff", 1)}}
    verdict = quality.raw_bytes(binary)
    assert not verdict.passed and list(verdict.failed_days) == [day] and "not UTF-8" in verdict.failed_days[day]
    header, _, body = raw[day][SPEC.dataset_id].partition(b"\n")
    commas = {**raw, day: {SPEC.dataset_id: header + b"\n" + body.replace(b";", b",")}}
    assert not quality.raw_bytes(commas).passed
    # a couple of malformed rows are clean's business: counted, not blocking
    lines = body.split(b"\n")
    lines[3] = lines[3] + b";extra"
    some = {**raw, day: {SPEC.dataset_id: header + b"\n" + b"\n".join(lines)}}
    verdict = quality.raw_bytes(some)
    assert verdict.passed and verdict.figures["malformed_rows"] == 1


def test_an_empty_window_passes_the_raw_checks():
    empty = {"2020-10-05": {SPEC.dataset_id: b""}, "2020-10-06": {SPEC.dataset_id: b"data;id\n"}}
    assert quality.raw_bytes(empty).passed
    assert quality.raw_schema({"2020-10-05": {SPEC.dataset_id: b""}}).passed


# --------------------------------------------------------------------------- clean
def test_clean_checks_pass_on_clean_data(generated):
    raw, clean, _ = generated
    assert quality.rejected_share(quality.raw_rows_by_day(raw), clean, SETTINGS.max_rejected_share).passed
    assert quality.temperature_steps(clean, SETTINGS.max_temperature_step_c).passed
    assert quality.flat_lines(clean, SETTINGS.flat_temperature_hours, SETTINGS.flat_humidity_hours).passed
    assert quality.gust_below_mean(clean).passed


def test_clean_steps_and_gusts_pass_on_a_real_station():
    content = research_file("station42_compans_cafarelli_2020-10-24_26.csv").read_bytes()
    clean = clean_observations(parse_export(content).frame, station="st42", sensor_id=42, now=NOW).frame
    assert len(clean) > 250
    assert quality.temperature_steps(clean, SETTINGS.max_temperature_step_c).passed
    assert quality.gust_below_mean(clean).passed


def test_rejected_share_fails_on_a_day_with_many_rejected_rows(generated):
    raw, clean, _ = generated
    rows = quality.raw_rows_by_day(raw)
    assert rows["2020-10-07"] == 96
    rows["2020-10-07"] += 40  # 40 rows of another sensor that clean rejected
    verdict = quality.rejected_share(rows, clean, 0.2)
    assert not verdict.passed and list(verdict.failed_days) == ["2020-10-07"]
    assert verdict.failed_days["2020-10-07"] == "29% of 136 rows rejected"
    assert verdict.figures["rows_rejected"] == 40


def test_temperature_step_above_8_degrees_fails(generated):
    _, clean, _ = generated
    spiky = clean.copy()
    slot = spiky.index[spiky["local_time"] == pd.Timestamp("2020-10-08 14:00")][0]
    spiky.loc[slot, "temperature_c"] += 9.0
    verdict = quality.temperature_steps(spiky, 8.0)
    assert not verdict.passed and list(verdict.failed_days) == ["2020-10-08"]
    assert "2 step(s)" in verdict.failed_days["2020-10-08"]  # up at 14:00, down at 14:15
    assert quality.temperature_steps(spiky, 12.0).passed


def test_flat_temperature_for_6_hours_and_flat_humidity_for_12_hours_fail(generated):
    _, clean, _ = generated
    local = clean["local_time"]
    flat = clean.copy()
    flat.loc[(local >= "2020-10-06 01:00") & (local < "2020-10-06 07:00"), "temperature_c"] = 11.3  # 24 slots = 6 h
    flat.loc[(local >= "2020-10-08 00:00") & (local < "2020-10-08 12:00"), "humidity_pct"] = 97.0
    verdict = quality.flat_lines(flat, 6.0, 12.0)
    assert not verdict.passed and sorted(verdict.failed_days) == ["2020-10-06", "2020-10-08"]
    assert "temperature 11.3 °C for 6.0 h from 01:00" in verdict.failed_days["2020-10-06"]
    assert "humidity 97 % for 12.0 h" in verdict.failed_days["2020-10-08"]
    shorter = clean.copy()
    shorter.loc[(local >= "2020-10-06 01:00") & (local < "2020-10-06 06:45"), "temperature_c"] = 11.3
    assert quality.flat_lines(shorter, 6.0, 12.0).passed


def test_gust_below_mean_wind_fails(generated):
    _, clean, _ = generated
    bad = clean.copy()
    slot = bad.index[bad["local_time"] == pd.Timestamp("2020-10-09 09:30")][0]
    bad.loc[slot, ["wind_speed_kmh", "gust_speed_kmh"]] = [20.0, 12.0]
    verdict = quality.gust_below_mean(bad)
    assert not verdict.passed and verdict.failed_days == {"2020-10-09": "1 slot(s), first at 09:30"}


def test_a_day_without_any_observation_passes_the_clean_and_daily_checks():
    clean = empty_clean_frame()
    daily = daily_summary(clean, station="st70", days=DAYS)
    assert quality.rejected_share(dict.fromkeys((d.isoformat() for d in DAYS), 0), clean, 0.2).passed
    assert quality.temperature_steps(clean, 8.0).passed and quality.gust_below_mean(clean).passed
    assert quality.flat_lines(clean, 6.0, 12.0).passed
    assert quality.min_mean_max(daily).passed and quality.temperature_spike(daily, daily.iloc[:0], 10.0, 7).passed
    assert not quality.coverage(daily, 0.75, NOW).passed  # a station that reported nothing: five empty days


# --------------------------------------------------------------------------- daily
def test_daily_checks_pass_on_clean_data(generated):
    _, clean, daily = generated
    history = daily_summary(clean, station="st70", days=[DAYS[0] - dt.timedelta(days=1)])
    assert quality.coverage(daily, SETTINGS.min_coverage, NOW).passed
    assert quality.min_mean_max(daily).passed
    verdict = quality.temperature_spike(daily, history, SETTINGS.spike_temperature_c, SETTINGS.spike_window_days)
    assert verdict.passed and verdict.figures["days_checked"] == 5


def test_low_coverage_fails_but_today_is_judged_once_over(generated):
    _, clean, _ = generated
    holes = clean[~((clean["local_time"] >= "2020-10-07 06:00") & (clean["local_time"] < "2020-10-07 14:00"))]
    daily = daily_summary(holes, station="st70", days=DAYS)
    verdict = quality.coverage(daily, 0.75, NOW)
    assert not verdict.passed and verdict.failed_days == {"2020-10-07": "temperature in 64 of 96 slots (67%)"}
    during = dt.datetime(2020, 10, 7, 15, tzinfo=dt.timezone.utc)  # 2020-10-07 is still going on
    verdict = quality.coverage(daily[daily["date"] <= "2020-10-07"], 0.75, during)
    assert verdict.passed and verdict.figures["days_in_progress"] == 1


def test_min_mean_max_out_of_order_fails(generated):
    _, _, daily = generated
    broken = daily.copy()
    broken.loc[2, "temperature_mean_c"] = broken.loc[2, "temperature_max_c"] + 0.5
    verdict = quality.min_mean_max(broken)
    assert not verdict.passed and list(verdict.failed_days) == ["2020-10-07"]


def test_a_daily_mean_10_degrees_outside_the_recent_range_fails(generated):
    _, clean, daily = generated
    history = daily_summary(clean, station="st70", days=[DAYS[0] - dt.timedelta(days=1)])
    spike = daily.copy()
    recent = spike.loc[:2, "temperature_mean_c"]
    spike.loc[3, "temperature_mean_c"] = recent.max() + 10.5
    verdict = quality.temperature_spike(spike, history, 10.0, 7)
    assert not verdict.passed and list(verdict.failed_days) == ["2020-10-08"]
    assert "over the previous 4 day(s)" in verdict.failed_days["2020-10-08"]
    # the first day of a one-day run is judged against the day before (from the clean rows at hand)
    alone = spike.iloc[[0]].copy()
    alone.loc[0, "temperature_mean_c"] = history["temperature_mean_c"].iloc[0] - 11
    assert not quality.temperature_spike(alone, history, 10.0, 7).passed


def _spike_by_rolling_window(daily, history, spike_c, window_days):
    """The spike check said with pandas' time-based rolling window: the reference for the numpy one."""
    parts = [f[["date", "temperature_mean_c"]] for f in (history, daily) if len(f)] or [daily[["date", "temperature_mean_c"]]]
    means = (pd.concat(parts)
             .assign(date=lambda f: pd.to_datetime(f["date"])).drop_duplicates("date", keep="last")
             .set_index("date")["temperature_mean_c"].sort_index().asfreq("D"))
    recent = means.rolling(f"{window_days}D", closed="left", min_periods=1)
    judged = pd.DataFrame({"value": means, "low": recent.min(), "high": recent.max(), "days": recent.count()})
    judged = judged.loc[pd.to_datetime(daily["date"])].dropna(subset=["value", "low"])
    spikes = judged[(judged["value"] > judged["high"] + spike_c) | (judged["value"] < judged["low"] - spike_c)]
    failed = {f"{r.Index:%Y-%m-%d}": f"mean {r.value:g} °C vs {r.low:g}…{r.high:g} °C over the previous {int(r.days)} day(s)"
              for r in spikes.itertuples()}
    return failed, len(judged)


def test_the_spike_check_agrees_with_a_rolling_window_on_gappy_repeated_days():
    rng = np.random.default_rng(7)
    failing = 0
    for _ in range(300):
        start = pd.Timestamp("2023-03-20") + pd.Timedelta(days=int(rng.integers(0, 30)))  # the DST change inside
        def rows(offsets):
            means = np.round(rng.uniform(-5, 30, len(offsets)), int(rng.integers(0, 3)))
            means[rng.random(len(offsets)) < 0.2] = np.nan  # days without a mean
            return pd.DataFrame({"date": [start + pd.Timedelta(days=int(d)) for d in offsets], "temperature_mean_c": means})
        history = rows(np.sort(rng.choice(np.arange(-12, 3), int(rng.integers(0, 6)), replace=False)))
        daily = rows(np.sort(rng.choice(np.arange(-2, 15), int(rng.integers(0, 10)), replace=False)))  # gaps; days also in history
        spike_c, window = float(rng.choice([0.5, 2.0, 10.0])), int(rng.integers(1, 10))
        verdict = quality.temperature_spike(daily, history, spike_c, window)
        failed, checked = _spike_by_rolling_window(daily, history, spike_c, window)
        assert (verdict.failed_days, verdict.figures["days_checked"]) == (failed, checked)
        failing += not verdict.passed
    assert 50 < failing < 250  # both outcomes well represented


# --------------------------------------------------------------------------- freshness (pure)
def paris(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=PARIS)


def updates(**partitions: str):
    """`last_update` for a few partitions: `d2020_10_20="2020-10-20 23:10"`."""
    table = {dt.date.fromisoformat(k[1:].replace("_", "-")): paris(v) for k, v in partitions.items()}
    return table.get


def test_freshness_passes_when_today_is_recent_and_yesterday_final():
    verdict = quality.freshness(paris("2020-10-21 12:20"), first_day=dt.date(2020, 1, 1), settings=SETTINGS,
                                last_update=updates(d2020_10_21="2020-10-21 11:50", d2020_10_20="2020-10-21 00:20"))
    assert verdict.passed and verdict.final_day == dt.date(2020, 10, 20)
    assert verdict.fresh_until == paris("2020-10-21 12:50")


def test_freshness_fails_when_today_is_stale():
    verdict = quality.freshness(paris("2020-10-21 14:00"), first_day=dt.date(2020, 1, 1), settings=SETTINGS,
                                last_update=updates(d2020_10_21="2020-10-21 11:50", d2020_10_20="2020-10-21 00:20"))
    assert not verdict.passed and verdict.summary.startswith("stale: today's partition 2020-10-21 not updated within 1 h")
    assert verdict.overdue_since == paris("2020-10-21 12:50")


def test_freshness_fails_when_yesterday_was_not_final_by_six():
    last = updates(d2020_10_21="2020-10-21 06:40", d2020_10_20="2020-10-20 23:40")  # before the day ended
    verdict = quality.freshness(paris("2020-10-21 07:00"), first_day=dt.date(2020, 1, 1), settings=SETTINGS, last_update=last)
    assert not verdict.passed and "partition 2020-10-20 not final by 2020-10-21 06:00" in verdict.summary
    # before 06:00 the deadline in force is yesterday's: the day before yesterday must be final
    early = quality.freshness(paris("2020-10-21 05:30"), first_day=dt.date(2020, 1, 1), settings=SETTINGS,
                              last_update=updates(d2020_10_21="2020-10-21 05:10", d2020_10_19="2020-10-20 00:30"))
    assert early.passed and early.final_day == dt.date(2020, 10, 19)


def test_freshness_in_the_first_hour_of_the_day_accepts_yesterdays_update():
    last = updates(d2020_10_20="2020-10-20 23:59")
    verdict = quality.freshness(paris("2020-10-21 00:30"), first_day=dt.date(2020, 1, 1), settings=SETTINGS, last_update=last)
    assert not verdict.passed  # yesterday is recent, but the day before yesterday is not final
    last = updates(d2020_10_20="2020-10-20 23:59", d2020_10_19="2020-10-20 00:10")
    verdict = quality.freshness(paris("2020-10-21 00:30"), first_day=dt.date(2020, 1, 1), settings=SETTINGS, last_update=last)
    assert verdict.passed and verdict.fresh_until == paris("2020-10-21 00:59")


# --------------------------------------------------------------------------- through Dagster
def materialize_at(instance: DagsterInstance, key: AssetKey, partition: str, when: dt.datetime) -> None:
    event = DagsterEvent(
        event_type_value=DagsterEventType.ASSET_MATERIALIZATION.value,
        job_name="__RUNLESS__",
        event_specific_data=StepMaterializationData(AssetMaterialization(asset_key=key, partition=partition)),
    )
    instance.report_dagster_event(event, run_id="", timestamp=when.timestamp())


def test_freshness_check_on_an_instance_with_controlled_materialisation_times(tmp_path):
    (tmp_path / "datasets.toml").write_text(f'[[stations]]\ndataset = "{SPEC.dataset_id}"\n', encoding="utf-8")
    station = load_network(tmp_path / "datasets.toml").stations[0]
    key = AssetKey(["daily", station.key])
    checks = station_freshness_checks([station])
    assert {k.asset_key for k in checks.check_keys} == {AssetKey([layer, station.key]) for layer in ("raw", "clean", "daily")}
    instance = DagsterInstance.ephemeral()
    now = paris("2026-03-10 15:00")
    stale = freshness_result(instance, key, station, now)
    assert not stale.passed and "never" in stale.description and station.key in stale.description
    materialize_at(instance, key, "2026-03-09", paris("2026-03-10 00:20"))
    materialize_at(instance, key, "2026-03-10", paris("2026-03-10 14:40"))
    fresh = freshness_result(instance, key, station, now)
    assert fresh.passed, fresh.description
    assert fresh.metadata[FRESH_UNTIL_KEY].value == paris("2026-03-10 15:40").timestamp()
    later = freshness_result(instance, key, station, now + dt.timedelta(hours=1))
    assert not later.passed and later.description.startswith(f"station {station.key}: stale")
    # a station that stopped reporting: stale, and the portal's newest observation says why
    instance.report_runless_asset_event(AssetObservation(
        asset_key=AssetKey(["raw", station.key]), metadata={"newest_observation": MetadataValue.timestamp(paris("2026-03-10 14:30"))}))
    stopped = freshness_result(instance, key, station, now + dt.timedelta(hours=4))
    assert not stopped.passed and "newest observation for this station is from 2026-03-10 13:30 UTC (stopped reporting?)" in stopped.description
    assert stopped.metadata["portal_newest_observation"].value == paris("2026-03-10 14:30").timestamp()


def test_the_freshness_step_reports_as_dagsters_own_check_results_would(tmp_path):
    """The freshness step yields each check's output and evaluation itself, the asset's latest
    materialisation looked up in one query (`checks.evaluated`): the same evaluations as Dagster
    builds from `AssetCheckResult`s, and nothing in the run log about missing outputs."""
    (tmp_path / "datasets.toml").write_text(f'[[stations]]\ndataset = "{SPEC.dataset_id}"\n', encoding="utf-8")
    network = load_network(tmp_path / "datasets.toml")
    station = network.stations[0]
    checks = station_freshness_checks([station])
    specs = [AssetSpec(key, partitions_def=daily_partitions(network)) for key in checks.keys_by_input_name.values()]

    @multi_asset_check(specs=list(checks.check_specs), can_subset=True, name="as_dagster_does")
    def as_dagster_does(context: AssetCheckExecutionContext):
        now = dt.datetime.now(dt.timezone.utc)
        for key in context.selected_asset_check_keys:
            yield freshness_result(context.instance, key.asset_key, station, now)

    instance = DagsterInstance.ephemeral()
    daily = AssetKey(["daily", station.key])
    materialize_at(instance, daily, "2026-03-09", paris("2026-03-10 00:20"))
    materialize_at(instance, daily, "2026-03-10", paris("2026-03-10 14:40"))
    evaluations = []
    for definition in (checks, as_dagster_does):
        job = define_asset_job("freshness", selection=AssetSelection.checks(definition))
        result = Definitions(assets=specs, asset_checks=[definition], jobs=[job]).resolve_job_def("freshness").execute_in_process(
            instance=instance)
        assert result.success
        assert not [e for e in instance.all_logs(result.run_id) if "did not yield" in e.user_message]
        evaluations.append({e.event_specific_data.asset_key: e.event_specific_data for e in result.all_events
                            if e.event_type_value == "ASSET_CHECK_EVALUATION"})
    ours, dagsters = evaluations
    assert set(ours) == set(dagsters) == {AssetKey([layer, station.key]) for layer in ("raw", "clean", "daily")}
    latest = instance.fetch_materializations(daily, limit=1).records[0]
    assert ours[daily].target_materialization_data.storage_id == latest.storage_id
    assert ours[AssetKey(["raw", station.key])].target_materialization_data is None  # never materialised
    for key, evaluation in ours.items():
        fields = ("check_name", "passed", "severity", "blocking", "partition", "target_materialization_data")
        assert {f: getattr(evaluation, f) for f in fields} == {f: getattr(dagsters[key], f) for f in fields}
        assert evaluation.description == dagsters[key].description and set(evaluation.metadata) == set(dagsters[key].metadata)


def test_each_check_reports_once_per_ranged_run(tmp_path):
    specs = [StationSpec("73-station-meteo-balma-gare", 73, "2020-10-01", "2020-10-20", seed=2)]
    with stand_in(tmp_path, FakePortal(specs), specs) as env, env.activated():
        result = build_definitions().resolve_job_def(PIPELINE_JOB).execute_in_process(
            instance=DagsterInstance.ephemeral(), raise_on_error=False,
            tags={"dagster/asset_partition_range_start": "2020-10-05", "dagster/asset_partition_range_end": "2020-10-09"},
        )
    assert result.success
    evaluations = [e.event_specific_data for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"]
    quality_checks = [(e.asset_key.path[0], e.check_name) for e in evaluations if e.check_name != "freshness_check"]
    assert sorted(quality_checks) == sorted([
        ("raw", "parser_fields_present"), ("raw", "bytes_parse"),
        ("clean", "rejected_share"), ("clean", "temperature_steps"), ("clean", "flat_lines"), ("clean", "gust_not_below_mean"),
        ("daily", "coverage"), ("daily", "min_mean_max"), ("daily", "temperature_spike"),
    ])
    coverage = next(e for e in evaluations if e.check_name == "coverage")
    assert coverage.metadata["days_checked"].value == 5
    assert "station st73_balma_gare, partition 2020-10-05…2020-10-09" in coverage.description
    # freshness is left to the freshness sensor's own runs
    assert not [e for e in evaluations if e.check_name == "freshness_check"]


def test_a_broken_schema_blocks_clean_and_daily_with_a_clear_message(tmp_path):
    spec = StationSpec("71-station-meteo-aucamville-ecole", 71, "2020-12-20", "2021-01-10", seed=5, quirks=False)
    archive, live = split_archives(spec, dt.datetime(2021, 1, 1, tzinfo=dt.timezone.utc))
    other = StationSpec("76-station-meteo-saint-orens-lycee", 76, "2020-12-20", "2021-01-10", seed=4, quirks=False)
    portal = FakePortal([archive, live, other])
    drifted = pd.DataFrame([line.decode().split(";") for line in portal.lines(archive.dataset_id)],
                           columns=portal.header(archive.dataset_id)).rename(columns={"humidite": "humidity"})
    portal.set_rows(archive.dataset_id, drifted)
    with stand_in(tmp_path, portal, [archive, live, other]) as env, env.activated():
        result = build_definitions().resolve_job_def(PIPELINE_JOB).execute_in_process(
            instance=DagsterInstance.ephemeral(), raise_on_error=False,
            tags={"dagster/asset_partition_range_start": "2020-12-30", "dagster/asset_partition_range_end": "2021-01-02"},
        )
    assert not result.success
    failures = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert [e.step_key for e in failures] == ["raw__st71_aucamville_ecole"]
    message = failures[0].event_specific_data.user_failure_data.description
    assert "station st71_aucamville_ecole, partition 2020-12-30…2021-01-02" in message
    assert "humidite" in message and archive.dataset_id in message and "clean and daily not run" in message
    executed = {e.step_key for e in result.all_events if e.event_type_value == "STEP_START"}
    assert "clean__st71_aucamville_ecole" not in executed and "daily__st71_aucamville_ecole" not in executed
    assert "daily__st76_saint_orens_lycee" in executed
    check = next(e.event_specific_data for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"
                 and e.event_specific_data.check_name == "parser_fields_present"
                 and e.event_specific_data.asset_key == AssetKey(["raw", "st71_aucamville_ecole"]))
    assert not check.passed and check.severity.value == "ERROR" and check.blocking
    # the archive holds 30 and 31 December and the first hour of 1 January (UTC): those days failed
    assert sorted(check.metadata["failed_days"].value) == ["2020-12-30", "2020-12-31", "2021-01-01"]
    assert (env.folder / "data" / "raw" / "st71_aucamville_ecole" / "2021" / "2021-01-02").is_dir()  # raw kept
