"""Where the shared real exports are (CI and developers have `../shared` beside the project)."""

from pathlib import Path

import pytest

RESEARCH_DATA = Path(__file__).resolve().parents[2] / "shared" / "research-data"
ANOMALIES = RESEARCH_DATA / "station42_compans_cafarelli_anomalies.csv"
DST_CHANGE = RESEARCH_DATA / "station42_compans_cafarelli_2020-10-24_26.csv"
STATIONS = RESEARCH_DATA / "stations"

requires_research_data = pytest.mark.skipif(
    not RESEARCH_DATA.is_dir(),
    reason=f"real portal exports not found at {RESEARCH_DATA} (../shared/research-data)",
)


def research_file(name: str) -> Path:
    path = RESEARCH_DATA / name
    if not path.exists():
        pytest.skip(f"real export {name} not found under {RESEARCH_DATA}")
    return path
