"""Dagster resources, and the one place that picks them from the environment."""

from __future__ import annotations

from dagster import ConfigurableResource
from pydantic import PrivateAttr

from meteo_assets.config import Settings
from meteo_assets.portal import PortalClient
from meteo_assets.storage.duckdb_io import MeteoDuckDBIOManager
from meteo_assets.storage.raw_files import RawFilesIOManager


class PortalResource(ConfigurableResource):
    """The portal API, with retries and at most `max_concurrent` requests in flight."""

    base_url: str
    max_concurrent: int = 4
    retries: int = 5
    backoff_factor: float = 1.0
    read_timeout: float = 120.0

    _client: PortalClient | None = PrivateAttr(default=None)

    def client(self) -> PortalClient:
        if self._client is None:
            self._client = PortalClient(
                self.base_url,
                max_concurrent=self.max_concurrent,
                retries=self.retries,
                backoff_factor=self.backoff_factor,
                read_timeout=self.read_timeout,
            )
        return self._client


def build_resources(settings: Settings) -> dict:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return {
        "portal": PortalResource(base_url=settings.portal_url, max_concurrent=settings.max_portal_requests),
        "raw_io_manager": RawFilesIOManager(base_dir=str(settings.raw_dir)),
        "io_manager": MeteoDuckDBIOManager(database=str(settings.duckdb_path)),
    }
