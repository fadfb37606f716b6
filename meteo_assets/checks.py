"""Asset checks: quality checks computed inside each station asset, and partition-aware freshness.

Quality checks run in the asset's own step (`check_specs=` on the asset, results yielded after its
output), so a ranged single run gives one result per check for the whole range, computed on data
already in memory; the metadata lists the failing days. The raw checks are blocking: when one
fails, the raw files are still stored (they are what the portal sent) but the step fails with the
checks' message, so `clean` and `daily` do not run for that station.

Freshness is one `freshness_check` per station asset, evaluated by the freshness sensor (and in
every run that materialises the asset). The calculations are in `transform/quality.py`.
"""

import datetime as dt
from collections.abc import Callable, Iterator, Sequence

import pandas as pd
from dagster import (
    AssetCheckEvaluation,
    AssetCheckExecutionContext,
    AssetCheckKey,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetChecksDefinition,
    AssetKey,
    AssetRecordsFilter,
    DagsterInstance,
    EventLogRecord,
    Failure,
    MetadataValue,
    Output,
    multi_asset_check,
)
from dagster._core.definitions.asset_checks.asset_check_evaluation import AssetCheckEvaluationTargetMaterializationData

from meteo_assets.config import Station
from meteo_assets.transform import quality
from meteo_assets.transform.quality import RawDays, Verdict

# raw (blocking, ERROR)
PARSER_FIELDS_PRESENT = "parser_fields_present"
BYTES_PARSE = "bytes_parse"
# clean (WARN)
REJECTED_SHARE = "rejected_share"
TEMPERATURE_STEPS = "temperature_steps"
FLAT_LINES = "flat_lines"
GUST_NOT_BELOW_MEAN = "gust_not_below_mean"
# daily (WARN)
COVERAGE = "coverage"
MIN_MEAN_MAX = "min_mean_max"
TEMPERATURE_SPIKE = "temperature_spike"
# every station asset
FRESHNESS = "freshness_check"
STATION_LAYERS = ("raw", "clean", "daily")

# metadata of the `raw/<station>` observations recorded by the new-data sensor
NEWEST_OBSERVATION = "newest_observation"
# what the built-in freshness sensor reads on a passing result to know when to evaluate again
FRESH_UNTIL_KEY = "dagster/fresh_until_timestamp"
FAILED_DAYS_KEPT = 100  # days listed in a result's metadata (all of them are counted)

_DESCRIPTIONS = {
    PARSER_FIELDS_PRESENT: "Blocking. Every stored export has the fields the parser maps by name; a renamed or "
    "missing field stops clean and daily for the station.",
    BYTES_PARSE: "Blocking. Every stored export is UTF-8 CSV whose rows have the header's field count (a few "
    "malformed rows are fine: clean rejects and counts them).",
    REJECTED_SHARE: "Share of each day's rows rejected by the data contract ≤ `max_rejected_share`.",
    TEMPERATURE_STEPS: "No temperature step above `max_temperature_step_c` between consecutive observations "
    "(at most an hour apart).",
    FLAT_LINES: "No flat line: the same temperature for `flat_temperature_hours` or the same humidity for "
    "`flat_humidity_hours`.",
    GUST_NOT_BELOW_MEAN: "No slot whose maximum gust is below its mean wind speed.",
    COVERAGE: "Temperature coverage ≥ `min_coverage` on every day that is over.",
    MIN_MEAN_MAX: "temperature_min_c ≤ temperature_mean_c ≤ temperature_max_c.",
    TEMPERATURE_SPIKE: "No daily mean more than `spike_temperature_c` outside the station's range over the previous "
    "`spike_window_days` days (the days before the run that are at hand, and the run's own days).",
}


def _specs(key: AssetKey, names: Sequence[str], blocking: bool = False) -> list[AssetCheckSpec]:
    return [AssetCheckSpec(name, asset=key, description=_DESCRIPTIONS[name], blocking=blocking) for name in names]


def raw_check_specs(key: AssetKey) -> list[AssetCheckSpec]:
    return _specs(key, [PARSER_FIELDS_PRESENT, BYTES_PARSE], blocking=True)


def clean_check_specs(key: AssetKey) -> list[AssetCheckSpec]:
    return _specs(key, [REJECTED_SHARE, TEMPERATURE_STEPS, FLAT_LINES, GUST_NOT_BELOW_MEAN])


def daily_check_specs(key: AssetKey) -> list[AssetCheckSpec]:
    return _specs(key, [COVERAGE, MIN_MEAN_MAX, TEMPERATURE_SPIKE])


def quality_check_keys(station: Station) -> list[AssetCheckKey]:
    """The checks computed inside the station's assets: a run of the assets must select them all."""
    specs = [
        *raw_check_specs(AssetKey(["raw", station.key])),
        *clean_check_specs(AssetKey(["clean", station.key])),
        *daily_check_specs(AssetKey(["daily", station.key])),
    ]
    return [spec.key for spec in specs]


def _result(name: str, verdict: Verdict, severity: AssetCheckSeverity, label: str) -> AssetCheckResult:
    kept = dict(sorted(verdict.failed_days.items())[:FAILED_DAYS_KEPT])
    return AssetCheckResult(
        check_name=name,
        passed=verdict.passed,
        severity=severity,
        description=f"{label}: {verdict.summary}",
        metadata={
            **verdict.figures,
            "failed_days": MetadataValue.json(kept),
            **({"failed_days_not_listed": len(verdict.failed_days) - len(kept)} if len(kept) < len(verdict.failed_days) else {}),
        },
    )


def run_label(station: Station, days: Sequence[str]) -> str:
    """`station <key>, partition <day or first…last>`: the prefix of every check message."""
    span = days[0] if len(days) == 1 else f"{days[0]}…{days[-1]}"
    return f"station {station.key}, partition {span}"


def raw_check_results(station: Station, raw: RawDays) -> Iterator[AssetCheckResult]:
    """The blocking checks; after yielding them, fail the step if one failed (clean and daily then do not run)."""
    at = run_label(station, sorted(raw))
    verdicts = {PARSER_FIELDS_PRESENT: quality.raw_schema(raw), BYTES_PARSE: quality.raw_bytes(raw)}
    for name, verdict in verdicts.items():
        yield _result(name, verdict, AssetCheckSeverity.ERROR, at)
    failed = {name: verdict for name, verdict in verdicts.items() if not verdict.passed}
    if failed:
        raise Failure(
            description=f"{at}: blocking check(s) {', '.join(failed)} failed, clean and daily not run: "
            + " | ".join(verdict.summary for verdict in failed.values()),
            metadata={"failed_days": MetadataValue.json(sorted({d for v in failed.values() for d in v.failed_days}))},
        )


def clean_check_verdicts(station: Station, raw: RawDays, clean: pd.DataFrame) -> dict[str, Verdict]:
    """The clean checks' verdicts: plain data, computed with the clean rows (also in a worker process)."""
    settings = station.contract
    return {
        REJECTED_SHARE: quality.rejected_share(quality.raw_rows_by_day(raw), clean, settings.max_rejected_share),
        TEMPERATURE_STEPS: quality.temperature_steps(clean, settings.max_temperature_step_c),
        FLAT_LINES: quality.flat_lines(clean, settings.flat_temperature_hours, settings.flat_humidity_hours),
        GUST_NOT_BELOW_MEAN: quality.gust_below_mean(clean),
    }


def daily_check_verdicts(station: Station, daily: pd.DataFrame, history: pd.DataFrame) -> dict[str, Verdict]:
    """`history`: daily rows of the days before the run at hand (the day before, summarised from
    the daily asset's input), as recent history for the spike check. Plain data, like the clean
    checks' verdicts: it may come from the worker process."""
    settings = station.contract
    return {
        COVERAGE: quality.coverage(daily, settings.min_coverage, dt.datetime.now(dt.timezone.utc)),
        MIN_MEAN_MAX: quality.min_mean_max(daily),
        TEMPERATURE_SPIKE: quality.temperature_spike(
            daily, history, settings.spike_temperature_c, settings.spike_window_days
        ),
    }


def warning_results(station: Station, days: Sequence[str], verdicts: dict[str, Verdict]) -> Iterator[AssetCheckResult]:
    """The clean or daily checks' results (warnings) from their verdicts, for a run's days."""
    at = run_label(station, days)
    for name, verdict in verdicts.items():
        yield _result(name, verdict, AssetCheckSeverity.WARN, at)


# --------------------------------------------------------------------------- freshness
def last_materialized(instance: DagsterInstance, key: AssetKey) -> Callable[[dt.date], dt.datetime | None]:
    """When a partition of `key` was last materialised (None: never)."""

    def at(day: dt.date) -> dt.datetime | None:
        records = instance.fetch_materializations(
            AssetRecordsFilter(asset_key=key, asset_partitions=[day.isoformat()]), limit=1
        ).records
        return dt.datetime.fromtimestamp(records[0].timestamp, dt.timezone.utc) if records else None

    return at


def portal_newest_observation(instance: DagsterInstance, station_key: str) -> dt.datetime | None:
    """The station's newest observation on the portal, as last reported by the new-data sensor."""
    records = instance.fetch_observations(AssetRecordsFilter(asset_key=AssetKey(["raw", station_key])), limit=1).records
    if not records:
        return None
    value = records[0].asset_observation.metadata.get(NEWEST_OBSERVATION)
    return dt.datetime.fromtimestamp(value.value, dt.timezone.utc) if value is not None else None


def freshness_params(station: Station) -> dict:
    return {
        "timezone": "Europe/Paris",
        "fresh_within_hours": station.contract.fresh_within_hours,
        "final_by_hour": station.contract.final_by_hour,
    }


def station_freshness_checks(stations: Sequence[Station]) -> AssetChecksDefinition:
    """One partition-aware `freshness_check` (WARN) per station asset: today's partition updated within
    `fresh_within_hours`, yesterday's materialised after it ended by `final_by_hour` (Paris)."""
    stations_by_asset = {AssetKey([layer, s.key]): s for s in stations for layer in STATION_LAYERS}
    specs = [
        AssetCheckSpec(
            FRESHNESS,
            asset=key,
            description=(
                f"Today's partition updated within the last {station.contract.fresh_within_hours:g} h; yesterday's "
                f"final (materialised after midnight) by {station.contract.final_by_hour:02d}:00 Europe/Paris. "
                "A station that stopped reporting shows here as stale."
            ),
            metadata={"dagster/freshness_params": MetadataValue.json(freshness_params(station))},
        )
        for key, station in stations_by_asset.items()
    ]

    @multi_asset_check(specs=specs, can_subset=True, name="station_freshness_checks")
    def station_freshness(context: AssetCheckExecutionContext) -> Iterator[Output | AssetCheckEvaluation]:
        now = dt.datetime.now(dt.timezone.utc)
        keys = list(context.selected_asset_check_keys)
        records = context.instance.get_asset_records([key.asset_key for key in keys])
        latest = {r.asset_entry.asset_key: r.asset_entry.last_materialization_record for r in records}
        for check_key in keys:
            result = freshness_result(context.instance, check_key.asset_key, stations_by_asset[check_key.asset_key], now)
            yield from evaluated(result, check_key, latest.get(check_key.asset_key))

    return station_freshness


def evaluated(result: AssetCheckResult, key: AssetCheckKey, target: EventLogRecord | None) -> Iterator[Output | AssetCheckEvaluation]:
    """What Dagster makes of an `AssetCheckResult` in a check's step (its output, then the evaluation
    naming the asset's latest materialisation), with that materialisation given.

    Dagster looks it up by listing every partition of the asset (2,735 days, ~30–50 ms a check,
    for a length test) before reading the same asset record: 2–4 s of every backfill from the
    asset CLI, which runs the freshness checks of the assets it materialises. One query for all the
    checks of the step gives the same records.
    """
    yield Output(None, output_name=AssetCheckSpec(key.name, asset=key.asset_key).get_python_identifier())
    yield AssetCheckEvaluation(
        asset_key=key.asset_key,
        check_name=key.name,
        passed=result.passed,
        metadata=result.metadata,
        target_materialization_data=AssetCheckEvaluationTargetMaterializationData(
            storage_id=target.storage_id, run_id=target.run_id, timestamp=target.timestamp
        ) if target is not None else None,
        severity=result.severity,
        description=result.description,
        blocking=False,
        partition=None,
    )


def freshness_result(instance: DagsterInstance, key: AssetKey, station: Station, now: dt.datetime) -> AssetCheckResult:
    verdict = quality.freshness(
        now, first_day=station.start_date, settings=station.contract, last_update=last_materialized(instance, key)
    )
    newest = portal_newest_observation(instance, station.key)
    moments = {
        "dagster/last_updated_timestamp": verdict.today_updated,
        "final_partition_materialized_at": verdict.final_updated,
        FRESH_UNTIL_KEY: verdict.fresh_until,
        "dagster/overdue_deadline_timestamp": verdict.overdue_since,
        "portal_newest_observation": newest,
    }
    metadata: dict = {
        "dagster/freshness_params": MetadataValue.json(freshness_params(station)),
        **({"final_partition": verdict.final_day.isoformat()} if verdict.final_day else {}),
        **{name: MetadataValue.timestamp(moment) for name, moment in moments.items() if moment is not None},
    }
    summary = verdict.summary
    if not verdict.passed and newest is not None and now - newest > dt.timedelta(hours=station.contract.out_of_service_hours):
        summary += f"; the portal's newest observation for this station is from {newest:%Y-%m-%d %H:%M} UTC (stopped reporting?)"
    return AssetCheckResult(
        asset_key=key,
        check_name=FRESHNESS,
        passed=verdict.passed,
        severity=AssetCheckSeverity.WARN,
        description=f"station {station.key}: {summary}",
        metadata=metadata,
    )
