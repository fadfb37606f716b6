"""Quality checks on what each layer produced, as plain verdicts over the days of a run (no Dagster).

A ranged run yields one verdict per check for the whole range; each verdict says which days failed
and why, so a year-long backfill points at the few days worth a look. Thresholds come from the
station's `ContractSettings` (`datasets.toml`).

- raw (blocking): every stored export has the fields the parser needs, and its bytes are text the
  parser can read. A row with a wrong field count is not a failure: `clean` rejects and counts it.
- clean: share of each day's rows rejected by the contract, temperature steps between consecutive
  observations, flat lines, gusts below the mean wind.
- daily: coverage of days that are over, min ≤ mean ≤ max, a daily mean far outside the station's
  own recent range.
- freshness: today's partition recently updated, yesterday's materialised after it ended.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .contract import PARIS, SLOT, ContractSettings, day_window_utc
from .parse import PARSER_FIELDS, UnknownSchemaError, _header_fields

RawDays = Mapping[str, Mapping[str, bytes]]  # ISO day → source dataset → CSV bytes (the raw asset's value)

# consecutive observations further apart than this are not compared (steps) nor joined (flat lines)
MAX_OBSERVATION_GAP = pd.Timedelta(hours=1)
_FAILED_DAYS_SHOWN = 12


@dataclass(frozen=True)
class Verdict:
    """One check over the days of a run: passed or not, one line for people, and the evidence."""

    passed: bool
    summary: str
    failed_days: dict[str, str] = field(default_factory=dict)  # ISO day → what failed that day
    figures: dict[str, float | int | str] = field(default_factory=dict)


def describe_days(days: Iterable[str]) -> str:
    """`2020-10-01…2020-10-03, 2020-10-07`: consecutive ISO days folded into ranges."""
    dates = sorted({dt.date.fromisoformat(d) for d in days})
    spans: list[list[dt.date]] = []
    for day in dates:
        if spans and day - spans[-1][1] == dt.timedelta(days=1):
            spans[-1][1] = day
        else:
            spans.append([day, day])
    return ", ".join(str(a) if a == b else f"{a}…{b}" for a, b in spans)


def _failures(kind: str, failed: dict[str, str], checked: int, figures: dict | None = None) -> Verdict:
    figures = {"days_checked": checked, "days_failed": len(failed), **(figures or {})}
    if not failed:
        return Verdict(True, f"no {kind} in {checked} day(s)", {}, figures)
    shown = sorted(failed)[:_FAILED_DAYS_SHOWN]
    more = f" (+{len(failed) - len(shown)} more days)" if len(failed) > len(shown) else ""
    details = "; ".join(f"{day}: {failed[day]}" for day in shown)
    return Verdict(False, f"{kind} on {len(failed)} of {checked} day(s): {details}{more}", failed, figures)


# --------------------------------------------------------------------------- raw
def raw_schema(days: RawDays) -> Verdict:
    """Every stored export has the fields the parser maps by name (a renamed field fails here)."""
    problems: dict[tuple[str, str], list[str]] = defaultdict(list)
    files = 0
    for day, sources in days.items():
        for dataset, content in sources.items():
            files += 1
            if not content.strip():
                continue  # an empty window: nothing to parse, nothing missing
            header = _header_fields(content) if _decodes(content.split(b"\n", 1)[0]) else []
            missing = [name for name in PARSER_FIELDS if name not in header]
            if missing:
                problems[(dataset, str(UnknownSchemaError(missing, header)))].append(day)
    failed: dict[str, str] = {}
    for (dataset, message), problem_days in problems.items():
        for day in problem_days:
            failed[day] = "; ".join(filter(None, [failed.get(day), f"dataset {dataset}: {message}"]))
    if not problems:
        return Verdict(True, f"{files} export file(s) have every field the parser needs", {}, {"files_checked": files})
    summary = "; ".join(
        f"dataset {dataset} on {describe_days(problem_days)}: {message}"
        for (dataset, message), problem_days in problems.items()
    )
    return Verdict(False, summary, failed, {"files_checked": files, "days_failed": len(failed)})


def raw_bytes(days: RawDays) -> Verdict:
    """Every stored export is UTF-8 text whose data rows (some at least) have the header's field count."""
    failed: dict[str, str] = {}
    malformed_total = rows_total = files = 0
    for day, sources in days.items():
        for dataset, content in sources.items():
            files += 1
            if not _decodes(content):
                failed[day] = f"dataset {dataset}: not UTF-8 text ({_decode_error(content)})"
                continue
            rows, malformed = _row_shape(content)
            rows_total += rows
            malformed_total += malformed
            if rows and malformed == rows:
                failed[day] = f"dataset {dataset}: none of its {rows} rows has the header's field count"
    figures = {"files_checked": files, "rows": rows_total, "malformed_rows": malformed_total}
    if not failed:
        note = f" ({malformed_total} malformed row(s), rejected and counted by clean)" if malformed_total else ""
        return Verdict(True, f"{files} export file(s) parse{note}", {}, figures)
    return _failures("unparseable exports", failed, len(days), figures)


def raw_rows_by_day(days: RawDays) -> dict[str, int]:
    """Data rows the portal sent per day, all source datasets together (headers excluded)."""
    return {day: sum(_row_shape(content)[0] for content in sources.values()) for day, sources in days.items()}


def _decodes(content: bytes) -> bool:
    try:
        content.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _decode_error(content: bytes) -> str:
    try:
        content.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"byte 0x{content[exc.start]:02x} at offset {exc.start}"
    return "decodes"


def _row_shape(content: bytes) -> tuple[int, int]:
    """(data rows, rows whose `;` count differs from the header's): byte counts when all rows agree."""
    header, _, body = content.partition(b"\n")
    separators = header.count(b";")
    rows = body.count(b"\n") + (1 if body and not body.endswith(b"\n") else 0)
    if body.count(b";") == separators * rows:
        return rows, 0
    lines = [line for line in body.splitlines() if line.strip()]
    return len(lines), sum(1 for line in lines if line.count(b";") != separators)


# --------------------------------------------------------------------------- clean
def _day_of(local_time: pd.Series) -> pd.Series:
    """The Paris day of each row, as a midnight timestamp (formatting every row would be slow)."""
    return local_time.dt.floor("D")


def rejected_share(rows_in_by_day: Mapping[str, int], clean: pd.DataFrame, max_share: float) -> Verdict:
    """Per day: 1 − rows kept in the clean table / rows the portal sent."""
    by_day = _day_of(clean["local_time"]).value_counts()
    kept = pd.Series(by_day.to_numpy(), index=by_day.index.strftime("%Y-%m-%d"))
    failed: dict[str, str] = {}
    sent = kept_total = 0
    for day, rows_in in rows_in_by_day.items():
        if rows_in <= 0:
            continue
        rows_kept = int(kept.get(day, 0))
        share = max(rows_in - rows_kept, 0) / rows_in
        sent, kept_total = sent + rows_in, kept_total + min(rows_kept, rows_in)
        if share > max_share:
            failed[day] = f"{share:.0%} of {rows_in} rows rejected"
    overall = (sent - kept_total) / sent if sent else 0.0
    figures = {"rows_in": sent, "rows_rejected": sent - kept_total, "rejected_share": round(overall, 4),
               "max_rejected_share": max_share}
    return _failures(f"rejected share above {max_share:.0%}", failed, len(rows_in_by_day), figures)


def _observed(clean: pd.DataFrame, column: str) -> pd.DataFrame:
    return clean.loc[clean[column].notna(), ["observed_at", "local_time", column]].sort_values("observed_at")


def temperature_steps(clean: pd.DataFrame, max_step_c: float) -> Verdict:
    """Jumps of more than `max_step_c` between consecutive observations at most an hour apart."""
    obs = _observed(clean, "temperature_c")
    step = obs["temperature_c"].diff().abs()
    jumps = obs[(step > max_step_c) & (obs["observed_at"].diff() <= MAX_OBSERVATION_GAP)].assign(step=step)
    failed = {
        f"{day:%Y-%m-%d}": f"{len(group)} step(s), largest {group['step'].max():.1f} °C at {group.loc[group['step'].idxmax(), 'local_time']:%H:%M}"
        for day, group in jumps.groupby(_day_of(jumps["local_time"]))
    }
    checked = int(_day_of(obs["local_time"]).nunique())
    figures = {"largest_step_c": round(float(step[obs["observed_at"].diff() <= MAX_OBSERVATION_GAP].max()), 2)
               if len(obs) > 1 else 0.0, "max_temperature_step_c": max_step_c}
    return _failures(f"temperature steps above {max_step_c:g} °C", failed, checked, figures)


def _flat_runs(clean: pd.DataFrame, column: str, hours: float) -> pd.DataFrame:
    """Runs of one unchanged value lasting at least `hours` (a gap over an hour ends a run)."""
    obs = _observed(clean, column)
    starts = ((obs[column].diff() != 0) | (obs["observed_at"].diff() > MAX_OBSERVATION_GAP)).to_numpy()
    first = np.flatnonzero(starts)  # row of each run's first observation
    if not len(first):
        return pd.DataFrame({"start": [], "value": [], "hours": []})
    last = np.append(first[1:], len(obs)).astype(int) - 1
    observed = obs["observed_at"].to_numpy(dtype="datetime64[ns]")
    runs = pd.DataFrame({
        "start": obs["local_time"].to_numpy()[first],
        "value": obs[column].to_numpy()[first],
        "hours": (observed[last] - observed[first] + np.timedelta64(SLOT)) / np.timedelta64(1, "h"),
    })
    return runs[runs["hours"] >= hours]


def flat_lines(clean: pd.DataFrame, temperature_hours: float, humidity_hours: float) -> Verdict:
    """The same temperature for `temperature_hours` or more, or the same humidity for `humidity_hours`."""
    failed: dict[str, list[str]] = defaultdict(list)
    longest = {}
    for column, hours, unit in (("temperature_c", temperature_hours, "°C"), ("humidity_pct", humidity_hours, "%")):
        runs = _flat_runs(clean, column, hours)
        longest[f"longest_flat_{column.split('_')[0]}_hours"] = round(float(runs["hours"].max()), 2) if len(runs) else 0.0
        for run in runs.itertuples():
            failed[f"{run.start:%Y-%m-%d}"].append(
                f"{column.split('_')[0]} {run.value:g} {unit} for {run.hours:.1f} h from {run.start:%H:%M}"
            )
    checked = int(_day_of(clean["local_time"]).nunique())
    figures = {"flat_temperature_hours": temperature_hours, "flat_humidity_hours": humidity_hours, **longest}
    return _failures("flat lines", {day: ", ".join(runs) for day, runs in failed.items()}, checked, figures)


def gust_below_mean(clean: pd.DataFrame) -> Verdict:
    """Slots whose maximum gust is below their mean wind speed (impossible for a sound sensor)."""
    both = clean[clean["gust_speed_kmh"].notna() & clean["wind_speed_kmh"].notna()]
    bad = both[both["gust_speed_kmh"] < both["wind_speed_kmh"]]
    failed = {
        f"{day:%Y-%m-%d}": f"{len(group)} slot(s), first at {group['local_time'].min():%H:%M}"
        for day, group in bad.groupby(_day_of(bad["local_time"]))
    }
    checked = int(_day_of(both["local_time"]).nunique())
    return _failures("gusts below the mean wind", failed, checked, {"slots_checked": len(both), "slots_failed": len(bad)})


# --------------------------------------------------------------------------- daily
def _iso(dates: pd.Series) -> pd.Series:
    return pd.to_datetime(dates).dt.strftime("%Y-%m-%d")


def coverage(daily: pd.DataFrame, min_coverage: float, now: dt.datetime) -> Verdict:
    """Days that are over with temperature coverage below `min_coverage` (today is judged tomorrow)."""
    over = daily[[day_window_utc(d.date())[1] <= now for d in pd.to_datetime(daily["date"])]]
    low = over[over["coverage_temperature"] < min_coverage]
    failed = {
        day: f"temperature in {round(share * expected)} of {expected} slots ({share:.0%})"
        for day, share, expected in zip(_iso(low["date"]), low["coverage_temperature"], low["slots_expected"])
    }
    figures = {"min_coverage": min_coverage, "days_in_progress": len(daily) - len(over),
               "coverage_temperature_mean": round(float(over["coverage_temperature"].mean()), 4) if len(over) else 0.0}
    return _failures(f"coverage below {min_coverage:.0%}", failed, len(over), figures)


def min_mean_max(daily: pd.DataFrame) -> Verdict:
    """temperature_min_c ≤ temperature_mean_c ≤ temperature_max_c wherever the three exist."""
    rows = daily.dropna(subset=["temperature_min_c", "temperature_mean_c", "temperature_max_c"])
    bad = rows[(rows["temperature_min_c"] > rows["temperature_mean_c"] + 1e-9)
               | (rows["temperature_mean_c"] > rows["temperature_max_c"] + 1e-9)]
    failed = {
        day: f"min {low:g} °C, mean {mean:g} °C, max {high:g} °C"
        for day, low, mean, high in zip(_iso(bad["date"]), bad["temperature_min_c"], bad["temperature_mean_c"],
                                        bad["temperature_max_c"])
    }
    return _failures("min/mean/max out of order", failed, len(rows))


def temperature_spike(daily: pd.DataFrame, history: pd.DataFrame, spike_c: float, window_days: int) -> Verdict:
    """A daily mean more than `spike_c` outside the range of the station's previous `window_days` means.

    `history` holds daily rows from before the run (whatever is at hand); days of the run count
    as history for the days after them. A day given twice counts with its last row. Computed in
    numpy on a calendar of the days at hand: pandas' rolling window took ~7 ms a call, this
    ~0.4 ms (a daily run of the network makes 50).
    """
    days = np.concatenate([_day_numbers(history["date"]), _day_numbers(daily["date"])])
    means = np.concatenate([history["temperature_mean_c"].to_numpy(dtype=float),
                            daily["temperature_mean_c"].to_numpy(dtype=float)])
    first = days.min() if len(days) else 0
    calendar = np.full(days.max() - first + 1 if len(days) else 0, np.nan)
    last = len(days) - 1 - np.unique(days[::-1], return_index=True)[1]  # each day's last row
    calendar[days[last] - first] = means[last]
    # row i: the `window_days` calendar days before day i (NaN before the first day at hand)
    before = np.lib.stride_tricks.sliding_window_view(np.concatenate([np.full(window_days, np.nan), calendar]),
                                                      window_days)[: len(calendar)]
    seen = ~np.isnan(before)
    count = seen.sum(axis=1)
    low, high = np.where(seen, before, np.inf).min(axis=1), np.where(seen, before, -np.inf).max(axis=1)

    at = days[len(history):] - first  # the run's days, in their rows' order
    judged = at[~np.isnan(calendar[at]) & (count[at] > 0)]
    value = calendar[judged]
    spikes = judged[(value > high[judged] + spike_c) | (value < low[judged] - spike_c)]
    failed = {
        str(np.datetime64(int(first + i), "D")):
            f"mean {calendar[i]:g} °C vs {low[i]:g}…{high[i]:g} °C over the previous {int(count[i])} day(s)"
        for i in spikes
    }
    figures = {"spike_temperature_c": spike_c, "spike_window_days": window_days}
    return _failures(f"daily-mean spikes above {spike_c:g} °C", failed, len(judged), figures)


def _day_numbers(dates: pd.Series) -> np.ndarray:
    """Days since 1970-01-01 of a date column (dates, timestamps or ISO texts)."""
    return pd.to_datetime(dates).to_numpy(dtype="datetime64[D]").astype(np.int64)



# --------------------------------------------------------------------------- freshness
@dataclass(frozen=True)
class Freshness:
    """Freshness of one station asset at `now`, from when its partitions were last materialised."""

    passed: bool
    summary: str
    today_updated: dt.datetime | None
    final_day: dt.date | None  # the partition that had to be final by the last deadline
    final_updated: dt.datetime | None
    fresh_until: dt.datetime | None  # passing: the earliest moment it could fail without a new run
    overdue_since: dt.datetime | None  # failing: the deadline that was missed


def _paris(day: dt.date, hour: int = 0) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(hour), tzinfo=PARIS)


def freshness(
    now: dt.datetime,
    *,
    first_day: dt.date,
    settings: ContractSettings,
    last_update: Callable[[dt.date], dt.datetime | None],
) -> Freshness:
    """Today's partition updated within `fresh_within_hours` (during the day's first such hours,
    yesterday's update counts); the partition due at the last `final_by_hour` deadline (yesterday
    after the deadline, the day before until then) materialised after that day ended."""
    window = dt.timedelta(hours=settings.fresh_within_hours)
    today = now.astimezone(PARIS).date()
    problems: list[str] = []
    until: list[dt.datetime] = []
    overdue: list[dt.datetime] = []

    today_updated = last_update(today) if today >= first_day else None
    if today >= first_day:
        grace_end = _paris(today) + window
        recent = today_updated
        if now < grace_end and today_updated is None:
            recent = last_update(today - dt.timedelta(days=1))
        if recent is not None and recent >= now - window:
            # today's own update keeps it fresh `window` longer; yesterday's only until the grace ends
            until.append(recent + window if today_updated is not None else min(recent + window, grace_end))
        else:
            since = "never" if recent is None else f"last at {recent.astimezone(PARIS):%Y-%m-%d %H:%M}"
            problems.append(f"stale: today's partition {today} not updated within {settings.fresh_within_hours:g} h ({since})")
            overdue.append(recent + window if recent is not None else min(now, grace_end))

    deadline = _paris(today, settings.final_by_hour)
    if now < deadline:
        deadline = _paris(today - dt.timedelta(days=1), settings.final_by_hour)
    final_day = deadline.date() - dt.timedelta(days=1)
    final_updated = None
    if final_day >= first_day:
        final_updated = last_update(final_day)
        day_end = _paris(final_day + dt.timedelta(days=1))
        if final_updated is None or final_updated < day_end:
            since = (
                "never materialised" if final_updated is None
                else f"last materialised {final_updated.astimezone(PARIS):%Y-%m-%d %H:%M}, before the day ended"
            )
            problems.append(f"partition {final_day} not final by {deadline:%Y-%m-%d %H:%M} ({since})")
            overdue.append(deadline)
    until.append(_paris(deadline.date() + dt.timedelta(days=1), settings.final_by_hour))

    if problems:
        return Freshness(False, "; ".join(problems), today_updated, final_day, final_updated, None, min(overdue))
    summary = (
        f"fresh: today's partition updated {today_updated.astimezone(PARIS):%H:%M}" if today_updated
        else f"fresh: the day {today} has just begun" if today >= first_day else f"the station starts on {first_day}"
    )
    if final_updated is not None:
        summary += f"; {final_day} final since {final_updated.astimezone(PARIS):%Y-%m-%d %H:%M}"
    return Freshness(True, summary, today_updated, final_day, final_updated, min(until), None)
