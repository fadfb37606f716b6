"""`make run`: materialise a range of days for every enabled station, then print what happened.

    python -m meteo_assets.run                      # the last 7 complete days
    python -m meteo_assets.run --start 2020-10-01 --end 2020-10-31

The run is recorded in the Dagster instance (DAGSTER_HOME), so it shows in `make dev` too. One
failing station is reported with its cause and does not stop the others; the exit status is 1 if
any station failed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from zoneinfo import ZoneInfo

from dagster import AssetKey, DagsterEventType, DagsterInstance, DagsterRunStatus, RunsFilter
from dagster._core.storage.runs import SqliteRunStorage

from meteo_assets.config import ConfigError, Settings, load_network
from meteo_assets.dashboard.site import describe_site
from meteo_assets.assets.network import NETWORK_DAILY
from meteo_assets.definitions import CATALOGUE_JOB, NETWORK_JOB, PIPELINE_JOB, build_definitions
from meteo_assets.portal import PortalClient, PortalError, PortalUnreachable
from meteo_assets.transform import REJECTION_RULES

PARIS = ZoneInfo("Europe/Paris")


@dataclass
class StationReport:
    downloaded: int | None = None
    kept: int | None = None
    rejected: dict[str, int] = field(default_factory=dict)
    complete_days: int | None = None
    days: int | None = None
    failures: list[str] = field(default_factory=list)


def default_range(today: dt.date | None = None) -> tuple[dt.date, dt.date]:
    """The last 7 complete Paris days."""
    today = today or dt.datetime.now(PARIS).date()
    return today - dt.timedelta(days=7), today - dt.timedelta(days=1)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    start, end = default_range()
    parser = argparse.ArgumentParser(prog="python -m meteo_assets.run", description=__doc__.split("\n")[0])
    parser.add_argument("--start", type=dt.date.fromisoformat, default=start, help=f"first day (default {start})")
    parser.add_argument("--end", type=dt.date.fromisoformat, default=end, help=f"last day, inclusive (default {end})")
    args = parser.parse_args(argv)
    if args.end < args.start:
        parser.error(f"--end {args.end} is before --start {args.start}")
    return args


def collect(events) -> dict[str, StationReport]:
    reports: dict[str, StationReport] = defaultdict(StationReport)
    for event in events:
        if event.event_type == DagsterEventType.ASSET_MATERIALIZATION:
            materialization = event.step_materialization_data.materialization
            path = materialization.asset_key.path
            if len(path) != 2:
                continue
            layer, station = path
            meta = {k: v.value for k, v in materialization.metadata.items()}
            rows = meta.get("dagster/row_count", meta.get("run_row_count"))
            if rows is None:
                continue  # a day of a ranged run: the run's figures are on its last day
            report = reports[station]
            if layer == "raw":
                report.downloaded = rows
            elif layer == "clean":
                report.kept = rows
                report.rejected = {rule: meta.get(f"rejected_{rule}", 0) for rule in REJECTION_RULES}
                report.rejected["malformed"] = meta.get("malformed_rows", 0)
            elif layer == "daily":
                report.complete_days = meta.get("days_complete")
                report.days = rows
        elif event.event_type == DagsterEventType.STEP_FAILURE:
            layer, _, station = (event.step_key or "").partition("__")
            data = event.event_specific_data
            cause = (data.user_failure_data.description if data.user_failure_data else None) or (
                root_cause(data.error) if data.error else "unknown error"
            )
            reports[station].failures.append(f"{layer}: {cause}")
    return reports


def root_cause(error) -> str:
    """The step's own exception, which Dagster wraps in "Error occurred while…" errors."""
    while error.cause is not None and (error.cls_name or "").startswith("Dagster"):
        error = error.cause
    qualified, _, text = error.message.strip().partition(": ")
    return f"{error.cls_name}: {text}" if qualified.endswith(error.cls_name or "\0") else error.message.strip()


def render(reports: dict[str, StationReport], stations: list[str], start: dt.date, end: dt.date) -> str:
    header = ["station", "downloaded", "kept", "rejected (per rule)", "complete days", "status"]
    rows = []
    for key in stations:
        r = reports.get(key, StationReport())
        rejected = ", ".join(f"{rule} {n}" for rule, n in r.rejected.items() if n) or ("0" if r.rejected else "–")
        days = f"{r.complete_days}/{r.days}" if r.days is not None else "–"
        status = "ok" if not r.failures else "FAILED"
        rows.append([key, _n(r.downloaded), _n(r.kept), rejected, days, status])
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    line = lambda cells: "  ".join(str(c).ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    out = [f"Stations pipeline, {start} → {end} (Europe/Paris days)", "", line(header), line(["-" * w for w in widths])]
    out += [line(row) for row in rows]
    failed = [(k, reports[k].failures) for k in stations if reports.get(k) and reports[k].failures]
    if failed:
        out += ["", f"{len(failed)} station(s) failed:"]
        for key, failures in failed:
            out += [f"  {key}: {failures[0]}"] + [f"    {f}" for f in failures[1:]]
    out += ["", "complete days: days whose temperature coverage reaches min_coverage (datasets.toml)."]
    return "\n".join(out)


def _n(value: int | None) -> str:
    return "–" if value is None else f"{value:,}"


def open_instance() -> DagsterInstance:
    """The instance of DAGSTER_HOME (so `make dev` shows the run), or a throwaway one."""
    home = os.environ.get("DAGSTER_HOME")
    if not home:
        print("note: DAGSTER_HOME is not set; this run will not appear in the Dagster UI\n", file=sys.stderr)
        return DagsterInstance.ephemeral()
    Path(home).mkdir(parents=True, exist_ok=True)
    return DagsterInstance.get()


def release_abandoned_runs(instance: DagsterInstance) -> list[str]:
    """Mark failed the runs whose process is gone (`kill -9`, a reboot), and free their pool slots.

    Such a run stays STARTED and keeps its `duckdb_writer` slot forever: every later run would wait
    for it. A run is abandoned when the process that logged its last event no longer exists on this
    machine; only a local (SQLite) instance is looked at, as its runs ran here (with a shared
    PostgreSQL instance, runs of other machines are the daemon's run monitoring's business).
    """
    if not isinstance(instance.run_storage, SqliteRunStorage):
        return []
    notes = []
    active = RunsFilter(statuses=[DagsterRunStatus.STARTING, DagsterRunStatus.STARTED, DagsterRunStatus.CANCELING])
    for run in instance.get_runs(filters=active):
        records = instance.get_records_for_run(run.run_id, ascending=False, limit=20).records
        pids = [r.event_log_entry.dagster_event.pid for r in records if r.event_log_entry.dagster_event]
        if not pids or pids[0] is None or _process_exists(pids[0]):
            continue
        instance.report_run_failed(run, message=f"process {pids[0]} ended without finishing this run (killed?)")
        instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)
        notes.append(f"note: run {run.run_id} of process {pids[0]} was cut off (killed?): marked failed, its slots freed")
    return notes


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        settings = Settings.from_env()
        network = load_network(settings.datasets_file)
        defs = build_definitions(settings)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"portal:  {settings.portal_url}\nstorage: {settings.describe_storage()}\n", flush=True)
    try:  # one quick request first: without a network, say so now rather than once per station
        PortalClient(settings.portal_url, retries=1, connect_timeout=5).dataset(network.enabled[0].dataset)
    except IndexError:
        pass  # no enabled station: nothing to download
    except PortalUnreachable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except PortalError:
        pass  # reachable: the stations will report their own errors
    instance = open_instance()
    for note in release_abandoned_runs(instance):
        print(note, file=sys.stderr)
    job = defs.resolve_job_def(PIPELINE_JOB)
    range_tags = {
        "dagster/asset_partition_range_start": args.start.isoformat(),
        "dagster/asset_partition_range_end": args.end.isoformat(),
    }
    result = job.execute_in_process(instance=instance, tags=range_tags, raise_on_error=False)
    catalogue = defs.resolve_job_def(CATALOGUE_JOB).execute_in_process(instance=instance, raise_on_error=False)
    # then what is built on every station: the network table for the range, and the dashboard
    network_wide = [
        defs.resolve_job_def(NETWORK_JOB).execute_in_process(
            instance=instance, tags=range_tags, asset_selection=[NETWORK_DAILY], raise_on_error=False
        ),
        defs.resolve_implicit_global_asset_job_def().execute_in_process(
            instance=instance, asset_selection=[AssetKey("dashboard")], raise_on_error=False
        ),
    ]
    reports = collect(result.all_events)
    stations = [s.key for s in network.enabled]
    print(render(reports, stations, args.start, args.end))
    for what, run in (("station catalogue", catalogue), ("network/daily", network_wide[0]), ("dashboard", network_wide[1])):
        if not run.success:
            failures = [f for report in collect(run.all_events).values() for f in report.failures]
            print(f"\n{what}: FAILED ({failures[0] if failures else 'see the Dagster UI'})")
    print(f"\n{settings.describe_storage()}  ·  run id: {result.run_id}")
    if dashboard := describe_site(settings.data_dir):
        print(dashboard)
    return 0 if all(r.success for r in (result, catalogue, *network_wide)) else 1


if __name__ == "__main__":
    sys.exit(main())
