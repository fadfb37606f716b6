"""`make demo`: the main job, offline, against the stand-in portal serving a generated network.

    python -m meteo_assets_tests.demo [--start YYYY-MM-DD] [--end YYYY-MM-DD] [--stations N]

Everything lands in `data/demo/` (its own datasets.toml, raw files, DuckDB and run history), so a
demo never mixes with the real network's data.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path

from meteo_assets.config import PROJECT_ROOT
from meteo_assets.run import default_range
from meteo_assets.run import main as run_main
from meteo_assets_tests.fake_portal import FakePortal, default_network, station_catalogue
from meteo_assets_tests.stand_in import stand_in

DEMO_DIR = PROJECT_ROOT / "data" / "demo"


def main(argv: list[str] | None = None) -> int:
    start, end = default_range()
    parser = argparse.ArgumentParser(prog="make demo", description=__doc__.split("\n")[0])
    parser.add_argument("--start", type=dt.date.fromisoformat, default=start, help=f"first day (default {start})")
    parser.add_argument("--end", type=dt.date.fromisoformat, default=end, help=f"last day (default {end})")
    parser.add_argument("--stations", type=int, default=8, help="generated stations (default 8)")
    args = parser.parse_args(argv)
    # data from a month before the range to the day after it, as the portal would hold it
    specs = default_network(args.stations, args.start - dt.timedelta(days=31), args.end + dt.timedelta(days=2), seed=2026)
    portal = FakePortal(specs, stations=station_catalogue(specs, seed=2026))
    with stand_in(Path(DEMO_DIR), portal, specs) as env, env.activated():
        print(f"stand-in portal serving {len(specs)} generated datasets at {portal.url}")
        status = run_main(["--start", args.start.isoformat(), "--end", args.end.isoformat()])
    print(f"\nDemo data is in {DEMO_DIR}. Load it in Python with METEO_DATA_DIR={DEMO_DIR / 'data'} "
          f"METEO_DATASETS_FILE={DEMO_DIR / 'datasets.toml'} set.")
    return status


if __name__ == "__main__":
    sys.exit(main())
