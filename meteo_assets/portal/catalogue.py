"""Matching data datasets to rows of the portal's station catalogue.

The catalogue's `id_nom` does not always equal the data dataset id (reference/portal.md), so a
dataset takes the row with its id as `id_nom`, else the only row with its number as `id_numero`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from meteo_assets.config import dataset_number


def match_records(datasets: Iterable[str], records: Sequence[dict]) -> dict[str, int]:
    """Index in `records` of each dataset's catalogue row; datasets without a row are left out."""
    by_name = {str(r.get("id_nom", "")).strip(): i for i, r in enumerate(records)}
    by_number: dict[int, list[int]] = {}
    for i, r in enumerate(records):
        try:
            by_number.setdefault(int(float(r.get("id_numero"))), []).append(i)
        except (TypeError, ValueError):
            continue
    matches = {}
    for dataset in datasets:
        same_number = by_number.get(dataset_number(dataset), [])
        index = by_name.get(dataset, same_number[0] if len(same_number) == 1 else None)
        if index is not None:
            matches[dataset] = index
    return matches
