"""What changed on the portal since the last look, and which Paris days that touches (no Dagster).

Per station and look: one metadata request on the live dataset (`data_processed`, else `modified`:
they move only when the data changes). When it moved (or the portal gives neither), one
`max(heure_de_paris)` query finds the newest observation, so the new data is placed on its days:
from the slot after the previously newest observation to the new one. That covers today's slots,
yesterday's last ones arriving after midnight, and a backlog uploaded after an outage. Corrupted
rows dated in the future are left out of the maximum (`<= now`).
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass

from meteo_assets.portal.client import PortalClient, PortalError, odsql_instant
from meteo_assets.transform.contract import PARIS, SLOT


@dataclass(frozen=True)
class PortalState:
    """A station's live dataset as last seen: its version, and its newest observation (None: no rows)."""

    version: str
    newest: dt.datetime | None

    def to_json(self) -> dict:
        return {"version": self.version, "newest": self.newest.isoformat() if self.newest else None}

    @classmethod
    def from_json(cls, value: dict) -> PortalState:
        newest = value.get("newest")
        return cls(str(value["version"]), dt.datetime.fromisoformat(newest) if newest else None)


def metadata_version(dataset_metadata: dict) -> str | None:
    """`data_processed=…` or `modified=…` from a dataset's metas (None when the portal gives neither)."""
    metas = dataset_metadata.get("metas", {}).get("default", {})
    for name in ("data_processed", "modified"):
        if metas.get(name):
            return f"{name}={metas[name]}"
    return None


def newest_observation(client: PortalClient, dataset: str, now: dt.datetime) -> dt.datetime | None:
    """`max(heure_de_paris)` over the rows not dated after `now`, or None when there is none."""
    params = {"select": "max(heure_de_paris) as newest", "where": f"heure_de_paris <= {odsql_instant(now)}"}
    body = client.records(dataset, params, what="newest observation")
    results = body.get("results") or [{}]
    value = results[0].get("newest")
    if value is None:
        return None
    try:
        moment = dt.datetime.fromisoformat(str(value))
    except ValueError:
        url = client.dataset_url(dataset, "/records", params)
        raise PortalError(f"dataset {dataset} newest observation: not a timestamp: {value!r}. URL: {url}", url=url) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.timezone.utc)


def read_state(client: PortalClient, dataset: str, previous: PortalState | None, now: dt.datetime) -> PortalState:
    """The dataset's state now: one metadata request, plus the newest-observation query if it moved."""
    version = metadata_version(client.dataset(dataset))
    if previous is not None and version is not None and version == previous.version:
        return previous
    newest = newest_observation(client, dataset, now)
    return PortalState(version or f"newest={newest.isoformat() if newest else 'none'}", newest)


def paris_day(moment: dt.datetime) -> dt.date:
    return moment.astimezone(PARIS).date()


def days_to_refresh(
    previous: PortalState | None, current: PortalState, first_day: dt.date, today: dt.date
) -> list[dt.date]:
    """Paris days whose data may have changed between two looks, within [first_day, today].

    First look: the newest observation's day and the day before (so a fresh install completes
    yesterday too). A new version with the same newest observation (rows corrected or republished):
    that observation's day.
    """
    if current == previous or current.newest is None:
        return []
    last = paris_day(current.newest)
    if previous is None or previous.newest is None:
        start = last - dt.timedelta(days=1)
    elif current.newest > previous.newest:
        start = min(paris_day(previous.newest + SLOT), last)
    else:
        start = last
    start, last = max(start, first_day), min(last, today)
    return [start + dt.timedelta(days=n) for n in range((last - start).days + 1)]


def dump_states(states: dict[str, PortalState]) -> str:
    return json.dumps({key: state.to_json() for key, state in sorted(states.items())}, separators=(",", ":"))


def load_states(cursor: str | None) -> dict[str, PortalState]:
    return {key: PortalState.from_json(value) for key, value in json.loads(cursor).items()} if cursor else {}
