"""Where the shared real exports are (CI and developers have `../shared` beside the project)."""

from pathlib import Path

import pytest

RESEARCH_DATA = Path(__file__).resolve().parents[2] / "shared" / "research-data"


def research_file(name: str) -> Path:
    path = RESEARCH_DATA / name
    if not path.exists():
        pytest.skip(f"real export {name} not found under {RESEARCH_DATA}")
    return path
