"""The example notebooks run headless, cell by cell (nbclient + ipykernel), against data
materialised from the stand-in portal; the first failing cell fails the test.

Two datasets: a network with everything materialised (stations and `network/daily` for part of the
period only, as when the network sensor has not caught up), and a bare one, two stations with
their station tables only (no catalogue, no `network/daily`), which the notebooks must cope with.
"""

from __future__ import annotations

import datetime as dt
import json
import re

import nbformat
import pytest
from nbclient import NotebookClient

from meteo_assets.config import PROJECT_ROOT, load_network
from meteo_assets_tests.fake_portal import FakePortal, default_network
from meteo_assets_tests.materialised import materialise
from meteo_assets_tests.stand_in import stand_in

NOTEBOOKS = {name: PROJECT_ROOT / "notebooks" / f"{name}.ipynb" for name in ("01_quickstart", "02_heat_island")}
# local climate zones 3 to D, an outage, an hourly reporter, two stations sharing a number
SPECS = default_network(7, "2023-06-25", "2023-07-25", seed=6)
FIRST, LAST = dt.date(2023, 7, 3), dt.date(2023, 7, 16)
BARE_SPECS = default_network(2, "2023-06-25", "2023-07-25", seed=11, quirks=False)


@pytest.fixture(scope="module")
def full(tmp_path_factory):
    with stand_in(tmp_path_factory.mktemp("notebooks-full"), FakePortal(SPECS), SPECS) as env:
        with env.activated():
            materialise(FIRST, LAST, network=False)
            materialise(FIRST, FIRST + dt.timedelta(days=6), pipeline=False)  # stations + network/daily, first week
        yield env


@pytest.fixture(scope="module")
def bare(tmp_path_factory):
    with stand_in(tmp_path_factory.mktemp("notebooks-bare"), FakePortal(BARE_SPECS), BARE_SPECS) as env:
        with env.activated():
            materialise(LAST - dt.timedelta(days=4), LAST, network=False)
        yield env


def execute(name: str, env, tmp_path) -> nbformat.NotebookNode:
    """Run a notebook in a fresh kernel whose environment holds the stand-in's settings."""
    notebook = nbformat.read(NOTEBOOKS[name], as_version=4)
    with env.activated():  # the kernel inherits this process's environment
        NotebookClient(notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    return notebook


def outputs(notebook: nbformat.NotebookNode) -> tuple[str, int]:
    """The text the cells printed or displayed, and how many PNG images they drew."""
    texts, images = [], 0
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            assert output["output_type"] != "error", output
            texts.append(output.get("text", ""))
            data = output.get("data", {})
            texts.append(data.get("text/plain", ""))
            images += "image/png" in data
    return "\n".join(texts), images


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebooks_are_committed_without_outputs(name):
    notebook = nbformat.read(NOTEBOOKS[name], as_version=4)
    nbformat.validate(notebook)
    assert notebook.metadata.kernelspec.name == "python3"
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code and all(cell.outputs == [] and cell.execution_count is None for cell in code)
    machine_path = re.search(r"(?<![\w.])(/(home|root|tmp|work|Users)/|[A-Z]:\\\\)", json.dumps(notebook))
    assert machine_path is None, f"a machine path in the notebook: {machine_path}"


def test_quickstart_runs_on_a_generated_network(full, tmp_path):
    text, images = outputs(execute("01_quickstart", full, tmp_path))
    assert images == 3  # a week every 15 minutes, the daily band, two stations compared
    network = load_network(full.folder / "datasets.toml")
    assert f"{len(network.enabled)} stations configured in datasets.toml" in text
    shown = next(s for s in network.stations if f"({s.key}), {LAST - dt.timedelta(days=6)} → {LAST}" in text)
    assert "the same table, three ways: True" in text
    assert f"{shown.dataset}: " in text  # its raw bytes, per source dataset
    assert "mean gap" in text


def test_heat_island_runs_on_a_generated_network(full, tmp_path):
    text, images = outputs(execute("02_heat_island", full, tmp_path))
    assert images == 4  # index per station and day with zones, hour profile, day vs night, nights
    assert f"{FIRST} → {LAST}: {len(load_network(full.folder / 'datasets.toml').enabled)} stations" in text
    assert "network/daily holds 7 of the 14 days; the other 7 are computed here" in text
    for zone in ("LCZ 3 compact low-rise", "LCZ 9 sparsely built", "LCZ D low plants"):
        assert zone in text


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebooks_run_with_station_tables_only(bare, tmp_path, name):
    text, images = outputs(execute(name, bare, tmp_path))
    assert images >= 3
    if name == "02_heat_island":
        assert "stations is not materialised" in text and "LCZ unknown" in text
