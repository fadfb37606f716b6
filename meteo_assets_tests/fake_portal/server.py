"""A local stand-in for the portal's Explore API v2.1, serving synthetic or real station exports.

It implements the subset the pipeline uses (catalogue, dataset metadata, records, CSV/JSON exports
with ODSQL time windows) with the real portal's behaviours that matter to a client: the CSV BOM by
default, labels as headers under ``use_labels``, the records endpoint caps, JSON errors, and the
exact bytes of the stored rows.  Tests can change data and metadata between calls and inject faults.
"""

from __future__ import annotations

import fnmatch
import gzip
import json
import re
import socket
import struct
import sys
import threading
import zlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from os import PathLike
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence, Union
from urllib.parse import parse_qs, unquote, urlsplit

import numpy as np
import pandas as pd

from .generator import (
    CATALOGUE_DATASET_ID,
    CATALOGUE_FIELDS,
    KNOWN_FIELDS,
    StationSpec,
    default_network,
    format_rows,
    generate_frame,
    render_lines,
    station_catalogue,
)

UTC = timezone.utc
API_BASE = "/api/explore/v2.1"
Rows = Union[pd.DataFrame, Sequence[Mapping[str, str]]]
Source = Union[StationSpec, str, PathLike, Rows]
BOM = b"\xef\xbb\xbf"
FAULTS = ("status", "hang", "stall", "truncate", "reset", "cut", "redirect")
ENDPOINTS = ("catalog", "dataset", "records", "exports")
RESEARCH_CATALOG = "ods_catalog_search_q-meteo_2021-01.json.gz"


class ApiError(Exception):
    """An error the portal reports as JSON ``{"error_code", "message"}`` with an HTTP status."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _odsql_error(message: str) -> ApiError:
    return ApiError(400, "ODSQLError", message)


def _param_error(message: str) -> ApiError:
    return ApiError(400, "InvalidRESTParameterError", message)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).replace(microsecond=0).isoformat()


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


# --------------------------------------------------------------------------- ODSQL subset
_LITERAL = re.compile(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"")
_COMPARISON = re.compile(r"`?heure_de_paris`?\s*(>=|<=|>|<|=)\s*(?:date\s*)?\x00(\d+)\x00", re.I)


def _conjunction(where: str) -> tuple[list[str], list[str]]:
    """Terms of an AND-only expression, with string literals held aside as ``\\x00N\\x00``."""
    literals: list[str] = []

    def hold(match: re.Match) -> str:
        literals.append(match.group()[1:-1])
        return f"\x00{len(literals) - 1}\x00"

    masked = _LITERAL.sub(hold, where.strip())
    if re.search(r"\b(or|not)\b", masked, re.I):
        raise _odsql_error(f"The fake portal supports conjunctions (AND) only: {where}")
    return [term.strip() for term in re.split(r"\band\b", masked, flags=re.I)], literals


def _parse_instant(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise _odsql_error(f"Invalid date literal: {text!r}") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def parse_time_where(where: str) -> list[tuple[str, float]]:
    """``heure_de_paris`` comparisons of an ODSQL ``where`` as (operator, epoch seconds) pairs.

    Literals may be ``date'…'``, ``'…'`` or ``"…"``, ISO dates or instants; naive ones are UTC.
    """
    terms, literals = _conjunction(where)
    conditions = []
    for term in terms:
        while term.startswith("(") and term.endswith(")"):
            term = term[1:-1].strip()
        match = _COMPARISON.fullmatch(term)
        if not match:
            raise _odsql_error(f"Unsupported condition (the fake portal knows heure_de_paris comparisons): {term!r}")
        conditions.append((match.group(1), _parse_instant(literals[int(match.group(2))]).timestamp()))
    return conditions


def _catalog_filter(where: str) -> Callable[["_Dataset"], bool]:
    """The catalogue's ``where``: ``search("…")``, bare ``"…"``, ``dataset_id like/=``, ``startswith``."""
    terms, literals = _conjunction(where)
    checks: list[Callable[[_Dataset], bool]] = []
    for term in terms:
        if m := re.fullmatch(r"(?:search\s*\(\s*(?:\*\s*,\s*)?)?\x00(\d+)\x00\s*\)?", term, re.I):
            needle = literals[int(m.group(1))].lower()
            checks.append(lambda d, s=needle: s in d.dataset_id.lower() or s in d.title.lower())
        elif m := re.fullmatch(r"`?dataset_id`?\s+like\s+\x00(\d+)\x00", term, re.I):
            pattern = literals[int(m.group(1))].replace("%", "*").lower()
            checks.append(lambda d, p=pattern: fnmatch.fnmatchcase(d.dataset_id.lower(), p))
        elif m := re.fullmatch(r"`?dataset_id`?\s*=\s*\x00(\d+)\x00", term, re.I):
            checks.append(lambda d, v=literals[int(m.group(1))]: d.dataset_id == v)
        elif m := re.fullmatch(r"startswith\s*\(\s*`?dataset_id`?\s*,\s*\x00(\d+)\x00\s*\)", term, re.I):
            checks.append(lambda d, v=literals[int(m.group(1))]: d.dataset_id.startswith(v))
        else:
            raise _odsql_error(f"Unsupported catalogue condition in the fake portal: {term!r}")
    return lambda dataset: all(check(dataset) for check in checks)


_AGGREGATE = re.compile(r"(max|min|count)\s*\(\s*(\*|`?heure_de_paris`?)\s*\)(?:\s+as\s+(\w+))?", re.I)


def _split_select(select: str) -> list[str]:
    return [item.strip() for item in select.split(",") if item.strip()]


# --------------------------------------------------------------------------- datasets
def _title(dataset_id: str) -> str:
    """A portal-like title from an id: ``42 Station météo Toulouse Parc … - Archive 2019``."""
    archive = re.search(r"-archive-?(\d{4})$", dataset_id)
    stem = dataset_id[: archive.start()] if archive else dataset_id
    m = re.match(r"(\d+)-station-meteo-(.+)", stem)
    words = m.group(2).replace("-", " ").title() if m else stem.replace("-", " ").capitalize()
    title = f"{m.group(1)} Station météo {words}" if m else words
    return f"{title} - Archive {archive.group(1)}" if archive else title


def _read_export(path: Path) -> bytes:
    data = path.read_bytes()
    return gzip.decompress(data) if path.suffix == ".gz" else data


def _split_lines(body: bytes) -> tuple[list[str], list[bytes]]:
    """Header names and data lines (terminators stripped, bytes kept) of an export file."""
    body = body[len(BOM):] if body.startswith(BOM) else body
    lines = body.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    lines = [line[:-1] if line.endswith(b"\r") else line for line in lines]
    return lines[0].decode().split(";"), lines[1:]


@dataclass(frozen=True)
class _Lines:
    """Already-rendered rows (used when rows are appended to a loaded dataset)."""

    header: list[str]
    lines: list[bytes]


def _field_defs(names: Sequence[str], known: Mapping[str, tuple[str, str]] | None = None) -> list[dict[str, str]]:
    known = {**KNOWN_FIELDS, **(known or {})}
    return [{"name": n, "label": known.get(n, (n, "text"))[0], "type": known.get(n, (n, "text"))[1]} for n in names]


@dataclass
class _Dataset:
    """One dataset: its source, lazily loaded lines and a time index, and its metadata."""

    dataset_id: str
    source: Any
    metas: dict[str, Any] = field(default_factory=dict)
    field_overrides: Mapping[str, tuple[str, str]] | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    _loaded: bool = False

    @property
    def title(self) -> str:
        return self.metas.get("title") or _title(self.dataset_id)

    def load(self) -> "_Dataset":
        with self.lock:
            if not self._loaded:
                self._load()
                self._loaded = True
        return self

    def _load(self) -> None:
        source = self.source
        if isinstance(source, StationSpec):
            truth = generate_frame(source)
            rows = format_rows(truth, source.schema_fields)
            self.header = list(rows.columns)
            self.fields = [{"name": n, "label": lab, "type": t} for n, lab, t in source.fields]
            self._set_lines(render_lines(rows), (truth["ts"].to_numpy() * 60, truth["kind"].to_numpy() != "junk"))
            return
        if isinstance(source, (_Lines, str, PathLike)):
            header, lines = (source.header, source.lines) if isinstance(source, _Lines) else (
                _split_lines(_read_export(Path(source))))
            self.header, self.fields = list(header), _field_defs(header, self.field_overrides)
            self._set_lines(lines)
            return
        frame = source if isinstance(source, pd.DataFrame) else pd.DataFrame(list(source), dtype=object)
        self.header = [str(c) for c in frame.columns]
        self.fields = _field_defs(self.header, self.field_overrides)
        times = frame["heure_de_paris"].fillna("").astype(str).tolist() if "heure_de_paris" in frame else None
        self._set_lines(render_lines(frame, self.header), times)

    def _set_lines(self, lines: Sequence[bytes],
                   times: Sequence[str] | tuple[np.ndarray, np.ndarray] | None = None) -> None:
        """Store lines and index them by ``heure_de_paris`` (sorted array + searchsorted).

        ``times`` are the column's texts, or already known (epoch seconds, valid) arrays; by default
        they are read from the lines.  Empty or unparseable timestamps never match a comparison.
        """
        self.lines = np.empty(len(lines), dtype=object)
        self.lines[:] = lines
        self.time_column = self.header.index("heure_de_paris") if "heure_de_paris" in self.header else None
        seconds = np.zeros(len(lines), dtype=np.int64)
        valid = np.zeros(len(lines), dtype=bool)
        if isinstance(times, tuple):
            seconds, valid = times
        elif self.time_column is not None and len(lines):
            if times is None:
                k = self.time_column
                times = [_cell(line, k) for line in lines]
            parsed = pd.to_datetime(pd.Series(times, dtype=object), utc=True, errors="coerce", format="ISO8601")
            valid = parsed.notna().to_numpy()
            seconds[valid] = parsed[valid].astype("int64").to_numpy() // 10**9
        self.seconds, self.valid = seconds, valid
        valid_rows = np.flatnonzero(valid)
        self.order = valid_rows[np.argsort(seconds[valid_rows], kind="stable")]
        self.sorted_seconds = seconds[self.order]
        self.unparsed = np.flatnonzero(~valid)
        self.metas.setdefault("modified", self._default_modified())
        self.metas.setdefault("data_processed", self.metas["modified"])

    def _default_modified(self) -> str:
        if isinstance(self.source, StationSpec):
            return _iso(min(self.source.end, _now()))
        now = _now().timestamp()
        past = self.sorted_seconds[self.sorted_seconds <= now]
        return _iso(datetime.fromtimestamp(int(past[-1]), UTC)) if past.size else _iso(_now())

    def select_rows(self, where: str | None, order_by: str | None) -> np.ndarray:
        """Row positions matching ``where``, in file order or ordered by ``heure_de_paris``."""
        descending = False
        if order_by:
            m = re.fullmatch(r"`?heure_de_paris`?(?:\s+(asc|desc))?", order_by.strip(), re.I)
            if not m or self.time_column is None:
                raise _odsql_error(f"The fake portal orders by heure_de_paris only: {order_by!r}")
            descending = (m.group(1) or "").lower() == "desc"
        if not where or not where.strip():
            if not order_by:
                return np.arange(self.lines.size)
            ordered = self.order[::-1] if descending else self.order
            return np.concatenate([ordered, self.unparsed])  # nulls last, like the portal
        lo, hi = 0, self.order.size
        for op, value in parse_time_where(where):
            if self.time_column is None:
                raise _odsql_error(f"Unknown field: heure_de_paris (dataset {self.dataset_id})")
            if op in (">", ">=", "="):
                lo = max(lo, int(np.searchsorted(self.sorted_seconds, value, "right" if op == ">" else "left")))
            if op in ("<", "<=", "="):
                hi = min(hi, int(np.searchsorted(self.sorted_seconds, value, "left" if op == "<" else "right")))
        picked = self.order[lo:max(lo, hi)]
        if not order_by:
            return np.sort(picked)
        return picked[::-1] if descending else picked

    def typed(self, positions: Iterable[int], names: Sequence[str]) -> list[dict[str, Any]]:
        """Rows as the JSON endpoints return them: values typed by field type, empty as null."""
        types = {f["name"]: f["type"] for f in self.fields}
        columns = [(self.header.index(n), n, _CONVERT.get(types[n], _text)) for n in names]
        records = []
        for pos in positions:
            cells = self.lines[pos].decode().split(";")
            records.append({n: convert(cells[k]) if k < len(cells) else None for k, n, convert in columns})
        return records

    def catalog_entry(self) -> dict[str, Any]:
        self.load()
        default = {
            "title": self.title,
            "description": f"<p>{self.title} (données de test, stand-in du portail Toulouse Métropole)</p>",
            "theme": ["Environnement"],
            "keyword": ["météo", "ilot de chaleur", "station météo"],
            "license": "Open Database License (ODbL)",
            "license_url": "http://opendatacommons.org/licenses/odbl/",
            "language": "fr",
            "publisher": "Toulouse Métropole",
            "territory": ["Toulouse Métropole"],
            "records_count": int(self.lines.size),
            "modified_updates_on_data_change": True,
            "metadata_processed": self.metas["modified"],
            **self.metas,
        }
        return {
            "visibility": "domain",
            "dataset_id": self.dataset_id,
            "dataset_uid": f"da_{zlib.crc32(self.dataset_id.encode()):08x}",
            "has_records": bool(self.lines.size),
            "data_visible": True,
            "features": ["analyze", "timeserie"] if self.time_column is not None else ["analyze", "geo"],
            "attachments": [],
            "alternative_exports": [],
            "fields": self.fields,
            "metas": {"default": default},
        }


def _cell(line: bytes, k: int) -> str:
    cells = line.split(b";")
    return cells[k].decode() if k < len(cells) else ""


def _text(value: str) -> str | None:
    return value if value != "" else None


def _int(value: str) -> int | None:
    try:
        return int(value)
    except ValueError:
        return None


def _float(value: str) -> float | None:
    try:
        return float(value)
    except ValueError:
        return None


def _geo(value: str) -> dict[str, float] | None:
    try:
        lat, lon = (float(v) for v in value.split(","))
    except ValueError:
        return None
    return {"lon": lon, "lat": lat}


_CONVERT: dict[str, Callable[[str], Any]] = {"int": _int, "double": _float, "geo_point_2d": _geo}


# --------------------------------------------------------------------------- faults and requests
@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    params: dict[str, str]
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class _Fault:
    dataset_id: str | None
    kind: str
    remaining: int
    status: int
    retry_after: int | None
    seconds: float
    endpoint: str | None
    location: str | None = None

    def matches(self, dataset_id: str | None, endpoint: str | None) -> bool:
        return (self.dataset_id is None or self.dataset_id == dataset_id) and self.endpoint in (None, endpoint)


# --------------------------------------------------------------------------- real exports
@dataclass
class ResearchData:
    """What FakePortal needs to serve the real exports: sources, catalogue rows, titles, fields."""

    sources: dict[str, Path]
    stations: list[dict[str, str]]
    metas: dict[str, dict[str, Any]]
    field_overrides: dict[str, dict[str, tuple[str, str]]]


def load_research_data(path: str | PathLike) -> ResearchData:
    """Find the real exports under ``path`` (the research-data folder or its ``stations/``).

    Titles, field labels and types come from the January 2021 catalogue file when present; the
    station catalogue rows (coordinates, LCZ…) are made up, as no real copy is at hand.
    """
    root = Path(path)
    stations_dir = root / "stations" if (root / "stations").is_dir() else root
    files = sorted(stations_dir.glob("*.csv.gz")) + sorted(stations_dir.glob("*.csv"))
    sources = {f.name.removesuffix(".gz").removesuffix(".csv"): f for f in files}
    metas: dict[str, dict[str, Any]] = {}
    overrides: dict[str, dict[str, tuple[str, str]]] = {}
    catalog = next((p / RESEARCH_CATALOG for p in (root, root.parent) if (p / RESEARCH_CATALOG).exists()), None)
    if catalog is not None:
        for entry in json.loads(gzip.decompress(catalog.read_bytes()))["datasets"]:
            if entry["datasetid"] in sources:
                metas[entry["datasetid"]] = {"title": entry["metas"]["title"]}
                overrides[entry["datasetid"]] = {f["name"]: (f["label"], f["type"]) for f in entry["fields"]}
    rng = np.random.default_rng(31)
    stations = []
    for dataset_id in sources:
        lat, lon = 43.60 + rng.uniform(-0.08, 0.08), 1.44 + rng.uniform(-0.1, 0.1)
        stations.append({
            "id_nom": dataset_id, "id_numero": str(int(dataset_id.split("-", 1)[0])),
            "longitude": f"{lon:.7f}", "latitude": f"{lat:.7f}", "altitude": f"{rng.uniform(130, 200):.2f}",
            "ville": dataset_id.split("-")[3].capitalize(), "installation": "2019-06-01", "type_stati": "ISS",
            "lcz": str(rng.choice([2, 3, 5, 6, 8, 9, 14])), "emission": "N",
            "bati": f"{rng.uniform(2000, 90000):.4f}", "veg_haute": f"{rng.uniform(5000, 90000):.4f}",
            "geopoint": f"{lat:.7f}, {lon:.7f}",
        })
    return ResearchData(sources, stations, metas, overrides)


# --------------------------------------------------------------------------- portal
class FakePortal:
    """The portal stand-in: an HTTP server on 127.0.0.1 serving ``datasets`` (and ``archives``).

    A source is a ``StationSpec`` (generated on first use, then cached), a path to a real
    ``.csv``/``.csv.gz`` export (served byte for byte), or rows (a DataFrame or dicts of strings).
    ``stations`` are the rows of the ``stations-meteo-en-place`` dataset; by default they are built
    from the StationSpec sources (``set_stations`` replaces them).  ``metas`` overrides catalogue
    metadata per dataset id; ``field_overrides`` maps dataset id -> {field: (label, type)}.
    """

    def __init__(self, datasets: Mapping[str, Source] | Iterable[StationSpec] = (), *,
                 archives: Mapping[str, Source] | None = None,
                 stations: Sequence[Mapping[str, str]] | None = None,
                 metas: Mapping[str, Mapping[str, Any]] | None = None,
                 field_overrides: Mapping[str, Mapping[str, tuple[str, str]]] | None = None,
                 host: str = "127.0.0.1", port: int = 0):
        sources = dict(datasets) if isinstance(datasets, Mapping) else {s.dataset_id: s for s in datasets}
        sources.update(archives or {})
        if stations is None:
            stations = station_catalogue([s for s in sources.values() if isinstance(s, StationSpec)], quirks=False)
        self._datasets: dict[str, _Dataset] = {}
        for dataset_id, source in sources.items():
            self._datasets[dataset_id] = _Dataset(dataset_id, source, dict((metas or {}).get(dataset_id, {})),
                                                  (field_overrides or {}).get(dataset_id))
        self.set_stations(stations)
        self.requests: list[RecordedRequest] = []
        self._faults: list[_Fault] = []
        self._faults_lock = threading.Lock()
        self._stopping = threading.Event()
        self._host, self._port = host, port
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # ---- construction helpers
    @classmethod
    def from_network(cls, n_stations: int, start, end, seed: int = 0, quirks: bool = True, **kwargs) -> "FakePortal":
        """A generated network (``default_network``) with its quirky station catalogue."""
        specs = default_network(n_stations, start, end, seed=seed, quirks=quirks)
        return cls(specs, stations=station_catalogue(specs, seed=seed, quirks=quirks), **kwargs)

    @classmethod
    def from_research_data(cls, path: str | PathLike, **kwargs) -> "FakePortal":
        """The real exports of ``research-data/stations`` (ids = file names) and a catalogue for them."""
        research = load_research_data(path)
        return cls(research.sources, stations=research.stations,
                   metas={**research.metas, **kwargs.pop("metas", {})},
                   field_overrides=research.field_overrides, **kwargs)

    # ---- lifecycle
    def start(self) -> "FakePortal":
        self._stopping.clear()
        self._server = _Server((self._host, self._port), _handler_for(self))
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-portal", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(timeout=5)
            self._server = self._thread = None

    def __enter__(self) -> "FakePortal":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:40123``; the API is under ``url + API_BASE``."""
        if self._server is None:
            raise RuntimeError("the portal is not started")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def api_url(self) -> str:
        return self.url + API_BASE

    # ---- data and metadata, changeable between calls
    @property
    def dataset_ids(self) -> list[str]:
        return sorted(self._datasets)

    def dataset(self, dataset_id: str) -> _Dataset:
        try:
            return self._datasets[dataset_id].load()
        except KeyError:
            raise ApiError(404, "NotFoundError", f"Unknown dataset: {dataset_id}") from None

    def header(self, dataset_id: str) -> list[str]:
        return list(self.dataset(dataset_id).header)

    def lines(self, dataset_id: str) -> list[bytes]:
        """The stored data lines of a dataset (no header, no terminators), in stored order."""
        return list(self.dataset(dataset_id).lines)

    def set_rows(self, dataset_id: str, source: Source, when: datetime | None = None) -> None:
        """Replace (or add) a dataset's data, and move ``modified``/``data_processed`` like a republish."""
        previous = self._datasets.get(dataset_id)
        metas = dict(previous.metas) if previous else {}
        overrides = previous.field_overrides if previous else None
        self._datasets[dataset_id] = _Dataset(dataset_id, source, metas, overrides)
        self.touch(dataset_id, when)

    def append_rows(self, dataset_id: str, rows: Rows | Sequence[bytes], when: datetime | None = None) -> None:
        """Add rows at the end of a dataset (new messages), then republish like set_rows."""
        current = self.dataset(dataset_id)
        if isinstance(rows, pd.DataFrame) or (rows and not isinstance(rows[0], bytes)):
            rows = render_lines(rows, current.header)
        self.set_rows(dataset_id, _Lines(current.header, [*current.lines, *rows]), when)

    def touch(self, dataset_id: str, when: datetime | None = None) -> str:
        """Set ``modified`` and ``data_processed`` to ``when`` (default now, always moving forward)."""
        dataset = self.dataset(dataset_id)
        moment = (when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)) if when else _now()
        old = dataset.metas.get("modified")
        if when is None and old and moment <= datetime.fromisoformat(old):
            moment = datetime.fromisoformat(old) + timedelta(seconds=1)
        dataset.metas["modified"] = dataset.metas["data_processed"] = _iso(moment)
        return dataset.metas["modified"]

    def set_metas(self, dataset_id: str, **metas: Any) -> None:
        """Override any ``metas.default`` entry (``title``, ``modified``…) of a dataset."""
        self.dataset(dataset_id).metas.update(metas)

    def remove_dataset(self, dataset_id: str) -> None:
        self._datasets.pop(dataset_id, None)

    def set_stations(self, rows: Sequence[Mapping[str, str]]) -> None:
        """Replace the rows of the station catalogue dataset ``stations-meteo-en-place``."""
        names = [n for n, _, _ in CATALOGUE_FIELDS]
        frame = pd.DataFrame([{n: row.get(n, "") for n in names} for row in rows], columns=names, dtype=object)
        previous = self._datasets.get(CATALOGUE_DATASET_ID)
        self._datasets[CATALOGUE_DATASET_ID] = _Dataset(
            CATALOGUE_DATASET_ID, frame, previous.metas if previous else {"title": "Stations météo en place"})

    # ---- requests and faults
    def reset_requests(self) -> None:
        self.requests.clear()

    def inject(self, dataset_id: str | None, fault: str, count: int = 1, *, status: int = 503,
               retry_after: int | None = None, seconds: float = 30.0, endpoint: str | None = None,
               location: str | None = None) -> None:
        """Make the next ``count`` matching requests fail.

        ``fault``: ``status`` (answer ``status`` with a JSON error, and ``Retry-After`` if given),
        ``hang`` (wait ``seconds`` before answering normally), ``stall`` (send the headers and half the
        body, wait ``seconds``, send the rest), ``truncate`` (announce the full
        Content-Length, send half the body, close), ``reset`` (drop the connection with a TCP RST),
        ``cut`` (a well-framed answer whose body is cut mid-line: Content-Length matches the bytes sent)
        or ``redirect`` (302 to the same path and query at ``location``, an origin such as
        ``http://127.0.0.1:8001``; default: this portal itself).
        A request matches when it concerns ``dataset_id`` (None: any request) and, if ``endpoint``
        is given, hits that endpoint (``catalog``, ``dataset``, ``records`` or ``exports``).
        """
        if fault not in FAULTS:
            raise ValueError(f"fault must be one of {FAULTS}")
        if endpoint not in (None, *ENDPOINTS):
            raise ValueError(f"endpoint must be None or one of {ENDPOINTS}")
        with self._faults_lock:
            self._faults.append(_Fault(dataset_id, fault, count, status, retry_after, seconds, endpoint, location))

    def clear_faults(self) -> None:
        with self._faults_lock:
            self._faults.clear()

    def _take_fault(self, dataset_id: str | None, endpoint: str | None) -> _Fault | None:
        with self._faults_lock:
            for fault in self._faults:
                if fault.remaining > 0 and fault.matches(dataset_id, endpoint):
                    fault.remaining -= 1
                    return fault
        return None

    # ---- API
    def handle(self, path: str, params: Mapping[str, str]) -> tuple[str, bytes, str | None]:
        """Answer one GET: (content type, body, Content-Disposition or None).  Raises ApiError."""
        route = _route(path)
        if route is None:
            raise ApiError(404, "NotFoundError", f"Unknown path: {path}")
        endpoint, dataset_id, fmt = route
        if endpoint == "catalog":
            return self._catalog(params)
        dataset = self.dataset(dataset_id)
        if endpoint == "dataset":
            return _json(dataset.catalog_entry())
        if endpoint == "records":
            return _json(self._records(dataset, params))
        return self._export(dataset, fmt, params)

    def _catalog(self, params: Mapping[str, str]):
        limit, offset = _int_param(params, "limit", 10), _int_param(params, "offset", 0)
        if not 0 <= limit <= 100 or offset < 0:
            raise _param_error("limit must be between 0 and 100 and offset positive")
        datasets = [self._datasets[k] for k in sorted(self._datasets)]
        if params.get("where"):
            keep = _catalog_filter(params["where"])
            datasets = [d for d in datasets if keep(d)]
        results = [d.catalog_entry() for d in datasets[offset:offset + limit]]
        if params.get("select"):
            keys = set(_split_select(params["select"])) | {"dataset_id"}
            results = [{k: v for k, v in r.items() if k in keys} for r in results]
        return _json({"total_count": len(datasets), "results": results})

    def _records(self, dataset: _Dataset, params: Mapping[str, str]) -> dict[str, Any]:
        if params.get("group_by"):
            raise _odsql_error("group_by is not supported by the fake portal")
        limit, offset = _int_param(params, "limit", 10), _int_param(params, "offset", 0)
        if not 0 <= limit <= 100:
            raise _param_error(f"Invalid value for limit: {limit} (must be between 0 and 100)")
        if offset < 0 or offset + limit > 10000:
            raise _param_error("offset + limit must not exceed 10000: use the exports endpoint")
        positions = dataset.select_rows(params.get("where"), params.get("order_by"))
        items = _split_select(params.get("select", "*"))
        aggregates = [_AGGREGATE.fullmatch(item) for item in items]
        if any(aggregates):
            if not all(aggregates):
                raise _odsql_error("Mixing aggregates and fields needs group_by, not supported by the fake portal")
            return {"total_count": 1, "results": [{
                (m.group(3) or m.group(0)): _aggregate(dataset, positions, m.group(1).lower()) for m in aggregates}]}
        names = _select_fields(dataset, items)
        return {"total_count": int(positions.size),
                "results": dataset.typed(positions[offset:offset + limit], names)}

    def _export(self, dataset: _Dataset, fmt: str, params: Mapping[str, str]):
        if (params.get("timezone") or "UTC").upper() not in ("UTC", "GMT", "ETC/UTC"):
            raise _param_error("The fake portal serves timezone=UTC only")
        for unsupported in ("refine", "exclude", "group_by"):
            if params.get(unsupported):
                raise _param_error(f"{unsupported} is not supported by the fake portal")
        if _bool(params.get("compressed"), False):
            raise _param_error("compressed=true is not supported by the fake portal")
        limit, offset = _int_param(params, "limit", -1), _int_param(params, "offset", 0)
        if offset and (limit < 0 or offset + limit > 10000):
            raise _param_error("offset + limit must not exceed 10000 in exports: page by time windows")
        positions = dataset.select_rows(params.get("where"), params.get("order_by"))[offset:]
        if limit >= 0:
            positions = positions[:limit]
        names = _select_fields(dataset, _split_select(params.get("select", "*")))
        filename = f'attachment; filename="{dataset.dataset_id}.{fmt}"'
        if fmt == "csv":
            return "text/csv; charset=utf-8", _csv_body(dataset, positions, names, params), filename
        if fmt == "json":
            body = json.dumps(dataset.typed(positions, names), ensure_ascii=False).encode()
            return "application/json; charset=utf-8", body, filename
        if fmt == "jsonl":
            body = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in dataset.typed(positions, names)).encode()
            return "application/jsonl; charset=utf-8", body, filename
        raise _param_error(f"Export format not supported by the fake portal: {fmt}")


def _route(path: str) -> tuple[str, str | None, str | None] | None:
    if not path.startswith(API_BASE + "/catalog/datasets"):
        return None
    parts = [unquote(p) for p in path[len(API_BASE + "/catalog/datasets"):].split("/") if p]
    if not parts:
        return "catalog", None, None
    if len(parts) == 1:
        return "dataset", parts[0], None
    if len(parts) == 2 and parts[1] == "records":
        return "records", parts[0], None
    if len(parts) == 3 and parts[1] == "exports":
        return "exports", parts[0], parts[2]
    return None


def _json(payload: Any) -> tuple[str, bytes, None]:
    return "application/json; charset=utf-8", json.dumps(payload, ensure_ascii=False).encode(), None


def _int_param(params: Mapping[str, str], name: str, default: int) -> int:
    try:
        return int(params.get(name, default))
    except ValueError:
        raise _param_error(f"Invalid value for {name}: {params[name]!r}") from None


def _bool(value: str | None, default: bool) -> bool:
    return default if value is None else value.strip().lower() in ("true", "1", "yes")


def _select_fields(dataset: _Dataset, items: Sequence[str]) -> list[str]:
    if items in ([], ["*"]):
        return list(dataset.header)
    names = [item.strip("`") for item in items]
    unknown = [n for n in names if n not in dataset.header]
    if unknown:
        raise _odsql_error(f"Unknown field(s) in select: {', '.join(unknown)}")
    return names


def _aggregate(dataset: _Dataset, positions: np.ndarray, function: str) -> Any:
    if function == "count":
        return int(positions.size)
    seconds = dataset.seconds[positions][dataset.valid[positions]]
    if not seconds.size:
        return None
    value = seconds.max() if function == "max" else seconds.min()
    return _iso(datetime.fromtimestamp(int(value), UTC))


def _csv_body(dataset: _Dataset, positions: np.ndarray, names: list[str], params: Mapping[str, str]) -> bytes:
    """The CSV export: stored lines verbatim unless select/delimiter ask for re-joined fields."""
    delimiter = params.get("delimiter", ";") or ";"
    labels = {f["name"]: f["label"] for f in dataset.fields}
    header_names = [labels[n] for n in names] if _bool(params.get("use_labels"), False) else names
    lines = dataset.lines[positions]
    if names != dataset.header or delimiter != ";":
        columns = [dataset.header.index(n) for n in names]
        sep = delimiter.encode()
        lines = [sep.join(_quote(cells[k] if k < len(cells) else b"", sep) for k in columns)
                 for cells in (line.split(b";") for line in lines)]
    header = delimiter.join(header_names).encode()
    body = b"\n".join([header, *lines]) + b"\n"
    return (BOM + body) if _bool(params.get("with_bom"), True) else body


def _quote(cell: bytes, sep: bytes) -> bytes:
    if sep in cell or b'"' in cell or b"\n" in cell:
        return b'"' + cell.replace(b'"', b'""') + b'"'
    return cell


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address) -> None:
        """Clients that time out or drop the connection are expected here: stay quiet about them."""
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)


_ERROR_CODES = {429: "TooManyRequests", 500: "InternalServerError", 502: "BadGateway",
                503: "ServiceUnavailable", 504: "GatewayTimeout"}


def _handler_for(portal: FakePortal) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "FakePortal/1.0"
        # TCP_NODELAY, as a production web server sets it: http.server sends the headers and the
        # body in separate writes, and with Nagle's algorithm the body's last segment waits for the
        # client's delayed ACK, ~30 ms a response (a year of 34 datasets took 1.1 s instead of 0.4 s)
        disable_nagle_algorithm = True

        def log_message(self, *args) -> None:  # keep test output quiet
            pass

        def do_GET(self) -> None:
            split = urlsplit(self.path)
            params = {k: v[-1] for k, v in parse_qs(split.query, keep_blank_values=True).items()}
            portal.requests.append(RecordedRequest("GET", split.path, params, dict(self.headers.items())))
            route = _route(split.path)
            endpoint, dataset_id = (route[0], route[1]) if route else (None, None)
            fault = portal._take_fault(dataset_id, endpoint)
            if fault and fault.kind == "reset":
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.close_connection = True
                self.connection.close()
                return
            if fault and fault.kind == "status":
                headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else {}
                code = _ERROR_CODES.get(fault.status, "HTTPError")
                self._send(fault.status, *_json({"error_code": code, "message": f"Injected {fault.status}"})[:2],
                           headers)
                return
            if fault and fault.kind == "redirect":
                self._send(302, "text/plain", b"", {"Location": (fault.location or portal.url) + self.path})
                return
            if fault and fault.kind == "hang":
                portal._stopping.wait(fault.seconds)
            try:
                status = 200
                content_type, body, disposition = portal.handle(split.path, params)
                headers = {"Content-Disposition": disposition} if disposition else {}
            except ApiError as error:
                status, headers = error.status, {}
                content_type, body, _ = _json({"error_code": error.code, "message": error.message})
            if fault and fault.kind == "cut":
                body = body[: len(body) // 2]
                body = body[:-1] if body.endswith(b"\n") else body
            self._send(status, content_type, body, headers, truncate=bool(fault and fault.kind == "truncate"),
                       stall=fault.seconds if fault and fault.kind == "stall" else 0)

        def _send(self, status: int, content_type: str, body: bytes, headers: Mapping[str, str],
                  truncate: bool = False, stall: float = 0) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            if truncate:
                self.wfile.write(body[: len(body) // 2])
                self.close_connection = True
                return
            if stall:
                self.wfile.write(body[: len(body) // 2])
                self.wfile.flush()
                portal._stopping.wait(stall)
                body = body[len(body) // 2:]
            view = memoryview(body)
            for i in range(0, len(view), 1 << 20):
                self.wfile.write(view[i:i + (1 << 20)])

    return Handler
