"""Raw portal CSV export → typed observation frame, by field name and without row loops.

The parser only types values; it decides nothing about them (that is `clean`'s job), so every
data row comes out, junk included: an unparseable value becomes null, never an exception.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv

_BOM = b"\xef\xbb\xbf"

# portal field name → parsed column name, in output order
_FIELD_TO_COLUMN: dict[str, str] = {
    "data": "data",
    "id": "sensor_id",
    "type_de_station": "station_type",
    "heure_de_paris": "observed_at",
    "temperature_en_degre_c": "temperature",
    "humidite": "humidity",
    "pression": "pressure_pa",
    "pluie": "rain",
    "pluie_intensite_max": "rain_intensity_max",
    "force_moyenne_du_vecteur_vent": "wind_speed",
    "direction_du_vecteur_vent_moyen": "wind_dir",
    "force_rafale_max": "gust_speed",
    "direction_du_vecteur_de_vent_max_en_degres": "gust_dir",
}

PARSER_FIELDS: tuple[str, ...] = tuple(_FIELD_TO_COLUMN)

PARSED_DTYPES: dict[str, str] = {
    "data": "object",
    "sensor_id": "Int64",
    "station_type": "object",
    "observed_at": "datetime64[ns, UTC]",
    "temperature": "float64",
    "humidity": "float64",
    "pressure_pa": "float64",
    "rain": "float64",
    "rain_intensity_max": "float64",
    "wind_speed": "float64",
    "wind_dir": "float64",
    "gust_speed": "float64",
    "gust_dir": "float64",
}

_NUMERIC_COLUMNS = tuple(name for name, dtype in PARSED_DTYPES.items() if dtype == "float64")
# what reads as a number once surrounding whitespace is trimmed (RE2 syntax): decimal or exponent
# notation, and the words for infinity and not-a-number; anything else ("1,5", "0x10", "-") is null
_NUMBER = r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$"
_NUMBER_WORD = r"(?i)^[+-]?(inf|infinity|nan)$"
_SCHEMA_PREVIEW = 5


class UnknownSchemaError(ValueError):
    """The export lacks fields the parser needs: the portal schema changed (or labels were
    exported instead of field names), and guessing would load wrong columns."""

    def __init__(self, missing: list[str], schema: list[str]):
        self.missing = missing
        preview = ", ".join(schema[:_SCHEMA_PREVIEW]) + (
            ", …" if len(schema) > _SCHEMA_PREVIEW else ""
        )
        super().__init__(
            f"export is missing fields the parser needs: {', '.join(missing)} "
            f"(schema has {len(schema)} fields: {preview})"
        )


@dataclass
class ParsedExport:
    frame: pd.DataFrame
    schema_fields: int
    malformed_rows: int


def empty_parsed_frame() -> pd.DataFrame:
    return pd.DataFrame({name: pd.Series(dtype=dtype) for name, dtype in PARSED_DTYPES.items()})


def _header_fields(payload: bytes) -> list[str]:
    first_line = payload.split(b"\n", 1)[0].removeprefix(_BOM).rstrip(b"\r")
    if not first_line.strip():
        return []
    return next(csv.reader([first_line.decode("utf-8")], delimiter=";"))


def parse_export(payload: bytes) -> ParsedExport:
    """Parse one `;` CSV export (BOM or not, CRLF or LF, 15- or 39-field schema).

    Rows with the wrong number of fields cannot be attributed to columns: they are skipped and
    counted in `malformed_rows` so the caller can report them.
    """
    header = _header_fields(payload)
    if not header:
        return ParsedExport(empty_parsed_frame(), schema_fields=0, malformed_rows=0)
    missing = [field for field in PARSER_FIELDS if field not in header]
    if missing:
        raise UnknownSchemaError(missing, header)

    malformed: list[int | None] = []

    def skip_malformed(row: pa_csv.InvalidRow) -> str:
        malformed.append(row.number)
        return "skip"

    table = pa_csv.read_csv(
        pa.py_buffer(payload),
        parse_options=pa_csv.ParseOptions(delimiter=";", invalid_row_handler=skip_malformed),
        convert_options=pa_csv.ConvertOptions(
            include_columns=list(PARSER_FIELDS),
            column_types={field: pa.string() for field in PARSER_FIELDS},
            strings_can_be_null=False,
        ),
    )
    return ParsedExport(_typed(table), schema_fields=len(header), malformed_rows=len(malformed))


def _typed(table: pa.Table) -> pd.DataFrame:
    column = {_FIELD_TO_COLUMN[name]: table.column(name) for name in PARSER_FIELDS}
    frame = pd.DataFrame({"data": column["data"].to_pandas()})
    sensor_id = pd.Series(_to_float(column["sensor_id"]))
    frame["sensor_id"] = sensor_id.where(sensor_id % 1 == 0).astype("Int64")
    frame["station_type"] = column["station_type"].to_pandas()
    frame["observed_at"] = pd.to_datetime(
        column["observed_at"].to_pandas(), utc=True, format="ISO8601", errors="coerce"
    ).astype(PARSED_DTYPES["observed_at"])
    for name in _NUMERIC_COLUMNS:
        frame[name] = _to_float(column[name])
    return frame


def _to_float(texts: pa.ChunkedArray) -> np.ndarray:
    """Numbers from texts, vectorised in Arrow: NaN where a text is not a number or overflows."""
    trimmed = pc.utf8_trim_whitespace(texts)
    number = pc.match_substring_regex(trimmed, _NUMBER)
    values = pc.cast(pc.if_else(number, trimmed, pa.scalar(None, pa.string())), pa.float64())
    values = pc.if_else(pc.is_inf(values), pa.scalar(None, pa.float64()), values)  # "1e400": out of a double's range
    if not pc.all(pc.or_(number, pc.equal(trimmed, ""))).as_py():  # rare: other texts, maybe "inf" or "NaN"
        word = pc.match_substring_regex(trimmed, _NUMBER_WORD)
        values = pc.if_else(word, pc.cast(pc.if_else(word, trimmed, pa.scalar(None, pa.string())), pa.float64()), values)
    return values.to_numpy(zero_copy_only=False)


def concat_parsed(exports: Iterable[ParsedExport]) -> pd.DataFrame:
    """One frame from several exports of a station (live dataset + archives, or pages)."""
    frames = [export.frame for export in exports if len(export.frame)]
    if not frames:
        return empty_parsed_frame()
    return pd.concat(frames, ignore_index=True)
