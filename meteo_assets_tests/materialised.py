"""Materialise a range of days through Dagster, in this process, the way the loaders' and the
notebooks' tests need their data: the station pipeline, then (optionally) `network/daily` with the
station catalogue. Settings come from the environment (e.g. a `stand_in(...).activated()` block)."""

from __future__ import annotations

import datetime as dt

from dagster import DagsterInstance

from meteo_assets.definitions import NETWORK_JOB, PIPELINE_JOB, build_definitions


def materialise(first: dt.date, last: dt.date, *, pipeline: bool = True, network: bool = True) -> None:
    """Run the chosen jobs over `first`…`last` (one ranged run each); fail naming the failed steps."""
    defs = build_definitions()
    tags = {"dagster/asset_partition_range_start": first.isoformat(), "dagster/asset_partition_range_end": last.isoformat()}
    jobs = [job for job, wanted in ((PIPELINE_JOB, pipeline), (NETWORK_JOB, network)) if wanted]
    for job in jobs:
        result = defs.resolve_job_def(job).execute_in_process(instance=DagsterInstance.get(), tags=tags, raise_on_error=False)
        failed = [event.step_key for event in result.all_events if event.is_step_failure]
        assert result.success, f"{job} over {first}…{last} failed in steps {failed}"
