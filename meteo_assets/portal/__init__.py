"""The source: the Toulouse Métropole open-data portal (Opendatasoft Explore v2.1)."""

from meteo_assets.portal.client import (
    DatasetNotFound,
    Export,
    PortalClient,
    PortalError,
    PortalUnreachable,
    window_filter,
)

__all__ = ["DatasetNotFound", "Export", "PortalClient", "PortalError", "PortalUnreachable", "window_filter"]
