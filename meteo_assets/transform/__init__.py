"""Pure data-contract layer: portal CSV → clean 15-minute slots → daily table (no Dagster)."""

from .clean import FLAG_RULES, REJECTION_RULES, CleanResult, clean_observations
from .contract import (
    CLEAN_COLUMNS,
    DAILY_COLUMNS,
    MEASUREMENT_COLUMNS,
    PARIS,
    ContractSettings,
    day_window_utc,
    empty_clean_frame,
    empty_daily_frame,
    pandas_dtypes,
    round_half_away_from_zero,
    slots_expected,
)
from .daily import COVERAGE_COLUMNS, daily_summary
from .parse import (
    PARSED_DTYPES,
    PARSER_FIELDS,
    ParsedExport,
    UnknownSchemaError,
    concat_parsed,
    empty_parsed_frame,
    parse_export,
)

__all__ = [
    "CLEAN_COLUMNS",
    "COVERAGE_COLUMNS",
    "DAILY_COLUMNS",
    "FLAG_RULES",
    "MEASUREMENT_COLUMNS",
    "PARIS",
    "PARSED_DTYPES",
    "PARSER_FIELDS",
    "REJECTION_RULES",
    "CleanResult",
    "ContractSettings",
    "ParsedExport",
    "UnknownSchemaError",
    "clean_observations",
    "concat_parsed",
    "daily_summary",
    "day_window_utc",
    "empty_clean_frame",
    "empty_daily_frame",
    "empty_parsed_frame",
    "pandas_dtypes",
    "parse_export",
    "round_half_away_from_zero",
    "slots_expected",
]
