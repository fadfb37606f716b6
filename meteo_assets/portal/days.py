"""Cut one export response into Paris days, and glue stored days back into one CSV per schema.

A ranged run downloads a whole window at once; the raw layer stores it per day. Lines are never
re-encoded: each stored day is the response's header plus that day's lines, byte for byte.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from zoneinfo import ZoneInfo

PARIS = ZoneInfo("Europe/Paris")
TIMESTAMP_FIELD = b"heure_de_paris"


def split_by_day(content: bytes, days: Sequence[dt.date]) -> dict[dt.date, bytes]:
    """Every day of `days` gets the header plus its lines (header only when it has none).

    A line whose timestamp is empty, unparseable or outside `days` is kept with the first day, so
    that nothing the portal sent is lost; the clean step rejects or drops it and counts it.
    """
    lines = content.splitlines(keepends=True)
    header = lines[0] if lines else b""
    body: dict[dt.date, list[bytes]] = {day: [] for day in days}
    if not lines:
        return {day: b"" for day in days}
    fields = header.rstrip(b"\r\n").split(b";")
    column = fields.index(TIMESTAMP_FIELD) if TIMESTAMP_FIELD in fields else None
    first = days[0]
    local_day_of: dict[bytes, dt.date | None] = {}  # one parse per distinct hour and offset
    for line in lines[1:]:
        day = None
        if column is not None:
            parts = line.split(b";", column + 1)
            if len(parts) > column:
                stamp = parts[column].strip()
                key = _hour_key(stamp)
                if key not in local_day_of:
                    local_day_of[key] = _paris_day(stamp)
                day = local_day_of[key]
        body[day if day in body else first].append(line)
    return {day: header + b"".join(day_lines) for day, day_lines in body.items()}


def _hour_key(stamp: bytes) -> bytes:
    """`2023-01-01T00:15:00+00:00` → `2023-01-01T00+00:00`: Paris days start on whole UTC hours, so
    the instants of one hour at a whole-hour offset share their Paris day. Anything else is its own key."""
    if len(stamp) == 25 and stamp[19:20] in (b"+", b"-") and stamp[22:] == b":00":
        return stamp[:13] + stamp[19:]
    return stamp


def _paris_day(stamp: bytes) -> dt.date | None:
    try:
        instant = dt.datetime.fromisoformat(stamp.decode("ascii").strip())
    except (UnicodeDecodeError, ValueError):
        return None
    if instant.tzinfo is None:
        return None
    return instant.astimezone(PARIS).date()


def join_days(parts: Iterable[bytes]) -> list[bytes]:
    """Concatenate stored days into one CSV per distinct header (schemas may change over time)."""
    by_header: dict[bytes, list[bytes]] = {}
    for content in parts:
        newline = content.find(b"\n")
        if newline < 0:
            continue  # empty, or a header without any line: nothing to parse
        header, lines = content[: newline + 1], content[newline + 1 :]
        by_header.setdefault(header.rstrip(b"\r\n"), [header]).append(lines)
    return [b"".join(chunks) for chunks in by_header.values()]
