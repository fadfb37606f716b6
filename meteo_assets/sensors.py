"""Sensors, all running by default: the platform keeps itself current without a click.

- `portal_new_data` looks at every enabled station's live dataset on the portal (one metadata
  request per station per tick, see `portal/updates.py`) and requests runs of raw → clean → daily
  for exactly the stations and Paris days that got new data; stations with the same days share a
  run. Its cursor (each station's last seen version and newest observation) lives in the Dagster
  instance, so a restart neither repeats nor misses anything. It also records what it saw as an
  observation of `raw/<station>` (the portal's newest observation, shown in the UI).
- `network_daily_when_stations_in` (a multi-asset sensor over every `daily/<station>`) requests
  `network/daily` for a day once every enabled station's daily partition for it has materialised,
  or the station is out of service (no portal observation for `out_of_service_hours`) or not yet
  started that day; a station whose daily table does not exist yet is always waited for.
- `station_freshness` evaluates the freshness checks when they may have changed.

The tick interval of `portal_new_data` is `METEO_POLL_SECONDS` (default 900, the portal's
15-minute publication rhythm); the network and freshness sensors tick at most every 60 s and 300 s.
`METEO_AUTOMATION=off` starts them (and the schedule) stopped.
"""

import datetime as dt
import hashlib
import os
import warnings
from collections import defaultdict
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, wait

from dagster import (
    AssetCheckKey,
    AssetChecksDefinition,
    AssetKey,
    AssetObservation,
    DagsterInstance,
    DefaultSensorStatus,
    EventLogRecord,
    MetadataValue,
    MultiAssetSensorEvaluationContext,
    RunRequest,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    SupersessionWarning,
    build_sensor_for_freshness_checks,
    multi_asset_sensor,
    sensor,
)

from meteo_assets.assets.network import STATIONS
from meteo_assets.checks import NEWEST_OBSERVATION, STATION_LAYERS, portal_newest_observation, quality_check_keys
from meteo_assets.config import ConfigError, Network, Station
from meteo_assets.portal import PortalClient, PortalError
from meteo_assets.portal.updates import PortalState, days_to_refresh, dump_states, load_states, paris_day, read_state
from meteo_assets.resources import PortalResource
from meteo_assets.transform.quality import describe_days

POLL_SECONDS_ENV = "METEO_POLL_SECONDS"
AUTOMATION_ENV = "METEO_AUTOMATION"
DEFAULT_POLL_SECONDS = 15 * 60
TICK_BUDGET_SECONDS = 40  # portal look-ups per tick; the daemon allows a sensor 60 s
EVENTS_PER_ASSET_PER_TICK = 500  # daily materialisations read per station and network-sensor tick
NEW_DATA_SENSOR = "portal_new_data"
NETWORK_SENSOR = "network_daily_when_stations_in"
FRESHNESS_SENSOR = "station_freshness"
TRIGGER_TAG = "meteo/trigger"


def automation_on(env: Mapping[str, str] = os.environ) -> bool:
    """`METEO_AUTOMATION=off` starts the sensors and the schedule stopped (they can be switched on in
    the UI): for a session that only backfills, or a test that wants no run it did not ask for."""
    value = env.get(AUTOMATION_ENV, "on").strip().lower()
    if value not in ("on", "off"):
        raise ConfigError(f"{AUTOMATION_ENV} must be on or off, got {value!r}")
    return value == "on"


def sensor_status(env: Mapping[str, str] = os.environ) -> DefaultSensorStatus:
    return DefaultSensorStatus.RUNNING if automation_on(env) else DefaultSensorStatus.STOPPED


def poll_seconds(env: Mapping[str, str] = os.environ) -> int:
    value = env.get(POLL_SECONDS_ENV, str(DEFAULT_POLL_SECONDS)).strip()
    if not value.isdigit() or int(value) < 1:
        raise ConfigError(f"{POLL_SECONDS_ENV} must be a positive number of seconds, got {value!r}")
    return int(value)


def run_request(
    days: Sequence[dt.date], assets: Sequence[AssetKey], checks: Sequence[AssetCheckKey], run_key: str, trigger: str
) -> RunRequest:
    """One run over consecutive days (a partition, or a single-run range) of `assets`, with exactly
    `checks` (left to itself, Dagster would add the freshness checks: those have their own sensor)."""
    tags = {TRIGGER_TAG: trigger}
    selection = {"asset_selection": list(assets), "asset_check_keys": list(checks)}
    if len(days) == 1:
        return RunRequest(run_key=run_key, partition_key=days[0].isoformat(), tags=tags, **selection)
    return RunRequest(
        run_key=run_key,
        **selection,
        tags={
            **tags,
            "dagster/asset_partition_range_start": days[0].isoformat(),
            "dagster/asset_partition_range_end": days[-1].isoformat(),
        },
    )


def consecutive_spans(days: Sequence[dt.date]) -> list[list[dt.date]]:
    spans: list[list[dt.date]] = []
    for day in sorted(set(days)):
        if spans and day - spans[-1][-1] == dt.timedelta(days=1):
            spans[-1].append(day)
        else:
            spans.append([day])
    return spans


def layer_keys(station: Station) -> list[AssetKey]:
    return [AssetKey([layer, station.key]) for layer in STATION_LAYERS]


# --------------------------------------------------------------------------- new portal data
def look_at_portal(
    portal: PortalResource, stations: Sequence[Station], previous: Mapping[str, PortalState], now: dt.datetime,
    budget: float = TICK_BUDGET_SECONDS,
) -> tuple[dict[str, PortalState], list[str]]:
    """Each station's state now, with the problems met; stations not answered in time keep their old state."""
    # few retries: a station missed now is looked at again next tick
    client = PortalClient(portal.base_url, retries=1, backoff_factor=0.5, connect_timeout=5.0, read_timeout=20.0,
                          max_concurrent=portal.max_concurrent)
    pool = ThreadPoolExecutor(max_workers=max(1, portal.max_concurrent), thread_name_prefix="portal-look")
    futures = {pool.submit(read_state, client, s.dataset, previous.get(s.key), now): s for s in stations}
    done, pending = wait(futures, timeout=budget)
    pool.shutdown(wait=False, cancel_futures=True)
    states, problems = {}, []
    for future in done:
        station = futures[future]
        try:
            states[station.key] = future.result()
        except (PortalError, ValueError) as exc:
            problems.append(f"station {station.key}: {exc}")
    if pending:
        late = ", ".join(sorted(futures[f].key for f in pending))
        problems.append(f"not looked at within {budget:g} s (next tick): {late}")
    return states, problems


def build_new_data_sensor(network: Network, job_name: str, interval: int) -> SensorDefinition:
    stations = network.enabled

    @sensor(
        name=NEW_DATA_SENSOR,
        job_name=job_name,
        minimum_interval_seconds=interval,
        default_status=sensor_status(),
        description=(
            f"Every {interval} s: one metadata request per enabled station on the portal; runs raw → clean → daily "
            "for exactly the stations and days that got new data (late data for past days included)."
        ),
    )
    def portal_new_data(context: SensorEvaluationContext, portal: PortalResource) -> SensorResult:
        now = dt.datetime.now(dt.timezone.utc)
        previous = load_states(context.cursor)
        states, problems = look_at_portal(portal, stations, previous, now)
        for problem in problems:
            context.log.warning(problem)
        groups: dict[tuple[dt.date, dt.date], list[Station]] = defaultdict(list)
        observations = []
        for station in stations:
            state, before = states.get(station.key), previous.get(station.key)
            if state is None or state == before:
                continue
            days = days_to_refresh(before, state, station.start_date, paris_day(now))
            if days:
                groups[(days[0], days[-1])].append(station)
            observations.append(
                AssetObservation(
                    asset_key=AssetKey(["raw", station.key]),
                    description=f"portal dataset {station.dataset}: {state.version}",
                    metadata={
                        "portal_version": state.version,
                        **({NEWEST_OBSERVATION: MetadataValue.timestamp(state.newest)} if state.newest else {}),
                        "days_requested": describe_days(d.isoformat() for d in days) if days else "none",
                    },
                )
            )
        requests = []
        for (first, last), members in sorted(groups.items()):
            days = [first + dt.timedelta(days=n) for n in range((last - first).days + 1)]
            versions = "|".join(f"{s.key}={states[s.key].version}" for s in members)
            run_key = f"{first}..{last}:{hashlib.sha256(versions.encode()).hexdigest()[:16]}"
            assets = [k for s in members for k in layer_keys(s)]
            checks = [k for s in members for k in quality_check_keys(s)]
            requests.append(run_request(days, assets, checks, run_key, NEW_DATA_SENSOR))
        cursor = dump_states({**previous, **states})
        if requests:
            return SensorResult(run_requests=requests, cursor=cursor, asset_events=observations)
        reason = "no new data on the portal" + (f" ({len(problems)} problem(s), see the tick's logs)" if problems else "")
        return SensorResult(skip_reason=reason, cursor=cursor, asset_events=observations)

    return portal_new_data


# --------------------------------------------------------------------------- network assets
class StationsIn:
    """Which stations a day's network assets wait for, from the instance (looked up once per tick)."""

    def __init__(self, instance: DagsterInstance, daily_of: Mapping[AssetKey, Station], now: dt.datetime):
        self.instance, self.daily_of, self.now = instance, daily_of, now
        self._materialized: dict[AssetKey, set[str]] = {}
        self._out_of_service: dict[str, bool] = {}

    def materialized(self, key: AssetKey) -> set[str]:
        if key not in self._materialized:
            self._materialized[key] = set(self.instance.get_materialized_partitions(key))
        return self._materialized[key]

    def out_of_service(self, station: Station) -> bool:
        if station.key not in self._out_of_service:
            newest = portal_newest_observation(self.instance, station.key)
            limit = dt.timedelta(hours=station.contract.out_of_service_hours)
            self._out_of_service[station.key] = newest is not None and self.now - newest > limit
        return self._out_of_service[station.key]

    def awaited(self, day: str) -> list[str]:
        """Stations whose daily partition `day` is still expected."""
        date = dt.date.fromisoformat(day)
        waiting = []
        for key, station in self.daily_of.items():
            done = self.materialized(key)
            if day in done or (done and (date < station.start_date or self.out_of_service(station))):
                continue
            waiting.append(station.key)
        return waiting


def unconsumed_by_day(
    context: MultiAssetSensorEvaluationContext, keys: Sequence[AssetKey]
) -> dict[str, dict[AssetKey, EventLogRecord]]:
    """Partition → asset → its latest materialisation not yet consumed by the sensor.

    At most `EVENTS_PER_ASSET_PER_TICK` new events per asset and tick: after a backfill of years, the
    backlog is worked through over a few ticks, each well within the daemon's time limit.
    """
    pending: dict[str, dict[AssetKey, EventLogRecord]] = defaultdict(dict)
    for key in keys:
        fresh = context.materialization_records_for_key(key, EVENTS_PER_ASSET_PER_TICK)
        for record in [*context.get_trailing_unconsumed_events(key), *fresh]:
            if record.partition_key:
                pending[record.partition_key][key] = record  # oldest first: the latest wins
    return pending


def build_network_sensor(network: Network, job_name: str, requested: Sequence[AssetKey], interval: int) -> SensorDefinition:
    daily_of = {AssetKey(["daily", s.key]): s for s in network.enabled}

    @multi_asset_sensor(
        name=NETWORK_SENSOR,
        monitored_assets=list(daily_of),
        job_name=job_name,
        minimum_interval_seconds=interval,
        default_status=sensor_status(),
        description=(
            f"Materialises {', '.join(k.to_user_string() for k in requested)} for a day once every enabled "
            "station's daily partition for it is in (or the station is out of service)."
        ),
    )
    def network_daily_when_stations_in(context: MultiAssetSensorEvaluationContext):
        pending = unconsumed_by_day(context, list(daily_of))
        if not pending:
            return SkipReason("no daily partition materialised since the last tick")
        stations_in = StationsIn(context.instance, daily_of, dt.datetime.now(dt.timezone.utc))
        ready, waiting = [], {}
        for day in sorted(pending):
            awaited = stations_in.awaited(day)
            if awaited:
                waiting[day] = awaited
            else:
                ready.append(dt.date.fromisoformat(day))
                context.advance_cursor(pending[day])
        for day, awaited in list(waiting.items())[-5:]:
            context.log.info(f"{day}: waiting for the daily partition of {len(awaited)} station(s): {', '.join(awaited)}")
        if not ready:
            day, awaited = next(iter(waiting.items()))
            return SkipReason(
                f"{len(waiting)} day(s) waiting for stations, e.g. {day}: {', '.join(awaited[:5])}"
                + ("…" if len(awaited) > 5 else "")
            )
        assets = list(requested) + ([] if context.instance.get_latest_materialization_event(STATIONS) else [STATIONS])
        newest_event = max(r.storage_id for day in ready for r in pending[day.isoformat()].values())
        return [
            run_request(span, assets, [], f"network:{span[0]}..{span[-1]}:{newest_event}", NETWORK_SENSOR)
            for span in consecutive_spans(ready)
        ]

    return network_daily_when_stations_in


# --------------------------------------------------------------------------- freshness
def build_freshness_sensor(checks: AssetChecksDefinition, interval: int) -> SensorDefinition:
    return build_sensor_for_freshness_checks(
        freshness_checks=[checks],
        minimum_interval_seconds=interval,
        name=FRESHNESS_SENSOR,
        default_status=sensor_status(),
    )


def build_sensors(
    network: Network, freshness_checks: AssetChecksDefinition, *, pipeline_job: str, network_job: str,
    network_assets: Sequence[AssetKey], interval: int | None = None,
) -> list[SensorDefinition]:
    """The three sensors of the code location, ticking every `interval` s at most (default `METEO_POLL_SECONDS`)."""
    interval = interval or poll_seconds()
    with warnings.catch_warnings():
        # multi-asset sensors and freshness-check sensors are "superseded" by declarative automation and
        # freshness policies, which cannot yet wait for a whole network nor judge partitions: chosen knowingly
        warnings.simplefilter("ignore", SupersessionWarning)
        return [
            build_new_data_sensor(network, pipeline_job, interval),
            build_network_sensor(network, network_job, network_assets, min(interval, 60)),
            build_freshness_sensor(freshness_checks, min(interval, 300)),
        ]
