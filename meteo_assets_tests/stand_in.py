"""A whole offline setting for the pipeline: the stand-in portal, a matching `datasets.toml`, a data dir.

Used by the end-to-end tests, `make demo` and the benchmarks, so that all three exercise the
pipeline exactly as a user would, only against 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from meteo_assets.config import DATASET_ID, PROJECT_ROOT
from meteo_assets_tests.fake_portal import FakePortal, StationSpec


def datasets_toml(specs: Sequence[StationSpec], *, extra: Sequence[str] = (), start_date: str = "2019-06-01") -> str:
    """`datasets.toml` for a generated network: archives attached to the live dataset of their sensor."""
    live = [s for s in specs if "archive" not in s.dataset_id]
    archives = [s for s in specs if "archive" in s.dataset_id]
    lines = ["[defaults]", f'start_date = "{start_date}"', ""]
    for spec in live:
        owned = [a.dataset_id for a in archives if a.sensor_id == spec.sensor_id]
        lines += ["[[stations]]", f'dataset = "{spec.dataset_id}"', f'name = "{spec.ville} {spec.dataset_id[17:]}"']
        if spec.sensor_id != int(spec.dataset_id[:2]):
            lines.append(f"sensor_id = {spec.sensor_id}")
        if owned:
            lines.append("archives = [" + ", ".join(f'"{a}"' for a in owned) + "]")
        lines.append("")
    for dataset in extra:
        assert DATASET_ID.match(dataset), dataset
        lines += ["[[stations]]", f'dataset = "{dataset}"', ""]
    return "\n".join(lines)


@dataclass
class StandIn:
    portal: FakePortal
    folder: Path

    @property
    def env(self) -> dict[str, str]:
        return {
            "METEO_PORTAL_URL": self.portal.url,
            "METEO_DATASETS_FILE": str(self.folder / "datasets.toml"),
            "METEO_DATA_DIR": str(self.folder / "data"),
            "DAGSTER_HOME": str(self.folder / "dagster_home"),
        }

    @contextlib.contextmanager
    def activated(self) -> Iterator[StandIn]:
        """Point this process's settings at the stand-in for the duration of the block."""
        saved = {k: os.environ.get(k) for k in self.env}
        os.environ.update(self.env)
        try:
            yield self
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


@contextlib.contextmanager
def stand_in(folder: Path, portal: FakePortal, specs: Sequence[StationSpec] = (), *, extra: Sequence[str] = (),
             toml: str | None = None) -> Iterator[StandIn]:
    """Start `portal` and write the settings for it into `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "datasets.toml").write_text(toml if toml is not None else datasets_toml(specs, extra=extra), encoding="utf-8")
    (folder / "dagster_home").mkdir(exist_ok=True)
    # the project's instance settings, as `make run` / `make dev` use them (pools, event log storage)
    shutil.copy(PROJECT_ROOT / "dagster_home" / "dagster.yaml", folder / "dagster_home" / "dagster.yaml")
    with portal:
        yield StandIn(portal, folder)
