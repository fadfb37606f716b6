"""UI-style backfills: `dagster dev` (webserver + daemon) launches them, requested through GraphQL.

Two overlapping backfills run at once; the `duckdb_writer` pool of the project's instance settings
keeps their DuckDB writes one at a time, so neither fails on the file lock.
"""

import datetime as dt
import os
import socket
import subprocess
import sys
import time

import duckdb
import pytest
import requests

from meteo_assets.config import PROJECT_ROOT, load_network
from meteo_assets_tests.fake_portal import FakePortal, StationSpec
from meteo_assets_tests.processes import stop_process_group
from meteo_assets_tests.stand_in import stand_in

LAUNCH = """
mutation Launch($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message }
    ... on UnauthorizedError { message }
  }
}
"""
STATUS = """
query Status($id: String!) {
  partitionBackfillOrError(backfillId: $id) {
    ... on PartitionBackfill { status runs(limit: 50) { runId status } }
    ... on PythonError { message }
  }
}
"""
DONE = {"COMPLETED", "COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED", "CANCELED"}

SPECS = [
    StationSpec(f"{n}-station-meteo-{place}", n, "2020-05-25", "2020-07-05", seed=n)
    for n, place in ((81, "beauzelle-parc"), (82, "seilh-golf"), (83, "aussonne-mairie"))
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def graphql(url: str, query: str, variables: dict) -> dict:
    response = requests.post(url, json={"query": query, "variables": variables}, timeout=60)
    response.raise_for_status()
    body = response.json()
    assert "errors" not in body, body["errors"]
    return body["data"]


def wait_for(url: str, process: subprocess.Popen, deadline: float) -> None:
    while time.monotonic() < deadline:
        assert process.poll() is None, "dagster dev exited early"
        try:
            if requests.get(url.replace("/graphql", "/server_info"), timeout=5).ok:
                return
        except requests.ConnectionError:
            pass
        time.sleep(1)
    pytest.fail("dagster dev did not start in time")


def test_overlapping_ui_backfills_run_concurrently_without_lock_failures(tmp_path):
    with stand_in(tmp_path, FakePortal(SPECS), SPECS) as env:
        keys = [s.key for s in load_network(env.folder / "datasets.toml").stations]
        port = free_port()
        url = f"http://127.0.0.1:{port}/graphql"
        log = open(tmp_path / "dagster-dev.log", "w")
        process = subprocess.Popen(
            [os.path.join(os.path.dirname(sys.executable), "dagster"), "dev", "-m", "meteo_assets.definitions",
             "-h", "127.0.0.1", "-p", str(port)],
            # no sensors or schedule: only the two backfills write
            env={**os.environ, **env.env, "METEO_AUTOMATION": "off"}, cwd=PROJECT_ROOT, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            wait_for(url, process, time.monotonic() + 180)
            days = [(dt.date(2020, 6, 1) + dt.timedelta(days=i)).isoformat() for i in range(30)]

            def launch(stations: list[str]) -> str:
                selection = [{"path": [layer, key]} for key in stations for layer in ("raw", "clean", "daily")]
                result = graphql(url, LAUNCH, {"params": {"assetSelection": selection, "partitionNames": days}})
                launched = result["launchPartitionBackfill"]
                assert launched["__typename"] == "LaunchBackfillSuccess", launched
                return launched["backfillId"]

            backfills = [launch(keys[:2]), launch(keys[1:])]  # station 82 in both
            deadline = time.monotonic() + 600
            statuses = {}
            while time.monotonic() < deadline:
                statuses = {b: graphql(url, STATUS, {"id": b})["partitionBackfillOrError"] for b in backfills}
                if all(s["status"] in DONE for s in statuses.values()):
                    break
                time.sleep(2)
            assert all(s["status"] in ("COMPLETED", "COMPLETED_SUCCESS") for s in statuses.values()), statuses
            runs = [r for s in statuses.values() for r in s["runs"]]
            assert runs and all(r["status"] == "SUCCESS" for r in runs), runs
        finally:
            stop_process_group(process)
            log.close()

        # Dagster extends the daily target by a day on each side: their Météo-France windows read the
        # backfilled clean days, so they are recomputed too (with what clean holds for them: nothing here)
        neighbours = ["2020-05-31", "2020-07-01"]
        with duckdb.connect(env.env["METEO_DATA_DIR"] + "/meteo.duckdb", read_only=True) as conn:
            for key in keys:
                daily = conn.execute(f'SELECT date, slots_reported FROM daily."{key}" ORDER BY date').fetchall()
                assert [d.isoformat() for d, _ in daily] == [neighbours[0], *days, neighbours[1]]
                assert daily[0][1] == daily[-1][1] == 0
                assert sum(n for _, n in daily) > 0.9 * 96 * 30
                clean = conn.execute(f'SELECT count(*), count(DISTINCT observed_at) FROM clean."{key}"').fetchone()
                assert clean[0] == clean[1] == sum(n for _, n in daily)
        # one export request per station per backfill for its 30 days, not one per day
        exports = [r for r in env.portal.requests if r.path.endswith("/exports/csv")]
        assert len(exports) == 4
