"""Settings from the environment and the station list from `datasets.toml`, validated at load time.

Everything the pipeline is parameterised by comes through here, so that a bad value fails once,
early, with a message naming the file and line, instead of deep inside a run.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from meteo_assets.transform.contract import ContractSettings

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PORTAL_URL = "https://data.toulouse-metropole.fr"

DATASET_ID = re.compile(r"^[0-9]{2,3}-station-meteo-[a-z0-9]+(?:-[a-z0-9]+)*$")
STATION_KEY = re.compile(r"^st[0-9]{2,3}_[a-z0-9_]+$")
BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
STORAGE_MODES = ("local", "s3")
_TRUE, _FALSE = {"1", "true", "yes", "on"}, {"", "0", "false", "no", "off"}

_STATION_KEYS = {"dataset", "name", "sensor_id", "archives", "start_date", "enabled"}
_DEFAULTS_KEYS = {"start_date"}
_CONTRACT_KEYS = set(ContractSettings.field_names())


class ConfigError(ValueError):
    """`datasets.toml` or an environment setting is invalid; the message names where."""


def dataset_number(dataset_id: str) -> int:
    """`42-station-meteo-…` → 42 (the number prefix; it is not unique across datasets)."""
    return int(dataset_id.split("-", 1)[0])


def station_key(dataset_id: str) -> str:
    """`42-station-meteo-toulouse-parc-compans-cafarelli` → `st42_toulouse_parc_compans_cafarelli`."""
    if not DATASET_ID.match(dataset_id):
        raise ConfigError(f"not a station dataset id: {dataset_id!r} (expected NN-station-meteo-<place>, NN the station number)")
    number, _, place = dataset_id.partition("-station-meteo-")
    return f"st{number}_{place.replace('-', '_')}"


@dataclass(frozen=True)
class Station:
    dataset: str
    key: str
    name: str
    sensor_id: int
    archives: tuple[str, ...]
    start_date: dt.date
    enabled: bool
    contract: ContractSettings

    @property
    def datasets(self) -> tuple[str, ...]:
        """The live dataset then its archives: together they hold the station's whole history."""
        return (self.dataset, *self.archives)

    @property
    def number(self) -> int:
        return dataset_number(self.dataset)


@dataclass(frozen=True)
class Network:
    start_date: dt.date
    defaults: ContractSettings
    stations: tuple[Station, ...]
    source: Path

    @property
    def enabled(self) -> tuple[Station, ...]:
        return tuple(s for s in self.stations if s.enabled)

    def station(self, ref: str | int) -> Station:
        """Find a station by key, dataset id or number (as analysts naturally refer to them)."""
        text = str(ref).strip()
        for s in self.stations:
            if text in (s.key, s.dataset):
                return s
        if text.isdigit():
            matches = [s for s in self.stations if s.number == int(text)]
            if len(matches) == 1:
                return matches[0]
            if matches:
                keys = ", ".join(s.key for s in matches)
                raise KeyError(f"station number {text} is ambiguous: {keys}; use a key")
        raise KeyError(f"unknown station {ref!r}; known: {', '.join(s.key for s in self.stations)}")


@dataclass(frozen=True)
class Settings:
    """Environment settings (all optional).

    `storage` picks where the assets live: `local` (raw files and DuckDB under `data_dir`) or `s3`
    (the raw bucket and the Parquet lake). S3 credentials are not settings: they come from the
    standard AWS chain (environment, `AWS_PROFILE`, instance or task role) and are never kept here.
    """

    portal_url: str = DEFAULT_PORTAL_URL
    datasets_file: Path = PROJECT_ROOT / "datasets.toml"
    data_dir: Path = field(default_factory=lambda: Path("data").resolve())
    max_portal_requests: int = 4
    storage: str = "local"
    raw_bucket: str = "meteo-raw"
    lake_bucket: str = "meteo-lake"
    s3_endpoint_url: str | None = None
    s3_create_buckets: bool = False

    @classmethod
    def from_env(cls, env: os._Environ[str] | dict[str, str] = os.environ) -> Settings:
        concurrency = env.get("METEO_PORTAL_CONCURRENCY", "4")
        if not concurrency.isdigit() or int(concurrency) < 1:
            raise ConfigError(f"METEO_PORTAL_CONCURRENCY must be a positive integer, got {concurrency!r}")
        portal_url = env.get("METEO_PORTAL_URL", DEFAULT_PORTAL_URL).strip().rstrip("/")
        portal = urlsplit(portal_url)
        if "@" in portal.netloc:  # never echo it: it would put the password in logs
            raise ConfigError("METEO_PORTAL_URL must not carry credentials (user:password@host): "
                              "set METEO_PORTAL_API_KEY for an API key")
        if portal.scheme not in ("http", "https") or not portal.hostname:
            raise ConfigError(f"METEO_PORTAL_URL must be an http(s):// URL, got {portal_url!r}")
        storage = env.get("METEO_STORAGE", "local").strip().lower() or "local"
        if storage not in STORAGE_MODES:
            raise ConfigError(f"METEO_STORAGE must be one of {', '.join(STORAGE_MODES)}, got {storage!r}")
        buckets = {name: env.get(name, default).strip() for name, default in
                   (("METEO_RAW_BUCKET", "meteo-raw"), ("METEO_LAKE_BUCKET", "meteo-lake"))}
        for name, bucket in buckets.items():
            if not BUCKET_NAME.match(bucket):
                raise ConfigError(f"{name} must be an S3 bucket name (3-63 of a-z 0-9 . -), got {bucket!r}")
        endpoint = env.get("METEO_S3_ENDPOINT_URL", "").strip().rstrip("/") or None
        if endpoint is not None and not re.match(r"^https?://[^/]+", endpoint):
            raise ConfigError(f"METEO_S3_ENDPOINT_URL must be an http(s):// URL, got {endpoint!r}")
        create = env.get("METEO_S3_CREATE_BUCKETS", "").strip().lower()
        if create not in _TRUE | _FALSE:
            raise ConfigError(f"METEO_S3_CREATE_BUCKETS must be 1 or 0, got {create!r}")
        return cls(
            portal_url=portal_url,
            datasets_file=Path(env.get("METEO_DATASETS_FILE") or PROJECT_ROOT / "datasets.toml").resolve(),
            data_dir=Path(env.get("METEO_DATA_DIR") or "data").resolve(),
            max_portal_requests=int(concurrency),
            storage=storage,
            raw_bucket=buckets["METEO_RAW_BUCKET"],
            lake_bucket=buckets["METEO_LAKE_BUCKET"],
            s3_endpoint_url=endpoint,
            s3_create_buckets=create in _TRUE,
        )

    def describe_storage(self) -> str:
        """Where the tables and raw files of this configuration live, for messages to people."""
        if self.storage == "s3":
            return f"raw objects: s3://{self.raw_bucket}/  ·  lake: s3://{self.lake_bucket}/"
        return f"DuckDB: {self.duckdb_path}  ·  raw files: {self.raw_dir}"

    @property
    def duckdb_path(self) -> Path:
        return self.data_dir / "meteo.duckdb"

    @property
    def raw_dir(self) -> Path:
        return self.data_dir / "raw"


def load_network(path: Path | str) -> Network:
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    where = _Locator(path, text)

    unknown_top = set(doc) - {"defaults", "stations"}
    if unknown_top:
        key = sorted(unknown_top)[0]
        raise ConfigError(f"{where.key(key)}: unknown top-level key {key!r} (expected [defaults] and [[stations]])")

    raw_defaults = doc.get("defaults", {})
    _reject_unknown(raw_defaults, _DEFAULTS_KEYS | _CONTRACT_KEYS, where, "[defaults]")
    start = _date(raw_defaults.get("start_date", "2019-06-01"), where, "start_date")
    defaults = _contract(ContractSettings(), raw_defaults, where)

    stations: list[Station] = []
    seen: dict[str, int] = {}
    for index, entry in enumerate(doc.get("stations", [])):
        block = where.block(index)
        _reject_unknown(entry, _STATION_KEYS | _CONTRACT_KEYS, block, f"station #{index + 1}")
        dataset = entry.get("dataset")
        if not isinstance(dataset, str) or not DATASET_ID.match(dataset):
            raise ConfigError(
                f"{block.key('dataset')}: dataset must be a portal station dataset id like "
                f"'42-station-meteo-toulouse-parc-compans-cafarelli', got {dataset!r}"
            )
        if dataset in seen:
            raise ConfigError(f"{block.key('dataset')}: duplicate dataset {dataset!r} (first at station #{seen[dataset]})")
        seen[dataset] = index + 1
        archives = entry.get("archives", [])
        if not isinstance(archives, list) or not all(isinstance(a, str) and DATASET_ID.match(a) for a in archives):
            raise ConfigError(f"{block.key('archives')}: archives must be a list of portal dataset ids, got {archives!r}")
        sensor_id = entry.get("sensor_id", dataset_number(dataset))
        if not isinstance(sensor_id, int) or isinstance(sensor_id, bool) or sensor_id < 0:
            raise ConfigError(f"{block.key('sensor_id')}: sensor_id must be a non-negative integer, got {sensor_id!r}")
        enabled = entry.get("enabled", True)
        if not isinstance(enabled, bool):
            raise ConfigError(f"{block.key('enabled')}: enabled must be true or false, got {enabled!r}")
        name = entry.get("name", dataset)
        if not isinstance(name, str):
            raise ConfigError(f"{block.key('name')}: name must be a string, got {name!r}")
        stations.append(
            Station(
                dataset=dataset,
                key=station_key(dataset),
                name=name,
                sensor_id=sensor_id,
                archives=tuple(archives),
                start_date=max(start, _date(entry.get("start_date", start), block, "start_date")),
                enabled=enabled,
                contract=_contract(defaults, entry, block),
            )
        )
    keys = [s.key for s in stations]
    if len(set(keys)) != len(keys):
        dup = next(k for k in keys if keys.count(k) > 1)
        raise ConfigError(f"{path}: two datasets map to the same station key {dup!r}")
    return Network(start_date=start, defaults=defaults, stations=tuple(stations), source=path)


def _contract(base: ContractSettings, table: dict, where: _Locator) -> ContractSettings:
    """Apply the data-contract thresholds present in a TOML table over `base`, one key at a time
    so that an error names its line."""
    for name in sorted(_CONTRACT_KEYS & set(table)):
        try:
            base = ContractSettings.from_mapping({name: table[name]}, base=base)
        except ValueError as exc:
            raise ConfigError(f"{where.key(name)}: {exc}") from exc
    return base


def _date(value: object, where: _Locator, name: str) -> dt.date:
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return value
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value)
        except ValueError:
            pass
    raise ConfigError(f"{where.key(name)}: {name} must be a date YYYY-MM-DD, got {value!r}")


def _reject_unknown(table: dict, allowed: set[str], where: _Locator, what: str) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise ConfigError(
            f"{where.key(unknown[0])}: unknown key {unknown[0]!r} in {what}; allowed: {', '.join(sorted(allowed))}"
        )


class _Locator:
    """Finds the line of a key in the TOML text, so errors can say `datasets.toml:12`."""

    def __init__(self, path: Path, text: str, first: int = 0, last: int | None = None):
        self.path, self.lines = path, text.splitlines()
        self.first, self.last = first, len(self.lines) if last is None else last

    def block(self, index: int) -> _Locator:
        headers = [i for i, line in enumerate(self.lines) if line.strip().startswith("[[stations]]")]
        if index >= len(headers):  # inline-table form: fall back to the whole file
            return self
        end = headers[index + 1] if index + 1 < len(headers) else len(self.lines)
        return _Locator(self.path, "\n".join(self.lines), headers[index], end)

    def key(self, name: str) -> str:
        pattern = re.compile(rf"^\s*{re.escape(name)}\s*=")
        for i in range(self.first, self.last):
            if pattern.match(self.lines[i]):
                return f"{self.path}:{i + 1}"
        return f"{self.path}:{self.first + 1}"
