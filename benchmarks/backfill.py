"""Backfill benchmark: the Dagster CLI backfill against a bare DuckDB script, on the same stand-in portal.

    .venv/bin/python benchmarks/backfill.py                                  # 20 stations × 2023
    .venv/bin/python benchmarks/backfill.py --stations 50 --start 2019-06-01 --end 2026-11-25
    .venv/bin/python benchmarks/backfill.py --stations 5 --start 2020-01-01 --end 2020-03-31 --skip-graphql

Prints, for raw + clean + daily of every station over the range: wall time, observations per
second, peak RSS and portal requests of the `dagster asset materialize --partition-range` run; the
same for the bare lower bound (`bare_lower_bound.py`) and the ratio; then the daily increment (one
day, all stations), the definitions load time of the full network (beside what `dagster
definitions validate` takes on a one-asset code location), and the UI's asset-graph GraphQL
query time.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import bare_lower_bound  # noqa: E402
from meteo_assets.config import load_network  # noqa: E402
from meteo_assets.definitions import PIPELINE_JOB  # noqa: E402
from meteo_assets_tests.fake_portal import FakePortal, default_network  # noqa: E402
from meteo_assets_tests.stand_in import stand_in  # noqa: E402

BIN = Path(sys.executable).parent
STATION_ASSETS = "group:raw or group:clean or group:daily"
ASSET_GRAPH_QUERY = """
query AssetGraph { assetNodes { id assetKey { path } groupName dependencyKeys { path }
  partitionDefinition { description } } }
"""


def timed_child(command: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Run a command to completion; return (wall seconds, its peak RSS in MB)."""
    started = time.perf_counter()
    done = subprocess.run(
        ["/usr/bin/time", "-f", "%M", *command] if Path("/usr/bin/time").exists() else command,
        env=env, capture_output=True, text=True, cwd=ROOT,
    )
    wall = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"command failed ({done.returncode}): {' '.join(command)}\n{done.stderr[-4000:]}")
    last = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else ""
    rss = int(last) / 1024 if last.isdigit() else resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return wall, rss


def observations(env: dict[str, str], stations: list[str]) -> int:
    import duckdb

    with duckdb.connect(env["METEO_DATA_DIR"] + "/meteo.duckdb", read_only=True) as conn:
        return sum(conn.execute(f'SELECT count(*) FROM clean."{key}"').fetchone()[0] for key in stations)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def graphql_asset_graph_seconds(env: dict[str, str]) -> float:
    port = free_port()
    server = subprocess.Popen(
        [str(BIN / "dagster-webserver"), "-m", "meteo_assets.definitions", "-h", "127.0.0.1", "-p", str(port)],
        env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        url = f"http://127.0.0.1:{port}/graphql"
        deadline = time.monotonic() + 120
        body = json.dumps({"query": ASSET_GRAPH_QUERY}).encode()
        while True:
            try:
                request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
                with urllib.request.urlopen(request, timeout=60) as response:
                    json.load(response)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        best = float("inf")
        for _ in range(3):
            started = time.perf_counter()
            with urllib.request.urlopen(urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"}), timeout=60) as response:
                nodes = json.load(response)["data"]["assetNodes"]
            best = min(best, time.perf_counter() - started)
        print(f"  asset graph: {len(nodes)} asset nodes")
        return best
    finally:
        server.terminate()
        server.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--stations", type=int, default=20)
    parser.add_argument("--start", type=dt.date.fromisoformat, default=dt.date(2023, 1, 1))
    parser.add_argument("--end", type=dt.date.fromisoformat, default=dt.date(2023, 12, 31))
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--skip-graphql", action="store_true")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="meteo-bench-"))
    specs = default_network(args.stations, args.start - dt.timedelta(days=2), args.end + dt.timedelta(days=2), seed=args.seed)
    portal = FakePortal(specs)
    started = time.perf_counter()
    for spec in specs:
        portal.dataset(spec.dataset_id)  # generate and index before timing anything
    print(f"generated {len(specs)} datasets ({args.stations} stations, {args.start} → {args.end}) "
          f"in {time.perf_counter() - started:.1f}s")
    try:
        with stand_in(folder / "pipeline", portal, specs) as env:
            child_env = {**os.environ, **env.env}
            network = load_network(env.folder / "datasets.toml")
            keys = [s.key for s in network.enabled]
            portal.reset_requests()
            wall, rss = timed_child(
                [str(BIN / "dagster"), "asset", "materialize", "-m", "meteo_assets.definitions",
                 "--select", STATION_ASSETS, "--partition-range", f"{args.start}...{args.end}"],
                child_env,
            )
            dagster_requests = len(portal.requests)
            rows = observations(env.env, keys)

            portal.reset_requests()
            bare_started = time.perf_counter()
            bare_requests = bare_lower_bound.run(network, portal.url, args.start, args.end, folder / "bare")
            bare_wall = time.perf_counter() - bare_started

            day = args.end.isoformat()
            increment, _ = timed_child(
                [str(BIN / "dagster"), "asset", "materialize", "-m", "meteo_assets.definitions",
                 "--select", STATION_ASSETS, "--partition-range", f"{day}...{day}"],
                child_env,
            )
            job_increment, _ = timed_child(  # the run the sensor and the schedule launch
                [str(BIN / "dagster"), "job", "execute", "-m", "meteo_assets.definitions", "-j", PIPELINE_JOB,
                 "--tags", json.dumps({"dagster/partition": day})],
                child_env,
            )

        print(f"\nbackfill of raw + clean + daily, {len(keys)} stations × {(args.end - args.start).days + 1} days")
        print(f"  dagster CLI : {wall:8.1f} s  {rows / wall:10,.0f} obs/s  peak RSS {rss:7.0f} MB  "
              f"{dagster_requests} portal requests  ({rows:,} observations)")
        print(f"  bare script : {bare_wall:8.1f} s  {rows / bare_wall:10,.0f} obs/s  "
              f"{'':>17}{bare_requests} portal requests")
        print(f"  ratio       : {wall / bare_wall:8.2f} ×")
        print(f"daily increment (one day, {len(keys)} stations): {increment:.1f} s with the asset CLI (freshness "
              f"checks included), {job_increment:.1f} s as the {PIPELINE_JOB} job the sensor and schedule run")

        full_env = {k: v for k, v in os.environ.items() if k not in ("METEO_DATASETS_FILE",)}
        full_env["DAGSTER_HOME"] = str(folder / "home")
        Path(full_env["DAGSTER_HOME"]).mkdir(exist_ok=True)
        load, _ = timed_child([str(BIN / "dagster"), "definitions", "validate", "-m", "meteo_assets.definitions"], full_env)
        built, _ = timed_child([sys.executable, "-c", "import meteo_assets.definitions"], full_env)
        one_asset = folder / "one_asset.py"  # what the command costs whatever the code location
        one_asset.write_text("import dagster as dg\n\n\n@dg.asset\ndef one():\n    return 1\n\n\n"
                             "defs = dg.Definitions(assets=[one])\n", encoding="utf-8")
        floor, _ = timed_child([str(BIN / "dagster"), "definitions", "validate", "-f", str(one_asset)], full_env)
        stations = len(load_network(ROOT / "datasets.toml").enabled)
        print(f"definitions (datasets.toml, {stations} stations): import + build {built:.1f} s in a fresh process; "
              f"`dagster definitions validate` {load:.1f} s, where a one-asset code location takes {floor:.1f} s")
        if not args.skip_graphql:
            print(f"GraphQL asset-graph query (best of 3): {graphql_asset_graph_seconds(full_env):.2f} s")
    finally:
        if args.keep:
            print(f"work folder kept: {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
