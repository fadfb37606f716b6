"""Storage-mode benchmark: the same ranged run in local mode (files + DuckDB) and in S3 mode (raw
bucket + Parquet lake on moto's S3 server on 127.0.0.1), then the notebook loaders in each.

    .venv/bin/python benchmarks/storage_modes.py                                   # 5 stations × 3 months
    .venv/bin/python benchmarks/storage_modes.py --stations 10 --start 2020-01-01 --end 2020-12-31

Prints per mode: the run's wall time (in-process, one single-run backfill of raw + clean + daily),
what it stored (objects or files, bytes), and the wall time of `load_daily()` / `load_clean()` over
the whole range and of `load_clean()` for one station-day. moto is slower than S3 per request and
has no network latency: read the S3 figures as the IO managers' own cost, not as AWS's.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import meteo_assets  # noqa: E402
from meteo_assets.config import Settings, load_network  # noqa: E402
from meteo_assets_tests.fake_portal import FakePortal, default_network  # noqa: E402
from meteo_assets_tests.s3_server import S3Server  # noqa: E402
from meteo_assets_tests.stand_in import stand_in  # noqa: E402
from meteo_assets_tests.test_pipeline import environment, run_range  # noqa: E402


def timed(call):
    started = time.perf_counter()
    value = call()
    return time.perf_counter() - started, value


def stored(settings: Settings, server: S3Server) -> str:
    if settings.storage == "s3":
        client = server.client()
        parts = []
        for bucket in (settings.raw_bucket, settings.lake_bucket):
            objects = [o for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
                       for o in page.get("Contents", [])]
            parts.append(f"{bucket}: {len(objects):,} objects, {sum(o['Size'] for o in objects) / 1e6:.1f} MB")
        return "; ".join(parts)
    files = [p for p in settings.data_dir.rglob("*") if p.is_file()]
    return f"{settings.data_dir.name}/: {len(files):,} files, {sum(p.stat().st_size for p in files) / 1e6:.1f} MB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--stations", type=int, default=5)
    parser.add_argument("--start", type=dt.date.fromisoformat, default=dt.date(2020, 9, 1))
    parser.add_argument("--end", type=dt.date.fromisoformat, default=dt.date(2020, 11, 30))
    args = parser.parse_args()
    specs = default_network(args.stations, args.start - dt.timedelta(days=2), args.end + dt.timedelta(days=2), seed=7)
    days = (args.end - args.start).days + 1
    print(f"{args.stations} stations × {days} days ({args.start}…{args.end})")
    with S3Server() as server, tempfile.TemporaryDirectory() as folder:
        for mode in ("local", "s3"):
            mode_env = server.storage_env("bench") if mode == "s3" else {"METEO_STORAGE": "local"}
            with stand_in(Path(folder) / mode, FakePortal(specs), specs) as env, env.activated(), environment(mode_env):
                seconds, result = timed(lambda: run_range(args.start, args.end))
                if not result.success:
                    sys.exit(f"{mode}: the run failed")
                settings = Settings.from_env()
                first = load_network(settings.datasets_file).stations[0].key
                daily_s, daily = timed(lambda: meteo_assets.load_daily(start=args.start, end=args.end))
                clean_s, clean = timed(lambda: meteo_assets.load_clean(start=args.start, end=args.end))
                one_s, _ = timed(lambda: meteo_assets.load_clean(stations=first, start=args.end, end=args.end))
                print(f"\n{mode}: run {seconds:.1f} s; stored {stored(settings, server)}")
                print(f"  load_daily {len(daily):,} rows {daily_s:.2f} s · load_clean {len(clean):,} rows {clean_s:.2f} s"
                      f" · load_clean one station-day {one_s:.2f} s")


if __name__ == "__main__":
    os.environ.setdefault("DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS", "1")
    main()
