"""Dagster resources, and the one place that picks them from the environment."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Sequence
from concurrent.futures import Future
from typing import NamedTuple

from dagster import ConfigurableResource
from pydantic import PrivateAttr

from meteo_assets.assets.ahead import WorkAhead
from meteo_assets.config import Settings
from meteo_assets.portal import PortalClient
from meteo_assets.portal.client import Export
from meteo_assets.storage.duckdb_io import MeteoDuckDBIOManager
from meteo_assets.storage.raw_files import RawFilesIOManager

LOOKAHEAD = 2  # stations whose exports are fetched ahead of their step (a station-year is ~8 MB of CSV)


class ExportRequest(NamedTuple):
    dataset: str
    start: dt.datetime
    end: dt.datetime
    context: str  # what the request is for, in error messages: station and partition range


class PortalResource(ConfigurableResource):
    """The portal API, with retries and at most `max_concurrent` requests in flight.

    Waits between tries grow as `backoff_factor` × 2^n (+ jitter) up to `backoff_max` seconds; a
    `Retry-After` is honoured up to `retry_after_max` seconds. Timeouts are in seconds.
    """

    base_url: str
    max_concurrent: int = 4
    retries: int = 5
    backoff_factor: float = 1.0
    backoff_max: float = 60.0
    retry_after_max: float = 120.0
    connect_timeout: float = 10.0
    read_timeout: float = 120.0

    _client: PortalClient | None = PrivateAttr(default=None)
    _ahead: dict[tuple[ExportRequest, ...], list[Future]] = PrivateAttr(default_factory=dict)
    _ahead_run: str | None = PrivateAttr(default=None)
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    def client(self) -> PortalClient:
        if self._client is None:
            self._client = PortalClient(
                self.base_url,
                max_concurrent=self.max_concurrent,
                retries=self.retries,
                backoff_factor=self.backoff_factor,
                backoff_max=self.backoff_max,
                retry_after_max=self.retry_after_max,
                connect_timeout=self.connect_timeout,
                read_timeout=self.read_timeout,
            )
        return self._client

    def exports(
        self, requests: Sequence[ExportRequest], ahead: Sequence[Sequence[ExportRequest]] = (), *, run_id: str
    ) -> list[Export]:
        """The exports of `requests` (raising the first `PortalError`), at most `max_concurrent` in flight.

        `ahead` lists the request groups run `run_id` will ask for next (the next stations): once
        this station's exports are in, the first `LOOKAHEAD` of them start downloading, so that the
        portal's answers arrive while Dagster records this station's days rather than when the
        next step asks for them. They never compete with a station's own requests, and what
        another run fetched ahead is never handed out.
        """
        with self._lock:
            if self._ahead_run != run_id:
                for futures in self._ahead.values():
                    for future in futures:
                        future.cancel()
                self._ahead, self._ahead_run = {}, run_id
            wanted = tuple(requests)
            futures = self._ahead.pop(wanted, None) or [self._start(r) for r in wanted]
        exports = [future.result() for future in futures]
        with self._lock:
            for group in map(tuple, ahead if self._ahead_run == run_id else ()):
                if len(self._ahead) >= LOOKAHEAD:
                    break
                if group and group not in self._ahead:
                    self._ahead[group] = [self._start(r) for r in group]
        return exports

    def _start(self, request: ExportRequest) -> Future:
        """One download on its own daemon thread (the client's semaphore bounds those in flight): a
        process that ends never waits for a download nobody will ask for."""
        future: Future = Future()

        def download() -> None:
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(self.client().export_csv(request.dataset, request.start, request.end,
                                                               context=request.context))
                except BaseException as exc:  # handed to the step that asks for it
                    future.set_exception(exc)

        threading.Thread(target=download, name=f"portal-{request.dataset}", daemon=True).start()
        return future


def build_resources(settings: Settings) -> dict:
    """The assets' storage is chosen here only (`METEO_STORAGE`); the asset code is the same in both modes."""
    portal = PortalResource(base_url=settings.portal_url, max_concurrent=settings.max_portal_requests)
    if settings.storage == "s3":
        # imported in S3 mode only: boto3 and dagster-aws would add ~0.3 s to every definitions load
        from dagster_aws.s3 import S3Resource

        from meteo_assets.storage.lake import ParquetLakeIOManager
        from meteo_assets.storage.s3_raw import S3RawIOManager

        # no credentials in the resource: boto3 takes them from the standard AWS chain
        s3 = S3Resource(endpoint_url=settings.s3_endpoint_url)
        create = settings.s3_create_buckets
        return {
            "portal": portal,
            "raw_io_manager": S3RawIOManager(s3=s3, bucket=settings.raw_bucket, create_bucket=create),
            "io_manager": ParquetLakeIOManager(s3=s3, bucket=settings.lake_bucket, create_bucket=create),
            "work_ahead": WorkAhead(),  # the worker reads local files only: each step does its own work
        }
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return {
        "portal": portal,
        "raw_io_manager": RawFilesIOManager(base_dir=str(settings.raw_dir)),
        "io_manager": MeteoDuckDBIOManager(database=str(settings.duckdb_path)),
        "work_ahead": WorkAhead(raw_dir=str(settings.raw_dir), database=str(settings.duckdb_path)),
    }
