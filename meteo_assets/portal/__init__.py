"""The source: the Toulouse Métropole open-data portal (Opendatasoft Explore v2.1)."""

from meteo_assets.portal.client import (
    CATALOGUE_DATASET,
    DatasetNotFound,
    Export,
    IncompleteResponse,
    PortalClient,
    PortalError,
    PortalTimeout,
    PortalUnreachable,
    RedirectRefused,
    window_filter,
)

__all__ = [
    "CATALOGUE_DATASET",
    "DatasetNotFound",
    "Export",
    "IncompleteResponse",
    "PortalClient",
    "PortalError",
    "PortalTimeout",
    "PortalUnreachable",
    "RedirectRefused",
    "window_filter",
]
