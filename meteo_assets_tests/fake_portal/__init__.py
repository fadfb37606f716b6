"""A stand-in for the Toulouse Métropole open-data portal, for tests and benchmarks.

``generator`` synthesises realistic station exports (deterministic by seed, with the real quirks);
``server.FakePortal`` serves them, or real exports, through the Explore API v2.1 subset we use.
"""

from .generator import (
    CATALOGUE_DATASET_ID,
    StationSpec,
    decode_payload,
    default_network,
    generate_frame,
    generate_rows,
    render_csv,
    split_archives,
    station_catalogue,
)
from .server import API_BASE, FakePortal, RecordedRequest

__all__ = [
    "API_BASE",
    "CATALOGUE_DATASET_ID",
    "FakePortal",
    "RecordedRequest",
    "StationSpec",
    "decode_payload",
    "default_network",
    "generate_frame",
    "generate_rows",
    "render_csv",
    "split_archives",
    "station_catalogue",
]
