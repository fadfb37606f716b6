"""The daemon end to end: nothing switched on by hand, a sensor tick launches a run that materialises
the portal's new data, and the network sensor follows with `network/daily`.

`dagster-daemon run` (the daemon half of `dagster dev`) runs against a temporary DAGSTER_HOME with
the project's instance settings and the stand-in portal; the test reads the same instance.
"""

import datetime as dt
import os
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import duckdb
from dagster import AssetCheckKey, AssetKey, DagsterInstance, DagsterRunStatus, RunsFilter
from dagster._core.instance.ref import InstanceRef

from meteo_assets.config import PROJECT_ROOT
from meteo_assets.sensors import NETWORK_SENSOR, NEW_DATA_SENSOR, TRIGGER_TAG
from meteo_assets_tests.fake_portal import FakePortal, StationSpec, generate_rows
from meteo_assets_tests.processes import stop_process_group
from meteo_assets_tests.stand_in import stand_in

SPECS = [
    StationSpec("84-station-meteo-cornebarrieu-mairie", 84, "2020-10-01", "2020-10-06T09:00", seed=84),
    StationSpec("85-station-meteo-mondonville-ecole", 85, "2020-10-01", "2020-10-06T09:00", seed=85),
]
KEYS = ["st84_cornebarrieu_mairie", "st85_mondonville_ecole"]
DEADLINE_SECONDS = 240


def runs_by(instance: DagsterInstance, trigger: str) -> list:
    return instance.get_runs(filters=RunsFilter(tags={TRIGGER_TAG: trigger}))


def wait_for_success(instance: DagsterInstance, trigger: str, daemon: subprocess.Popen, deadline: float, log: Path,
                     skip: set[str] = frozenset()):
    while time.monotonic() < deadline:
        assert daemon.poll() is None, "the daemon exited:\n" + log.read_text()[-3000:]
        runs = [r for r in runs_by(instance, trigger) if r.run_id not in skip]
        failed = [r for r in runs if r.status in (DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED)]
        assert not failed, f"{trigger} run {failed[0].run_id} ended {failed[0].status}"
        done = [r for r in runs if r.status == DagsterRunStatus.SUCCESS]
        if done:
            return done[0]
        time.sleep(1)
    raise AssertionError(f"no successful {trigger} run within {DEADLINE_SECONDS} s:\n" + log.read_text()[-3000:])


def test_a_sensor_tick_launches_a_run_that_materialises_new_data(tmp_path):
    with stand_in(tmp_path, FakePortal(SPECS), SPECS) as env:
        home = Path(env.env["DAGSTER_HOME"])
        instance = DagsterInstance.from_ref(InstanceRef.from_dir(str(home)))
        log = tmp_path / "daemon.log"
        with open(log, "w") as out:
            daemon = subprocess.Popen(
                [os.path.join(os.path.dirname(sys.executable), "dagster-daemon"), "run", "-m", "meteo_assets.definitions"],
                env={**os.environ, **env.env, "METEO_POLL_SECONDS": "5"}, cwd=PROJECT_ROOT,
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )
        try:
            deadline = time.monotonic() + DEADLINE_SECONDS
            run = wait_for_success(instance, NEW_DATA_SENSOR, daemon, deadline, log)
            assert run.tags["dagster/sensor_name"] == NEW_DATA_SENSOR
            assert {k.name for k in run.asset_check_selection} == {
                "parser_fields_present", "bytes_parse", "rejected_share", "temperature_steps", "flat_lines",
                "gust_not_below_mean", "coverage", "min_mean_max", "temperature_spike"}
            # newest observation 2020-10-06 08:45 UTC: that day and the one before, in one ranged run
            assert (run.tags["dagster/asset_partition_range_start"], run.tags["dagster/asset_partition_range_end"]) == (
                "2020-10-05", "2020-10-06")
            network_run = wait_for_success(instance, NETWORK_SENSOR, daemon, deadline, log)
            # the portal publishes more for one station: the next tick runs just that station and those days
            env.portal.append_rows(SPECS[0].dataset_id, generate_rows(replace(
                SPECS[0], start=SPECS[0].end, end=dt.datetime(2020, 10, 7, 12, tzinfo=dt.timezone.utc), quirks=False)))
            while len(runs_by(instance, NEW_DATA_SENSOR)) < 2:
                assert time.monotonic() < deadline, "no second run after the portal published more"
                time.sleep(1)
            second = wait_for_success(instance, NEW_DATA_SENSOR, daemon, deadline, log, skip={run.run_id})
        finally:
            stop_process_group(daemon)

        assert set(network_run.asset_selection) >= {AssetKey(["network", "daily"])}
        assert sorted(k.to_user_string() for k in second.asset_selection) == [f"{layer}/{KEYS[0]}" for layer in ("clean", "daily", "raw")]
        assert (second.tags["dagster/asset_partition_range_start"], second.tags["dagster/asset_partition_range_end"]) == (
            "2020-10-06", "2020-10-07")
        with duckdb.connect(env.env["METEO_DATA_DIR"] + "/meteo.duckdb", read_only=True) as conn:
            slots = {key: dict(conn.execute(f'SELECT strftime(date, \'%Y-%m-%d\'), slots_reported FROM daily."{key}"').fetchall())
                     for key in KEYS}
            network = conn.execute('SELECT station, date, heat_island_index_c FROM network.daily ORDER BY date, station').fetchall()
        # a whole day, then until 10:45 Paris time; station 84 then got the rest of the 6th and half the 7th
        assert slots[KEYS[1]].keys() == {"2020-10-05", "2020-10-06"} and 30 <= slots[KEYS[1]]["2020-10-06"] <= 44
        assert slots[KEYS[0]].keys() == {"2020-10-05", "2020-10-06", "2020-10-07"}
        assert slots[KEYS[0]]["2020-10-05"] >= 90 and slots[KEYS[0]]["2020-10-06"] >= 90 and slots[KEYS[0]]["2020-10-07"] >= 50
        assert {(s, d.isoformat()) for s, d, _ in network} >= {(k, day) for day in ("2020-10-05", "2020-10-06") for k in KEYS}
        # the run's quality checks are recorded for the UI
        check = AssetCheckKey(AssetKey(["raw", KEYS[0]]), "parser_fields_present")
        record = instance.event_log_storage.get_asset_check_summary_records([check])[check]
        assert record.last_completed_check_execution_record.event.asset_check_evaluation.passed
