"""The `dashboard` asset: the stations' tables → an offline static site under `METEO_DATA_DIR/dashboard/`.

    python -m meteo_assets.assets.dashboard      # `make dashboard`: rebuild it, print where it is

It reads through the notebook loaders (the storage the pipeline writes, local or S3) and hands the
frames to `meteo_assets.dashboard`, which does the rest without Dagster.
"""


import datetime as dt
import os
import sys
import time

import duckdb
import pandas as pd
from botocore.exceptions import BotoCoreError, ClientError
from dagster import AssetExecutionContext, AssetKey, AssetsDefinition, Config, Failure, MaterializeResult, MetadataValue, asset
from pydantic import Field

from meteo_assets.assets.network import NETWORK_DAILY
from meteo_assets.config import Network, Settings
from meteo_assets.dashboard import build_model, dashboard_window, render_site, site_index, write_site
from meteo_assets.dashboard.model import station_table
from meteo_assets.dashboard.site import SITE_FOLDER, content_type
from meteo_assets.notebook import load_clean, load_daily, load_stations
from meteo_assets.transform import PARIS

class DashboardConfig(Config):
    days: int = Field(
        default=366, ge=0,
        description="days the site covers, ending on the last day with observations (0 = the whole history)",
    )


def dashboard_asset(network: Network, settings: Settings) -> AssetsDefinition:
    keys = [s.key for s in network.enabled]

    @asset(
        key="dashboard",
        group_name="network",
        kinds={"html", "plotly"},
        # clean: the wind rose counts 15-minute observations, which the daily tables do not keep
        deps=[AssetKey(["daily", k]) for k in keys] + [AssetKey(["clean", k]) for k in keys]
        + [NETWORK_DAILY, AssetKey("stations")],
        description=(
            "The dashboard as a self-contained static site (`dashboard/index.html` under `METEO_DATA_DIR`; "
            "also under `dashboard/` in the lake bucket in S3 mode): network map, per-station temperature, "
            "rain, humidity, pressure and wind rose, urban heat island, data coverage and freshness, for any "
            "period of the covered days. Opens offline: no CDN, no map tiles."
        ),
    )
    def dashboard(context: AssetExecutionContext, config: DashboardConfig) -> MaterializeResult:
        started = time.perf_counter()
        now = dt.datetime.now(dt.timezone.utc)
        daily = load_daily(stations=keys)
        window = dashboard_window(daily, config.days or None, now.astimezone(PARIS).date())
        clean = load_clean(stations=keys, start=window[0], end=window[1])
        catalogue = _catalogue(context)
        stations = station_table([(s.key, s.name) for s in network.enabled], catalogue)
        model = build_model(daily, clean, stations, window=window, generated_at=now,
                            min_coverage=network.defaults.min_coverage)
        files = render_site(model)
        index = site_index(settings.data_dir)
        write_site(files, index.parent)
        location = {"path": MetadataValue.path(str(index)), "url": MetadataValue.url(index.as_uri())}
        if settings.storage == "s3":
            location["s3_uri"] = MetadataValue.text(upload_site(files, settings))
        return MaterializeResult(
            metadata={
                **location,
                "stations": len(stations),
                "stations_located": int(stations["latitude"].notna().sum()),
                "days": model["days"],
                "covered": MetadataValue.text(f"{window[0]} … {window[1]}"),
                "default_period": MetadataValue.text(" … ".join(model["default_period"])),
                "bytes": sum(len(content) for content in files.values()),
                "build_seconds": round(time.perf_counter() - started, 2),
            }
        )

    return dashboard


def _catalogue(context: AssetExecutionContext) -> pd.DataFrame | None:
    """The `stations` table, or None (and a warning) when it was never materialised."""
    try:
        return load_stations()
    except (duckdb.CatalogException, FileNotFoundError) as exc:
        context.log.warning(f"no station positions for the map ({exc}): materialise the `stations` asset")
        return None


def upload_site(files: dict[str, bytes], settings: Settings) -> str:
    """Copy the site under `dashboard/` in the lake bucket, the page last, each with its content
    type, so the bucket can serve it as a static website."""
    from dagster_aws.s3 import S3Resource

    client = S3Resource(endpoint_url=settings.s3_endpoint_url).get_client()
    prefix = f"s3://{settings.lake_bucket}/{SITE_FOLDER}/"
    try:
        for name, body in files.items():
            client.put_object(Bucket=settings.lake_bucket, Key=f"{SITE_FOLDER}/{name}", Body=body,
                              ContentType=content_type(name))
    except (ClientError, BotoCoreError) as exc:
        raise Failure(description=f"dashboard: cannot upload the site to {prefix} (METEO_LAKE_BUCKET): {exc}") from exc
    return prefix


def main() -> int:
    """`make dashboard`: materialise `dashboard` (recorded in DAGSTER_HOME), print where it is,
    and open it when there is a desktop to open it on."""
    from meteo_assets.definitions import build_definitions
    from meteo_assets.run import open_instance

    settings = Settings.from_env()
    defs = build_definitions(settings)
    job = defs.resolve_implicit_global_asset_job_def()
    result = job.execute_in_process(instance=open_instance(), asset_selection=[AssetKey("dashboard")],
                                    raise_on_error=False)
    if not result.success:
        failures = [e.event_specific_data.error.message.strip() for e in result.all_events
                    if e.event_type_value == "STEP_FAILURE" and e.event_specific_data.error]
        print(f"dashboard: FAILED ({failures[0] if failures else 'see the Dagster UI'})", file=sys.stderr)
        return 1
    index = site_index(settings.data_dir)
    print(f"dashboard: {index.as_uri()}")
    if os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY") or sys.platform in ("darwin", "win32"):
        import webbrowser

        webbrowser.open(index.as_uri())
    return 0


if __name__ == "__main__":
    sys.exit(main())
