"""Keep `datasets.toml` in step with the portal catalogue without losing hand edits.

    python -m meteo_assets.catalog sync            # show what would change
    python -m meteo_assets.catalog sync --write    # apply it

Stations and their archive datasets come and go on the portal, and archive names are
inconsistent, so they are discovered from the catalogue rather than typed in. Hand-written
content (the [defaults] table, comments, names, overrides) is kept: the sync only appends new
stations, adds newly found archives and disables (never deletes) stations gone from the catalogue.
"""

from __future__ import annotations

import argparse
import datetime as dt
import difflib
import os
import re
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import tomlkit
from tomlkit.exceptions import TOMLKitError

from meteo_assets.config import DATASET_ID, ConfigError, Settings, dataset_number, load_network
from meteo_assets.portal import CATALOGUE_DATASET, DatasetNotFound, PortalClient, PortalError
from meteo_assets.portal.catalogue import match_records

STATION_DATASET = re.compile(r"^[0-9]{2,3}-station-meteo-")
ARCHIVE_MARK = re.compile(r"-?archive")
TITLE_PREFIX = re.compile(r"^[0-9]{2,3}\s+station\s+m[ée]t[ée]o\s+", re.IGNORECASE)
GONE_COMMENT = "# not in the portal catalogue on "


class SyncError(ValueError):
    """The catalogue cannot be trusted to rebuild the file (e.g. it lists no station at all)."""


@dataclass(frozen=True)
class NewStation:
    dataset: str
    name: str | None
    archives: tuple[str, ...]


@dataclass(frozen=True)
class SyncPlan:
    """What a sync changes in `datasets.toml`, and what it found but cannot decide alone."""

    today: dt.date
    live: tuple[str, ...]
    added: tuple[NewStation, ...]
    new_archives: dict[str, tuple[str, ...]]
    disabled: tuple[str, ...]
    unattached: dict[str, str]
    reappeared: tuple[str, ...]
    invalid: tuple[str, ...]
    without_station_record: tuple[str, ...] | None
    records_without_dataset: tuple[str, ...] | None

    @property
    def changes(self) -> bool:
        return bool(self.added or self.new_archives or self.disabled)


def plan_sync(
    document_text: str,
    catalogue_results: list[dict],
    station_records: list[dict] | None,
    today: dt.date,
) -> SyncPlan:
    """Compare the file with the catalogue; `station_records` None skips the station-catalogue check."""
    stations = _stations(tomlkit.parse(document_text))
    titles: dict[str, str | None] = {}
    archives: list[str] = []
    invalid: list[str] = []
    for entry in catalogue_results:
        dataset_id = entry.get("dataset_id", "")
        if not STATION_DATASET.match(dataset_id):
            continue
        if not DATASET_ID.match(dataset_id):
            invalid.append(dataset_id)
        elif "archive" in dataset_id:
            archives.append(dataset_id)
        else:
            titles[dataset_id] = _name(entry)
    if not titles:
        raise SyncError("the catalogue lists no station dataset; refusing to disable every station")

    by_dataset = {str(s["dataset"]): s for s in stations if "dataset" in s}
    known_archives = {a for s in stations for a in s.get("archives", [])}
    attached: dict[str, list[str]] = {}
    unattached: dict[str, str] = {}
    owners = sorted(set(titles) | set(by_dataset))  # a station gone from the catalogue may keep archives
    for archive in (a for a in archives if a not in known_archives):
        owner, reason = _owner(archive, owners)
        if owner is None:
            unattached[archive] = reason
        else:
            attached.setdefault(owner, []).append(archive)

    gone = [d for d in by_dataset if d not in titles]
    without_record, without_dataset = _station_catalogue_check(sorted(titles), station_records)
    return SyncPlan(
        today=today,
        live=tuple(sorted(titles)),
        added=tuple(
            NewStation(d, titles[d], _chronological(attached.get(d, []))) for d in sorted(set(titles) - set(by_dataset))
        ),
        new_archives={d: _chronological(a) for d, a in sorted(attached.items()) if d in by_dataset},
        disabled=tuple(d for d in gone if by_dataset[d].get("enabled", True) is not False),
        unattached=unattached,
        reappeared=tuple(d for d in sorted(titles) if d in by_dataset and _auto_disabled(by_dataset[d])),
        invalid=tuple(invalid),
        without_station_record=without_record,
        records_without_dataset=without_dataset,
    )


def apply_sync(document_text: str, plan: SyncPlan) -> str:
    """The file text with the plan applied; everything the plan does not touch is kept verbatim."""
    doc = tomlkit.parse(document_text)
    if "stations" not in doc:
        doc.append("stations", tomlkit.aot())
    stations = doc["stations"]
    for station in stations:
        dataset = station.get("dataset")
        if dataset in plan.new_archives:
            if "archives" in station:
                station["archives"].extend(plan.new_archives[dataset])
            else:
                station["archives"] = list(plan.new_archives[dataset])
        if dataset in plan.disabled:
            enabled = tomlkit.item(False)
            enabled.comment(f"{GONE_COMMENT}{plan.today.isoformat()}")
            enabled.trivia.comment_ws = "   "
            station["enabled"] = enabled
    for new in plan.added:
        if len(stations) and not stations[-1].as_string().endswith("\n\n"):
            stations[-1].add(tomlkit.nl())  # a blank line between [[stations]] blocks, as written by hand
        table = tomlkit.table()
        table["dataset"] = new.dataset
        if new.name:
            table["name"] = new.name
        if new.archives:
            table["archives"] = list(new.archives)
        stations.append(table)
    return tomlkit.dumps(doc)


def summary(plan: SyncPlan, before: str, after: str, path: Path) -> str:
    """The changes by kind, then the unified diff of the file."""
    lines = [f"{len(plan.live)} station datasets in the portal catalogue"]

    def section(title: str, items: Sequence[str]) -> None:
        if items:
            lines.extend(["", f"{title} ({len(items)}):", *(f"  {item}" for item in items)])

    section("Stations to add", [f"+ {s.dataset}  {s.name or ''}{_archives_note(s)}" for s in plan.added])
    section("Archives to add", [f"+ {a} → {d}" for d, archives in plan.new_archives.items() for a in archives])
    section("Stations gone from the catalogue, to disable", [f"- {d}" for d in plan.disabled])
    section("Archives matching no station, to attach by hand", [f"? {a}: {why}" for a, why in plan.unattached.items()])
    section("Back in the catalogue, disabled by an earlier sync (enable by hand)", [f"! {d}" for d in plan.reappeared])
    section("Ignored catalogue ids (not valid station dataset ids)", [f"! {d}" for d in plan.invalid])
    if plan.without_station_record is None:
        lines.extend(["", f"Station catalogue `{CATALOGUE_DATASET}` not found on the portal: not cross-checked."])
    else:
        section(f"Data datasets missing from `{CATALOGUE_DATASET}` (informational)", plan.without_station_record)
        section(f"`{CATALOGUE_DATASET}` rows without a data dataset (informational)", plan.records_without_dataset)
    diff = difflib.unified_diff(
        before.splitlines(keepends=True), after.splitlines(keepends=True), f"{path} (now)", f"{path} (synced)"
    )
    lines.extend(["", "".join(diff).rstrip("\n") if plan.changes else f"No change to {path}."])
    return "\n".join(lines)


def write_validated(path: Path, text: str) -> None:
    """Replace `path` atomically, then load it as the pipeline would; restore the old file if it fails."""
    previous = path.read_text(encoding="utf-8")
    _replace(path, text)
    try:
        load_network(path)
    except ConfigError:
        _replace(path, previous)
        raise


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m meteo_assets.catalog", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    sync = commands.add_parser(
        "sync",
        help="rebuild datasets.toml from the portal catalogue (dry run unless --write)",
        description=(
            "Compare datasets.toml with the portal catalogue (METEO_PORTAL_URL) and show the changes: new "
            "stations, new archive datasets, stations gone from the catalogue (disabled, never deleted). "
            "Hand-written content is kept."
        ),
    )
    sync.add_argument("--write", action="store_true", help="write the file (atomically, then validated)")
    sync.add_argument(
        "--datasets-file",
        type=Path,
        metavar="PATH",
        help="file to sync (default: METEO_DATASETS_FILE, else the project's datasets.toml)",
    )
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        print(f"catalog sync failed: {exc}", file=sys.stderr)
        return 1
    try:
        return _sync(settings, (args.datasets_file or settings.datasets_file).resolve(), write=args.write)
    except (PortalError, ConfigError, SyncError, TOMLKitError, OSError) as exc:
        print(f"catalog sync against {settings.portal_url} failed: {exc}", file=sys.stderr)
        return 1


def _sync(settings: Settings, path: Path, *, write: bool) -> int:
    before = path.read_text(encoding="utf-8")
    client = PortalClient(settings.portal_url, max_concurrent=settings.max_portal_requests)
    catalogue = client.catalog()
    try:
        records = client.export_json(CATALOGUE_DATASET)
    except DatasetNotFound:
        records = None
    plan = plan_sync(before, catalogue, records, dt.date.today())
    after = apply_sync(before, plan)
    print(summary(plan, before, after, path))
    if not plan.changes:
        return 0
    if not write:
        print("\nDry run: nothing written. Rerun with --write to apply.")
        return 0
    write_validated(path, after)
    print(f"\nWrote {path}.")
    return 0


def _stations(doc: tomlkit.TOMLDocument) -> list:
    return [s for s in doc.get("stations", []) if isinstance(s, dict)]


def _archives_note(station: NewStation) -> str:
    return f"  archives: {', '.join(station.archives)}" if station.archives else ""


def _name(entry: dict) -> str | None:
    title = ((entry.get("metas") or {}).get("default") or {}).get("title")
    return TITLE_PREFIX.sub("", title).strip() if title else None


def _owner(archive: str, live: list[str]) -> tuple[str | None, str]:
    """The live dataset an archive belongs to: same number and a name prefix either way, else the number alone."""
    base = ARCHIVE_MARK.split(archive, maxsplit=1)[0]
    same_number = [d for d in live if dataset_number(d) == dataset_number(archive)]
    by_prefix = [d for d in same_number if d.startswith(base) or base.startswith(d)]
    if len(by_prefix) == 1:
        return by_prefix[0], ""
    if len(same_number) == 1:
        return same_number[0], ""
    if not same_number:
        return None, f"no station dataset numbered {dataset_number(archive):02d}"
    return None, f"ambiguous between {', '.join(by_prefix or same_number)}"


def _chronological(archives: list[str]) -> tuple[str, ...]:
    """Order by the year after `archive`, whatever the hyphenation (`-archive-2019` before `archive2020`)."""
    return tuple(sorted(archives, key=lambda a: (ARCHIVE_MARK.split(a, maxsplit=1)[-1].lstrip("-"), a)))


def _auto_disabled(station: dict) -> bool:
    """Disabled by an earlier sync (its comment says so), not by hand."""
    return station.get("enabled") is False and station.item("enabled").trivia.comment.startswith(GONE_COMMENT)


def _station_catalogue_check(
    live: list[str], records: list[dict] | None
) -> tuple[tuple[str, ...] | None, tuple[str, ...] | None]:
    """Data datasets without a station-catalogue row, and rows without a data dataset (matched as the
    `stations` asset does, `match_records`)."""
    if records is None:
        return None, None
    matches = match_records(live, records)
    missing = [dataset for dataset in live if dataset not in matches]
    matched = set(matches.values())
    orphans = [f"{r.get('id_numero')} {r.get('id_nom')}" for i, r in enumerate(records) if i not in matched]
    return tuple(missing), tuple(orphans)


def _replace(path: Path, text: str) -> None:
    """Write through a temporary file in the same directory, so readers never see half a file."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
        os.chmod(tmp, path.stat().st_mode & 0o777)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


if __name__ == "__main__":
    sys.exit(main())
