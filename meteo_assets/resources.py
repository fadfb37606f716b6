"""Dagster resources, and the one place that picks them from the environment."""

from __future__ import annotations

from dagster import ConfigurableResource
from pydantic import PrivateAttr

from meteo_assets.config import Settings
from meteo_assets.portal import PortalClient
from meteo_assets.storage.duckdb_io import MeteoDuckDBIOManager
from meteo_assets.storage.raw_files import RawFilesIOManager


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
        }
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return {
        "portal": portal,
        "raw_io_manager": RawFilesIOManager(base_dir=str(settings.raw_dir)),
        "io_manager": MeteoDuckDBIOManager(database=str(settings.duckdb_path)),
    }
