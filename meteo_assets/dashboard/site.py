"""The model → a static site that opens from a folder on disk or from static web hosting.

Everything the page needs is in the folder: Plotly's JavaScript (from the `plotly` package), the
page's script and style (`static/`), and the data as a script (`assets/data.js`), since browsers
refuse to fetch JSON from `file://`.
"""

from __future__ import annotations

import datetime as dt
import html
import os
from importlib import resources
from pathlib import Path

from meteo_assets.dashboard.model import model_json
from meteo_assets.transform.contract import PARIS

SITE_FOLDER = "dashboard"
INDEX = "index.html"
STATIC = ("dashboard.js", "dashboard.css")
CONTENT_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                 ".css": "text/css; charset=utf-8"}


def site_index(data_dir: Path) -> Path:
    """Where the dashboard's page lands under `METEO_DATA_DIR`."""
    return Path(data_dir) / SITE_FOLDER / INDEX


def describe_site(data_dir: Path) -> str | None:
    """The `make run` summary's line about the dashboard, if one was built."""
    index = site_index(data_dir)
    if not index.exists():
        return None
    built = dt.datetime.fromtimestamp(index.stat().st_mtime, PARIS)
    return f"dashboard: {index.as_uri()}  (built {built:%Y-%m-%d %H:%M} Paris time; `make dashboard` rebuilds it)"


def render_site(model: dict) -> dict[str, bytes]:
    """Every file of the site by its path relative to the site's folder."""
    from plotly.offline import get_plotlyjs

    static = resources.files(__package__).joinpath("static")
    files = {f"assets/{name}": static.joinpath(name).read_bytes() for name in STATIC}
    files["assets/plotly.min.js"] = get_plotlyjs().encode("utf-8")
    files["assets/data.js"] = f"window.METEO_DASHBOARD = {model_json(model)};\n".encode("utf-8")
    files[INDEX] = _index(static.joinpath(INDEX).read_text(encoding="utf-8"), model).encode("utf-8")
    return files


def write_site(files: dict[str, bytes], folder: Path) -> None:
    """Write the files, each replaced atomically, so an open page never reads a half-written one."""
    for name, content in files.items():
        path = Path(folder) / name
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".partial")
        partial.write_bytes(content)
        os.replace(partial, path)


def content_type(name: str) -> str:
    return CONTENT_TYPES[Path(name).suffix]


def _index(template: str, model: dict) -> str:
    last_day = dt.date.fromisoformat(model["first_day"]) + dt.timedelta(days=model["days"] - 1)
    generated = dt.datetime.fromisoformat(model["generated_at"])
    values = {
        "stations": str(len(model["stations"])),
        "first_day": model["first_day"],
        "last_day": last_day.isoformat(),
        "default_start": model["default_period"][0],
        "generated": generated.strftime("%Y-%m-%d %H:%M (Paris time)"),
        "min_coverage": f"{model['min_coverage']:.0%}",
    }
    for name, value in values.items():
        template = template.replace("{{" + name + "}}", html.escape(value))
    return template
