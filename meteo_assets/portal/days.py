"""Cut one export response into Paris days, and glue stored days back into one CSV per schema.

A ranged run downloads a whole window at once; the raw layer stores it per day. Lines are never
re-encoded: each stored day is the response's header plus that day's lines, byte for byte.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from zoneinfo import ZoneInfo

import numpy as np

PARIS = ZoneInfo("Europe/Paris")
TIMESTAMP_FIELD = b"heure_de_paris"
_LF, _CR, _SEMICOLON = ord("\n"), ord("\r"), ord(";")
_USUAL_STAMP = len("2023-01-01T00:15:00+00:00")


def split_by_day(content: bytes, days: Sequence[dt.date]) -> dict[dt.date, bytes]:
    """Every day of `days` gets the header plus its lines (header only when it has none).

    A line whose timestamp is empty, unparseable or outside `days` is kept with the first day, so
    that nothing the portal sent is lost; the clean step rejects or drops it and counts it.
    Lines end as `bytes.splitlines` ends them (LF, CRLF or a lone CR); each day keeps its lines in
    the response's order. Vectorised with numpy: a station-year is ~35,000 lines.
    """
    ends = _line_ends(content)
    if not ends.size:
        return {day: b"" for day in days}
    header = content[: ends[0]]
    starts, stops = ends[:-1], ends[1:]
    fields = header.rstrip(b"\r\n").split(b";")
    order = list(dict.fromkeys(days))
    index_of = {day: i for i, day in enumerate(order)}
    line_day = np.zeros(stops.size, dtype=np.intp)  # index in `order`; 0, the first day, by default
    if TIMESTAMP_FIELD in fields and stops.size:
        stamp_at = _field_bounds(content, starts, stops, fields.index(TIMESTAMP_FIELD))
        line_day = _day_indexes(content, *stamp_at, index_of)
    # runs of consecutive lines of one day: a sorted export (the client asks `order_by`) has one per day
    change = np.flatnonzero(np.diff(line_day)) + 1
    run_first, run_last = np.append(0, change), np.append(change - 1, stops.size - 1)
    pieces: dict[int, list[bytes]] = {}
    if stops.size:
        for day, first, last in zip(line_day[run_first].tolist(), starts[run_first].tolist(), stops[run_last].tolist()):
            pieces.setdefault(day, []).append(content[first:last])
    return {day: header + b"".join(pieces.get(i, ())) for i, day in enumerate(order)}


def _line_ends(content: bytes) -> np.ndarray:
    """The offset after each line's end (LF, CRLF, lone CR, or the end of an unterminated last line)."""
    raw = np.frombuffer(content, dtype=np.uint8)
    cr = np.flatnonzero(raw == _CR)
    lone_cr = cr[(cr + 1 == raw.size) | (raw[np.minimum(cr + 1, raw.size - 1)] != _LF)] if cr.size else cr
    ends = np.union1d(np.flatnonzero(raw == _LF), lone_cr) + 1
    if raw.size and (not ends.size or ends[-1] != raw.size):
        ends = np.append(ends, raw.size)
    return ends


def _field_bounds(content: bytes, starts: np.ndarray, stops: np.ndarray, column: int) -> tuple[np.ndarray, np.ndarray]:
    """Where the `column`-th `;` field of each line is (as `line.split(b";")[column]`, the last field
    running to the end of the line); start = stop = -1 for a line with fewer fields."""
    separators = np.flatnonzero(np.frombuffer(content, dtype=np.uint8) == _SEMICOLON)
    first = np.searchsorted(separators, starts)  # the line's first separator, if it is before its end

    def separator(rank: int) -> tuple[np.ndarray, np.ndarray]:
        at = first + rank
        position = separators[np.minimum(at, separators.size - 1)] if separators.size else np.zeros_like(at)
        return position, (at < separators.size) & (position < stops)

    if column == 0:
        begin, present = starts, np.ones(stops.size, dtype=bool)
    else:
        opening, present = separator(column - 1)
        begin = opening + 1
    closing, closed = separator(column)
    end = np.where(closed, closing, stops)
    return np.where(present, begin, -1), np.where(present, end, -1)


def _day_indexes(content: bytes, begin: np.ndarray, end: np.ndarray, index_of: dict[dt.date, int]) -> np.ndarray:
    """Each line's day as its index in `index_of` (0, the first day, when the timestamp is unusable
    or its day is not in the run).

    The usual stamp, `2023-01-01T00:15:00+00:00` (valid minutes and seconds, a whole-hour offset),
    is parsed once per hour and offset: Paris days start on whole UTC hours, so such instants of
    one hour share their day. Any other form is parsed on its own.
    """
    indexes = np.zeros(begin.size, dtype=np.intp)
    usual = np.flatnonzero(end - begin == _USUAL_STAMP)  # nothing around it either
    chars = np.frombuffer(content, dtype=np.uint8)[begin[usual, None] + np.arange(_USUAL_STAMP)]
    digits = (chars >= ord("0")) & (chars <= ord("9"))
    whole_hour = (
        digits[:, 0] & np.isin(chars[:, 19], (ord("+"), ord("-")))
        & (chars[:, 22] == ord(":")) & (chars[:, 23] == ord("0")) & (chars[:, 24] == ord("0"))
        & (chars[:, 13] == ord(":")) & (chars[:, 16] == ord(":"))
        & digits[:, 14] & digits[:, 15] & (chars[:, 14] <= ord("5"))  # minutes 00-59
        & digits[:, 17] & digits[:, 18] & (chars[:, 17] <= ord("5"))  # seconds 00-59
    )
    lines = usual[whole_hour]
    if lines.size:
        hours = np.ascontiguousarray(np.hstack([chars[whole_hour, :13], chars[whole_hour, 19:]])).view("S19").ravel()
        _, first, inverse = np.unique(hours, return_index=True, return_inverse=True)
        hour_index = np.array(
            [index_of.get(_paris_day(content[begin[line] : end[line]]), 0) for line in lines[first].tolist()],
            dtype=np.intp,
        )
        indexes[lines] = hour_index[inverse.ravel()]
    others = np.ones(begin.size, dtype=bool)
    others[lines] = False
    for line in np.flatnonzero(others & (begin >= 0)).tolist():
        indexes[line] = index_of.get(_paris_day(content[begin[line] : end[line]].strip()), 0)
    return indexes


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
