"""The `stations` asset: where each station stands, joined with what `datasets.toml` says of it."""


import pandas as pd
from dagster import AssetExecutionContext, Failure, MetadataValue, Output, asset

from meteo_assets.assets.stations import DUCKDB_POOL
from meteo_assets.config import Network
from meteo_assets.portal import CATALOGUE_DATASET, PortalError
from meteo_assets.portal.catalogue import match_records
from meteo_assets.resources import PortalResource

STATION_COLUMNS = {
    "station": "key used by every asset and table",
    "dataset": "portal dataset id of the live data",
    "name": "station name",
    "number": "station number (dataset prefix)",
    "sensor_id": "expected sensor id in the messages",
    "archives": "archive dataset ids, comma-separated",
    "enabled": "materialised by the pipeline",
    "start_date": "first day the pipeline asks the portal for",
    "latitude": "WGS84",
    "longitude": "WGS84",
    "altitude_m": "metres",
    "commune": "ville",
    "installed": "installation date",
    "station_type": "ISS = full station, TH = temperature/humidity only",
    "lcz": "local climate zone",
    "in_catalogue": "found in the portal's station catalogue",
}


def join_catalogue(network: Network, records: list[dict]) -> pd.DataFrame:
    """Catalogue rows joined to the configured stations (`match_records`)."""
    matches = match_records((s.dataset for s in network.stations), records)
    rows = []
    for s in network.stations:
        match = records[matches[s.dataset]] if s.dataset in matches else None
        m = match or {}
        rows.append(
            {
                "station": s.key,
                "dataset": s.dataset,
                "name": s.name,
                "number": s.number,
                "sensor_id": s.sensor_id,
                "archives": ",".join(s.archives),
                "enabled": s.enabled,
                "start_date": pd.Timestamp(s.start_date),
                "latitude": _number(m.get("latitude")),
                "longitude": _number(m.get("longitude")),
                "altitude_m": _number(m.get("altitude")),
                "commune": m.get("ville"),
                "installed": m.get("installation"),
                "station_type": m.get("type_stati"),
                "lcz": None if m.get("lcz") is None else str(m.get("lcz")),
                "in_catalogue": match is not None,
            }
        )
    frame = pd.DataFrame(rows, columns=list(STATION_COLUMNS))
    for text in ("commune", "installed", "station_type", "lcz"):
        frame[text] = frame[text].astype("string")
    return frame


def _number(value) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def stations_asset(network: Network):
    @asset(
        key="stations",
        group_name="network",
        kinds={"duckdb", "pandas"},
        pool=DUCKDB_POOL,
        description=(
            "Every configured station with its position, altitude, commune and local climate zone, from the "
            f"portal's `{CATALOGUE_DATASET}` catalogue joined with `datasets.toml`. DuckDB table `main.stations`."
        ),
        metadata={"schema": "main", "dagster/column_description": MetadataValue.json(STATION_COLUMNS)},
    )
    def stations(context: AssetExecutionContext, portal: PortalResource) -> Output[pd.DataFrame]:
        try:
            records = portal.client().export_json(CATALOGUE_DATASET)
        except PortalError as exc:
            raise Failure(description=f"station catalogue: {exc}") from exc
        frame = join_catalogue(network, records)
        missing = frame.loc[~frame["in_catalogue"], "station"].tolist()
        if missing:
            context.log.warning(f"{len(missing)} stations not found in {CATALOGUE_DATASET}: {', '.join(missing)}")
        return Output(
            frame,
            metadata={
                "dagster/row_count": len(frame),
                "not_in_catalogue": MetadataValue.json(missing),
                "preview": MetadataValue.md(frame.drop(columns=["archives"]).head(60).to_markdown(index=False)),
            },
        )

    return stations
