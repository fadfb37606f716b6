"""Run the fake portal by hand: ``python -m meteo_assets_tests.fake_portal --help``."""

from __future__ import annotations

import argparse
import signal
import threading
from datetime import date, timedelta

from .generator import CATALOGUE_DATASET_ID, default_network, is_archive, station_catalogue
from .server import API_BASE, FakePortal, load_research_data


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m meteo_assets_tests.fake_portal",
        description=(
            "Serve a stand-in of the Toulouse Métropole open-data portal (Explore API v2.1 subset) on "
            "127.0.0.1: a generated network of weather stations with the real exports' quirks, plus, "
            "optionally, the real exports of the research data.  Stops on Ctrl-C."
        ),
        epilog="Example: python -m meteo_assets_tests.fake_portal --port 8765 --stations 5 "
               "--start 2020-01-01 --end 2020-12-31 --research-data ../shared/research-data",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s)")
    parser.add_argument("--port", type=int, default=8765, help="port to bind, 0 for any free one (default: %(default)s)")
    parser.add_argument("--stations", type=int, default=5, metavar="N",
                        help="number of generated stations, 0 for none (default: %(default)s)")
    parser.add_argument("--start", type=date.fromisoformat, default=date(2020, 1, 1), metavar="YYYY-MM-DD",
                        help="first day of generated data, UTC (default: %(default)s)")
    parser.add_argument("--end", type=date.fromisoformat, default=date(2020, 12, 31), metavar="YYYY-MM-DD",
                        help="last day of generated data, included (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the generated network (default: %(default)s)")
    parser.add_argument("--no-quirks", action="store_true",
                        help="generate perfect, sorted 15-minute grids instead of realistic dirty exports")
    parser.add_argument("--research-data", metavar="PATH",
                        help="also serve the real exports found in PATH (the research-data folder or its stations/)")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    if args.end < args.start:
        raise SystemExit("--end must not be before --start")
    quirks = not args.no_quirks
    datasets, stations, metas, overrides = {}, [], {}, {}
    if args.stations:
        specs = default_network(args.stations, args.start, args.end + timedelta(days=1), seed=args.seed, quirks=quirks)
        datasets = {s.dataset_id: s for s in specs}
        stations = station_catalogue(specs, seed=args.seed, quirks=quirks)
    if args.research_data:
        research = load_research_data(args.research_data)
        datasets.update(research.sources)
        stations += research.stations
        metas, overrides = research.metas, research.field_overrides
    portal = FakePortal(datasets, stations=stations, metas=metas, field_overrides=overrides,
                        host=args.host, port=args.port)
    with portal:
        print(f"Fake portal at {portal.url}  (API: {portal.url}{API_BASE})")
        for dataset_id in portal.dataset_ids:
            kind = ("catalogue" if dataset_id == CATALOGUE_DATASET_ID
                    else "archive" if is_archive(dataset_id) else "live")
            print(f"  {kind:9} {dataset_id}")
        print("Ctrl-C to stop.", flush=True)
        stop_on_sigterm()
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            print("stopped")


def stop_on_sigterm() -> None:
    """Stop on SIGTERM like on Ctrl-C, even when started by a process that ignores or blocks it."""

    def interrupt(*_):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})


if __name__ == "__main__":
    main()
