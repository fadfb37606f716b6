"""Per-station assets: `raw/<station>` → `clean/<station>` → `daily/<station>`, built from `datasets.toml`.

Every asset runs a whole partition range in one run (`BackfillPolicy.single_run()`): one portal
request per dataset per quarter of the range, one parse, one DELETE+INSERT per table. The next
stations' exports download while a raw step records its days, and their raw days are parsed and
cleaned in a worker process while a clean step records its own (`ahead.py`).
"""


import datetime as dt
import hashlib
from collections import defaultdict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

import pandas as pd
from dagster import (
    AssetCheckResult,
    AssetExecutionContext,
    AssetIn,
    AssetKey,
    AssetsDefinition,
    BackfillPolicy,
    Failure,
    MetadataValue,
    Output,
    PartitionsDefinition,
    TimeWindowPartitionMapping,
    asset,
)

from meteo_assets.assets.ahead import WorkAhead
from meteo_assets.checks import (
    clean_check_specs,
    clean_check_verdicts,
    daily_check_specs,
    daily_check_verdicts,
    raw_check_results,
    raw_check_specs,
    warning_results,
)
from meteo_assets.config import Station
from meteo_assets.dashboard.plots import daily_png, png_markdown
from meteo_assets.portal import PortalError
from meteo_assets.portal.days import join_days, split_by_day
from meteo_assets.resources import LOOKAHEAD, ExportRequest, PortalResource
from meteo_assets.storage.duckdb_io import table_schema
from meteo_assets.storage.raw_files import RawDays
from meteo_assets.transform import (
    CLEAN_COLUMNS,
    DAILY_COLUMNS,
    UnknownSchemaError,
    clean_observations,
    daily_summary,
    parse_export,
)
from meteo_assets.transform.quality import Verdict

# A long range is fetched in windows of up to a quarter: a station-quarter is ~2 MB of CSV, and a
# third as many requests as monthly windows take a fifth off the raw layer of a year's backfill
MAX_REQUEST_DAYS = 92
DUCKDB_POOL = "duckdb_writer"  # one writer on the DuckDB file at a time, across runs (dagster_home/dagster.yaml)


def run_days(context: AssetExecutionContext) -> list[dt.date]:
    return [dt.date.fromisoformat(key) for key in context.partition_keys]


def describe_range(days: list[dt.date]) -> str:
    return days[0].isoformat() if len(days) == 1 else f"{days[0]}…{days[-1]}"


def request_chunks(days: list[dt.date], size: int = MAX_REQUEST_DAYS) -> list[list[dt.date]]:
    return [days[i : i + size] for i in range(0, len(days), size)]


@dataclass
class SourceStats:
    """What one source dataset gave for the run (shown in the raw asset's metadata)."""

    requests: int = 0
    bytes: int = 0
    rows: int = 0
    schema_fields: int = 0
    digest: "hashlib._Hash" = field(default_factory=hashlib.sha256)


def export_requests(
    station: Station, days: list[dt.date], partitions: PartitionsDefinition
) -> list[tuple[list[dt.date], ExportRequest]]:
    """A station's export requests for a run's days, with the days each covers (none before its start)."""
    label = f"station {station.key}, partition {describe_range(days)}"
    chunks = request_chunks([d for d in days if d >= station.start_date])
    return [(chunk, ExportRequest(ds, *utc_span(chunk, partitions), label)) for ds in station.datasets for chunk in chunks]


def stations_after(
    context: AssetExecutionContext, station: Station, network: Mapping[str, Station], layer: str
) -> list[Station]:
    """The stations whose `layer` step this run executes after this one's (the in-process executor
    takes a layer's steps in key order): their exports can download, or their raw days be cleaned,
    while this step records its days."""
    keys = sorted(k.path[1] for k in context.job_def.asset_layer.selected_asset_keys if k.path[0] == layer)
    steps = context.run.step_keys_to_execute  # a re-execution may run only some of them
    return [network[k] for k in keys if k > station.key and k in network and (steps is None or f"{layer}__{k}" in steps)]


def station_assets(station: Station, partitions: PartitionsDefinition, network: Mapping[str, Station]) -> list[AssetsDefinition]:
    """`network`: every station by key, for the work started ahead of a step (`stations_after`)."""
    key = station.key
    tags = {"station": key}
    common = dict(partitions_def=partitions, backfill_policy=BackfillPolicy.single_run(), tags=tags)

    @asset(
        key=AssetKey(["raw", key]),
        group_name="raw",
        kinds={"csv", "file"},
        io_manager_key="raw_io_manager",
        description=(
            f"What the portal sent for **{station.name}** (`{station.dataset}`"
            + (f" + {len(station.archives)} archive datasets" if station.archives else "")
            + "), byte for byte: one folder per Paris day, one CSV per source dataset."
        ),
        check_specs=raw_check_specs(AssetKey(["raw", key])),
        **common,
    )
    def raw(context: AssetExecutionContext, portal: PortalResource) -> Iterator[Output[RawDays] | AssetCheckResult]:
        days = run_days(context)
        stored: dict[dt.date, dict[str, bytes]] = {d: {} for d in days}
        stats: dict[str, SourceStats] = defaultdict(SourceStats)
        planned = export_requests(station, days, partitions)
        # only the stations the resource may fetch ahead: planning a full history's requests takes ~1 ms a station
        following = stations_after(context, station, network, "raw")[:LOOKAHEAD]
        ahead = [[r for _, r in export_requests(s, days, partitions)] for s in following]
        try:
            exports = portal.exports([r for _, r in planned], ahead, run_id=context.run.run_id)
        except PortalError as exc:
            raise Failure(description=str(exc), metadata={"url": exc.url, "http_status": exc.status or 0}) from exc
        results = [(request.dataset, chunk, export) for (chunk, request), export in zip(planned, exports)]

        for dataset, chunk, export in results:
            source = stats[dataset]
            source.requests += 1
            source.bytes += len(export.content)
            source.digest.update(export.content)
            lines = export.content.count(b"\n")
            source.rows += max(lines - 1, 0)
            source.schema_fields = max(source.schema_fields, export.content.split(b"\n", 1)[0].count(b";") + 1)
            for day, content in split_by_day(export.content, chunk).items():
                if dataset == station.dataset or content.count(b"\n") > 1:
                    stored[day][dataset] = content

        sources = "\n".join(
            f"| `{ds}` | {s.requests} | {s.rows:,} | {s.bytes:,} | {s.schema_fields} | `{s.digest.hexdigest()[:16]}…` |"
            for ds, s in stats.items()
        )
        raw_days = {d.isoformat(): files for d, files in stored.items()}
        rows = sum(s.rows for s in stats.values())
        log_step(context, days, rows)
        yield Output(
            raw_days,
            metadata=run_metadata(context, days, rows, {
                "bytes": sum(s.bytes for s in stats.values()),
                "requests": len(planned),
                "schema_fields": max((s.schema_fields for s in stats.values()), default=0),
                "sha256": MetadataValue.text(
                    hashlib.sha256(b"".join(s.digest.digest() for s in stats.values())).hexdigest()
                ),
                "first_url": MetadataValue.url(results[0][2].url) if results else MetadataValue.text("none"),
                "sources": MetadataValue.md(
                    "| dataset | requests | rows | bytes | fields | sha256 |\n|---|---|---|---|---|---|\n" + sources
                    if sources
                    else f"no request: the range is before the station's start ({station.start_date})"
                ),
            }),
        )
        yield from raw_check_results(station, raw_days)

    @asset(
        key=AssetKey(["clean", key]),
        group_name="clean",
        kinds={"duckdb", "pandas"},
        pool=DUCKDB_POOL,
        ins={"raw": AssetIn(key=AssetKey(["raw", key]))},
        metadata={"partition_expr": "local_time", "dagster/column_schema": table_schema(CLEAN_COLUMNS)},
        description=(
            f"Observations of **{station.name}**, one row per 15-minute slot, after the data contract's "
            "rules (rejections counted per rule; sentinels and out-of-range values nulled). DuckDB "
            f"table `clean.{key}`."
        ),
        check_specs=clean_check_specs(AssetKey(["clean", key])),
        **common,
    )
    def clean(
        context: AssetExecutionContext, raw: RawDays, work_ahead: WorkAhead
    ) -> Iterator[Output[pd.DataFrame] | AssetCheckResult]:
        days, run_id = run_days(context), context.run.run_id
        window = utc_span(days, partitions)
        worked = work_ahead.take(run_id, key, days, raw)
        # the next stations' raw days are cleaned ahead while Dagster records this step's days
        following = stations_after(context, station, network, "clean")
        work_ahead.submit(run_id, clean_days, [(s, days, window) for s in following])
        worked = worked or clean_days(station, raw, days, window)
        log_step(context, days, len(worked.frame), worked.verdicts)
        yield Output(worked.frame, metadata=run_metadata(context, days, len(worked.frame), worked.figures))
        yield from warning_results(station, sorted(raw), worked.verdicts)

    @asset(
        key=AssetKey(["daily", key]),
        group_name="daily",
        kinds={"duckdb", "pandas"},
        pool=DUCKDB_POOL,
        ins={
            "clean": AssetIn(
                key=AssetKey(["clean", key]),
                # the Météo-France TN/TX/RR windows reach into the previous and next days
                partition_mapping=TimeWindowPartitionMapping(
                    start_offset=-1, end_offset=1, allow_nonexistent_upstream_partitions=True
                ),
            )
        },
        metadata={"partition_expr": "date", "dagster/column_schema": table_schema(DAILY_COLUMNS)},
        description=(
            f"Daily summary of **{station.name}** per Paris civil day: means/extremes with coverage, "
            f"vector-mean wind direction, Météo-France TN/TX/RR. DuckDB table `daily.{key}`."
        ),
        check_specs=daily_check_specs(AssetKey(["daily", key])),
        **common,
    )
    def daily(
        context: AssetExecutionContext, clean: pd.DataFrame, work_ahead: WorkAhead
    ) -> Iterator[Output[pd.DataFrame] | AssetCheckResult]:
        days, run_id = run_days(context), context.run.run_id
        worked = work_ahead.take_daily(run_id, key, days, clean)
        # the next stations' days are summarised ahead while Dagster records this step's days
        following = stations_after(context, station, network, "daily")
        work_ahead.submit_daily(run_id, summarise_days, following, days, context.asset_partitions_time_window_for_input("clean"))
        worked = worked or summarise_days(station, clean, days)
        log_step(context, days, len(worked.frame), worked.verdicts)
        yield Output(worked.frame, metadata=run_metadata(context, days, len(worked.frame), worked.figures))
        yield from warning_results(station, [d.isoformat() for d in days], worked.verdicts)

    return [raw, clean, daily]


@dataclass
class WorkedDays:
    """A clean or daily step's work on its days: rows, figures for the Output's metadata, check
    verdicts (plain data: it may come from the worker process, and Dagster's check results do not
    unpickle)."""

    frame: pd.DataFrame
    figures: dict
    verdicts: dict[str, Verdict]


def clean_days(
    station: Station, raw: RawDays, days: list[dt.date], window: tuple[dt.datetime, dt.datetime]
) -> WorkedDays:
    """Parse every source dataset's days, apply the data contract, run the clean checks (also in the
    `WorkAhead` worker, hence no Dagster context here)."""
    label = f"station {station.key}, partition {describe_range(days)}"
    parsed, malformed, schema_fields = [], 0, set()
    for dataset in station.datasets:
        for csv in join_days(files[dataset] for files in raw.values() if dataset in files):
            try:
                export = parse_export(csv)
            except UnknownSchemaError as exc:
                raise Failure(description=f"{label}, dataset {dataset}: {exc}") from exc
            parsed.append(export.frame)
            malformed += export.malformed_rows
            schema_fields.add(export.schema_fields)
    frame = pd.concat(parsed, ignore_index=True) if parsed else None
    result = clean_observations(
        frame if frame is not None else parse_export(b"").frame,
        station=station.key,
        sensor_id=station.sensor_id,
        now=dt.datetime.now(dt.timezone.utc),
        settings=station.contract,
        window=window,
    )
    rejected = sum(result.rejected.values())
    figures = {
        "rows_in": result.rows_in,
        "rows_rejected": rejected + malformed,
        "malformed_rows": malformed,
        **{f"rejected_{rule}": n for rule, n in result.rejected.items()},
        **{f"flagged_{rule}": n for rule, n in result.flagged.items()},
        "schema_fields": MetadataValue.text(", ".join(map(str, sorted(schema_fields))) or "none"),
    }
    return WorkedDays(result.frame, figures, clean_check_verdicts(station, raw, result.frame))


def summarise_days(station: Station, clean: pd.DataFrame, days: list[dt.date]) -> WorkedDays:
    """A daily step's work on its clean rows (also in the `WorkAhead` worker): the summary, its
    figures and plot, the daily checks' verdicts."""
    # the day before the run comes from the same input: the spike check's recent history
    summary = daily_summary(clean, station=station.key, days=[days[0] - dt.timedelta(days=1), *days], settings=station.contract)
    history, frame = summary.iloc[:1], summary.iloc[1:].reset_index(drop=True)
    figures = {
        "days_complete": int((frame["coverage_temperature"] >= station.contract.min_coverage).sum()),
        "days_empty": int((frame["slots_reported"] == 0).sum()),
        "coverage_temperature_mean": float(frame["coverage_temperature"].mean()) if len(frame) else 0.0,
        "preview": MetadataValue.md(preview(frame)),
        "plot": MetadataValue.md(png_markdown(daily_png(frame, clean), "temperature and rain")),
    }
    return WorkedDays(frame, figures, daily_check_verdicts(station, frame, history))


def run_metadata(context: AssetExecutionContext, days: list[dt.date], rows: int, details: dict) -> dict:
    """The metadata of a run's Output. Dagster copies it onto every day of a ranged run (a year is
    365 events to serialise and store), so there it only names the range; the run's figures, tables
    and plot go on the range's last day. A one-day run's rows are that day's `dagster/row_count`."""
    if len(days) == 1:
        return {"dagster/row_count": rows, **details}
    context.add_asset_metadata({"run_row_count": rows, **details}, partition_key=days[-1].isoformat())
    return {"run_range": MetadataValue.text(f"{days[0]} … {days[-1]} ({len(days)} days)")}


def log_step(context: AssetExecutionContext, days: list[dt.date], rows: int, verdicts: Mapping[str, Verdict] | None = None) -> None:
    """A step's lines in the terminal, where runs log at INFO (`dagster_home/dagster.yaml`): what it
    made, and its failed warning checks. Each day's events are in the run's event log."""
    asset = context.asset_key.to_user_string()
    context.log.info(f"{asset}: {rows:,} rows for {len(days)} day{'s' * (len(days) > 1)} ({describe_range(days)})")
    for name, verdict in (verdicts or {}).items():
        if not verdict.passed:
            context.log.warning(f"{asset}: check {name} failed: {verdict.summary}")


def utc_span(days: list[dt.date], partitions: PartitionsDefinition) -> tuple[dt.datetime, dt.datetime]:
    """The UTC instants bounding consecutive Paris days (23, 24 or 25 hours each)."""
    start = partitions.time_window_for_partition_key(days[0].isoformat()).start
    end = partitions.time_window_for_partition_key(days[-1].isoformat()).end
    return start.astimezone(dt.timezone.utc), end.astimezone(dt.timezone.utc)


def preview(frame: pd.DataFrame, rows: int = 10) -> str:
    columns = ["date", "slots_reported", "temperature_min_c", "temperature_mean_c", "temperature_max_c",
               "rain_sum_mm", "tn_mf_c", "tx_mf_c", "rr_mf_mm"]
    return frame[columns].tail(rows).to_markdown(index=False) if len(frame) else "no rows"
