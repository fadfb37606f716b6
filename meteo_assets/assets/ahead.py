"""Clean and daily steps worked ahead on the machine's other core.

A run executes its steps one at a time in one process (the in-process executor: DuckDB takes one
writer). While Dagster records the days of one station's clean step, a worker process parses and
cleans the raw days of the next stations of the run, read from the raw layer's files. A step uses
what was worked ahead only if the raw days it was handed are byte for byte those the worker read;
otherwise, or when the worker failed, it does the work itself (and raises its own errors).

Daily steps likewise: the worker cannot read the DuckDB file the run holds, so a daily step reads
the next stations' clean rows (as their steps' inputs will be loaded) and sends them; a daily step
uses the worker's summary only if its input equals the rows that were sent.
"""

from __future__ import annotations

import ast
import datetime as dt
import functools
import hashlib
import multiprocessing
import os
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

import pandas as pd
from dagster import ConfigurableResource, InitResourceContext, TimeWindow
from dagster._core.storage.db_io_manager import TablePartitionDimension, TableSlice
from pydantic import PrivateAttr

from meteo_assets.config import Station
from meteo_assets.storage.duckdb_io import read_slice
from meteo_assets.storage.raw_files import RawDays, RawStore, read_raw_days

Window = tuple[dt.datetime, dt.datetime]
# what a clean step computes from its raw days: (station, raw, days, UTC window) → its result
Work = Callable[[Station, RawDays, list[dt.date], Window], Any]
# what a daily step computes from its clean rows: (station, clean rows, days) → its result
DailyWork = Callable[[Station, pd.DataFrame, list[dt.date]], Any]
Key = tuple[str, str, str, tuple[dt.date, ...]]  # layer, run id, station key, days


def raw_digest(raw: RawDays) -> bytes:
    """One digest of every day's files (names and lengths included, so no two layouts collide)."""
    digest = hashlib.blake2b(digest_size=20)
    for day in sorted(raw):
        for dataset in sorted(raw[day]):
            content = raw[day][dataset]
            digest.update(f"{day}/{dataset}/{len(content)}\n".encode())
            digest.update(content)
    return digest.digest()


def _work_from_files(work: Work, raw_dir: str, station: Station, days: list[dt.date], window: Window) -> tuple[bytes, Any]:
    """In the worker: the station's raw days as the raw IO manager reads them, then the work. A
    failure comes back as None: the step then does the work and raises the error with its context
    (and Dagster's errors do not all survive pickling)."""
    try:
        raw = read_raw_days(RawStore(raw_dir), station.key, days)
        return raw_digest(raw), work(station, raw, days, window)
    except Exception:  # noqa: BLE001
        return b"", None


def _work_on_rows(work: DailyWork, station: Station, clean: pd.DataFrame, days: list[dt.date]) -> Any:
    """In the worker: a daily step's work on the clean rows sent (None on failure, as above)."""
    try:
        return work(station, clean, days)
    except Exception:  # noqa: BLE001
        return None


def _end_with(run_pid: int) -> None:
    """In the worker: exit once the run's process is gone. A killed run (`kill -9`, out of memory)
    cannot shut its pool down, and a pool worker would wait for work for ever, keeping its fork
    server alive too."""

    def watch() -> None:
        while True:
            time.sleep(1)
            try:
                os.kill(run_pid, 0)
            except ProcessLookupError:
                os._exit(0)

    threading.Thread(target=watch, name="run-watch", daemon=True).start()


@functools.cache
def unguarded_main_script() -> str | None:
    """The main script a worker would run again, or None when starting one is safe.

    A worker process started by multiprocessing first imports the parent's `__main__` (except a
    package's `__main__.py`); a script whose top level materialises assets without an
    `if __name__ == "__main__":` guard would run them again in the worker. Consoles, notebooks and
    `python -c` have no main file; the `dagster` and `pytest` commands are guarded.
    """
    main = sys.modules.get("__main__")
    name = getattr(getattr(main, "__spec__", None), "name", None)
    path = getattr(main, "__file__", None)
    if path is None or (name is not None and name.split(".")[-1] == "__main__"):
        return None
    try:
        tree = ast.parse(Path(path).read_bytes())
    except (OSError, SyntaxError, ValueError):
        return path
    return None if any(isinstance(node, ast.If) and _is_main_guard(node.test) for node in tree.body) else path


def _is_main_guard(test: ast.expr) -> bool:
    """`__name__ == "__main__"`, either way round."""
    if not (isinstance(test, ast.Compare) and len(test.ops) == 1 and isinstance(test.ops[0], ast.Eq)):
        return False
    sides = {ast.dump(test.left), ast.dump(test.comparators[0])}
    return sides == {ast.dump(ast.Name(id="__name__", ctx=ast.Load())), ast.dump(ast.Constant(value="__main__"))}


class WorkAhead(ConfigurableResource):
    """Works the next stations' clean and daily steps of a run in a worker process (see the module
    docstring).

    `raw_dir`: the raw layer's folder, which the worker reads for clean steps; `database`: the DuckDB
    file daily steps read their clean rows from (both unset with S3 storage: every step then does
    its own work). `depth`: stations worked ahead of the current one; each waiting result holds one
    station's rows for the run's range in memory.
    """

    raw_dir: str | None = None
    database: str | None = None
    depth: int = 2

    _pool: ProcessPoolExecutor | None = PrivateAttr(default=None)  # set once its worker is up
    _starter: threading.Thread | None = PrivateAttr(default=None)
    # the daily work's future comes with the clean rows that were sent, to compare with the step's input
    _futures: dict[Key, tuple[Future, pd.DataFrame | None]] = PrivateAttr(default_factory=dict)
    _broken: bool = PrivateAttr(default=False)
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    def setup_for_execution(self, context: InitResourceContext) -> None:
        selection = context.run.asset_selection if context.run is not None else None
        if selection is None or any(sum(key.path[0] == layer for key in selection) > 1 for layer in ("clean", "daily")):
            script = unguarded_main_script() if self._can_work_ahead() else None
            if script is not None and context.log is not None:
                context.log.warning(
                    f"Clean and daily steps run without their worker process: {script} has no "
                    '`if __name__ == "__main__":` guard, and a worker would run that script again. Add the '
                    "guard around what the script runs to have these steps worked ahead on another core."
                )
            self.start()

    def _can_work_ahead(self) -> bool:
        return (self.raw_dir is not None or self.database is not None) and self.depth > 0

    def start(self) -> None:
        """Start the worker on a thread: the fork server first imports the project (~1.5 s), and no
        step waits for that (until it is up, steps do their own work)."""
        with self._lock:
            if self._starter is None and self._can_work_ahead() and unguarded_main_script() is None:
                self._starter = threading.Thread(target=self._start_pool, name="work-ahead-start", daemon=True)
                self._starter.start()

    def started(self, timeout: float | None = None) -> bool:
        """Wait for the worker to be up (at most `timeout` seconds); False if it is not."""
        self.start()
        if self._starter is not None:
            self._starter.join(timeout)
        return self._pool is not None

    def _start_pool(self) -> None:
        # a fork server, not a fork of this process: the run has threads (downloads, Dagster's)
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["meteo_assets.assets._worker_stdio", "meteo_assets.assets.stations"])
        pool = ProcessPoolExecutor(max_workers=1, mp_context=context, initializer=_end_with, initargs=(os.getpid(),))
        try:
            pool.submit(int).result()  # the worker process starts with a first task
        except Exception:  # noqa: BLE001 — no worker (no room for a process?): steps do their own work
            pool.shutdown(wait=False, cancel_futures=True)
            self._broken = True
            return
        self._pool = pool

    def submit(self, run_id: str, work: Work, upcoming: Sequence[tuple[Station, list[dt.date], Window]]) -> None:
        """Have the first `depth` of the `upcoming` clean steps worked ahead; drop what was started
        for others (a station whose raw step failed has no clean step to take it)."""
        wanted = {("clean", run_id, s.key, tuple(days)): (s, days, window) for s, days, window in upcoming[: max(self.depth, 0)]}
        to_send = self._keep_only("clean", wanted)
        if self.raw_dir is None:
            return
        for key, (station, days, window) in to_send.items():
            if not self._send(key, None, _work_from_files, work, self.raw_dir, station, days, window):
                return

    def take(self, run_id: str, station: str, days: list[dt.date], raw: RawDays) -> Any | None:
        """The result worked ahead for these raw days, or None (not submitted, failed, or other bytes)."""
        future, _ = self._futures.pop(("clean", run_id, station, tuple(days)), (None, None))
        outcome = self._outcome(future)
        if outcome is None:
            return None
        digest, result = outcome
        return result if result is not None and digest == raw_digest(raw) else None

    def submit_daily(
        self, run_id: str, work: DailyWork, upcoming: Sequence[Station], days: list[dt.date], window: TimeWindow
    ) -> None:
        """Have the first `depth` of the `upcoming` daily steps worked ahead, on their clean rows in
        `window` (the current step's input window: every station has the same partitions)."""
        wanted = {("daily", run_id, s.key, tuple(days)): s for s in upcoming[: max(self.depth, 0)]}
        to_send = self._keep_only("daily", wanted)
        if self.database is None:
            return
        for key, station in to_send.items():
            table = TableSlice(table=station.key, schema="clean", partition_dimensions=[
                TablePartitionDimension(partition_expr="local_time", partitions=window)])
            try:
                clean = read_slice(self.database, table)
            except Exception:  # noqa: BLE001, S112 — no clean table yet…: that step fails or works on its own
                continue
            if not self._send(key, clean, _work_on_rows, work, station, clean, days):
                return

    def take_daily(self, run_id: str, station: str, days: list[dt.date], clean: pd.DataFrame) -> Any | None:
        """The result worked ahead for these clean rows, or None (not submitted, failed, or other rows)."""
        future, sent = self._futures.pop(("daily", run_id, station, tuple(days)), (None, None))
        if future is not None and not (sent is not None and sent.equals(clean)):
            future.cancel()
            return None
        return self._outcome(future)

    def _keep_only(self, layer: str, wanted: dict[Key, Any]) -> dict[Key, Any]:
        """Cancel the layer's work nobody will take; start the worker; what is left to send."""
        for key in [k for k in self._futures if k[0] == layer and k not in wanted]:
            self._futures.pop(key)[0].cancel()
        self.start()
        if self._pool is None or self._broken:
            return {}
        return {key: item for key, item in wanted.items() if key not in self._futures}

    def _send(self, key: Key, sent: pd.DataFrame | None, fn: Callable, *args: Any) -> bool:
        """Submit one piece of work; False once the pool is broken or shutting down."""
        if self._pool is None:
            return False
        try:
            self._futures[key] = (self._pool.submit(fn, *args), sent)
        except RuntimeError:  # the pool broke (a worker was killed) or is shutting down
            self._broken = True
            return False
        return True

    def _outcome(self, future: Future | None) -> Any | None:
        if future is None:
            return None
        try:
            return future.result()
        except BrokenProcessPool:  # the worker was killed (out of memory?): every step does its own work
            self._broken = True
            return None

    def teardown_after_execution(self, context: InitResourceContext) -> None:
        for future, _ in self._futures.values():
            future.cancel()
        self._futures.clear()
        if self._starter is not None:
            self._starter.join(timeout=30)  # a fork server that never answers must not hold the run's end
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
