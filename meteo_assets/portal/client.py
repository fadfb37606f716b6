"""HTTP client for the Opendatasoft Explore v2.1 API of the Toulouse Métropole portal.

Retries (backoff, 5xx, 429 with Retry-After) are urllib3's; this module adds what urllib3 cannot
know: which station and window a request was for, so that every error tells the user what failed.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
from dataclasses import dataclass
from urllib.parse import urlencode, urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

API_PATH = "/api/explore/v2.1"
USER_AGENT = "meteo_assets (Toulouse weather-station pipeline)"
CATALOGUE_DATASET = "stations-meteo-en-place"  # where each station stands: coordinates, altitude, LCZ


class PortalError(RuntimeError):
    """A request to the portal failed; the message names dataset, window, URL, status and cause."""

    def __init__(self, message: str, *, url: str, status: int | None = None):
        super().__init__(message)
        self.url, self.status = url, status


class DatasetNotFound(PortalError):
    pass


class PortalUnreachable(PortalError):
    pass


@dataclass(frozen=True)
class Export:
    """One export response, kept byte for byte."""

    dataset: str
    url: str
    content: bytes
    start: dt.datetime
    end: dt.datetime


def odsql_instant(value: dt.datetime) -> str:
    """An ODSQL datetime literal with an explicit offset (naive datetimes are refused)."""
    if value.tzinfo is None:
        raise ValueError(f"naive datetime {value!r}: windows need an explicit offset")
    return "date'" + value.astimezone(dt.timezone.utc).isoformat(timespec="seconds") + "'"


def window_filter(start: dt.datetime, end: dt.datetime) -> str:
    return f"heure_de_paris >= {odsql_instant(start)} AND heure_de_paris < {odsql_instant(end)}"


class PortalClient:
    def __init__(
        self,
        base_url: str,
        *,
        connect_timeout: float = 10.0,
        read_timeout: float = 120.0,
        retries: int = 5,
        backoff_factor: float = 1.0,
        max_concurrent: int = 4,
    ):
        self.base_url = base_url.rstrip("/")
        self.timeout = (connect_timeout, read_timeout)
        retry = Retry(
            total=retries,
            connect=min(retries, 3),  # an unreachable portal should be reported within seconds
            read=retries,
            status=retries,
            backoff_factor=backoff_factor,
            backoff_jitter=0.5,
            backoff_max=60,
            status_forcelist=(429, 500, 502, 503, 504),
            allowed_methods=("GET",),
            respect_retry_after_header=True,
            raise_on_status=False,
        )
        self.session = requests.Session()
        self.session.headers["User-Agent"] = USER_AGENT
        adapter = HTTPAdapter(max_retries=retry, pool_maxsize=max(max_concurrent, 1))
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self._slots = threading.BoundedSemaphore(max_concurrent)

    def url(self, path: str, params: dict | None = None) -> str:
        query = f"?{urlencode(params)}" if params else ""
        return f"{self.base_url}{API_PATH}{path}{query}"

    def export_csv(self, dataset: str, start: dt.datetime, end: dt.datetime, *, context: str = "") -> Export:
        """The CSV export of `dataset` for the half-open window [start, end), in observation order."""
        params = {
            "where": window_filter(start, end),
            "order_by": "heure_de_paris",
            "delimiter": ";",
            "with_bom": "false",
            "timezone": "UTC",
        }
        what = f"{context + ', ' if context else ''}dataset {dataset}, window {start.isoformat()} → {end.isoformat()}"
        url = self.url(f"/catalog/datasets/{dataset}/exports/csv", params)
        return Export(dataset=dataset, url=url, content=self._get(url, what), start=start, end=end)

    def dataset(self, dataset: str) -> dict:
        """A dataset's `fields` and `metas` (modified, data_processed, records_count)."""
        url = self.url(f"/catalog/datasets/{dataset}")
        return json.loads(self._get(url, f"dataset {dataset} metadata"))

    def export_json(self, dataset: str) -> list[dict]:
        """A small dataset's whole content as records (e.g. the station catalogue)."""
        url = self.url(f"/catalog/datasets/{dataset}/exports/json", {"timezone": "UTC"})
        return json.loads(self._get(url, f"dataset {dataset} export"))

    def catalog(self, where: str | None = None, page: int = 100) -> list[dict]:
        """All catalogue entries matching `where`, paged by offset (the catalogue is small)."""
        results: list[dict] = []
        while True:
            params = {"limit": page, "offset": len(results), **({"where": where} if where else {})}
            url = self.url("/catalog/datasets", params)
            body = json.loads(self._get(url, "catalogue"))
            results.extend(body.get("results", []))
            if not body.get("results") or len(results) >= body.get("total_count", 0):
                return results

    def _get(self, url: str, what: str) -> bytes:
        with self._slots:
            try:
                response = self.session.get(url, timeout=self.timeout)
            except requests.exceptions.ConnectionError as exc:
                host = urlsplit(self.base_url).netloc
                raise PortalUnreachable(
                    f"{what}: could not reach the portal at {host} ({_root_cause(exc)}). "
                    "Check the network, or point METEO_PORTAL_URL at a reachable portal "
                    "(`make demo` runs everything against the local stand-in). URL: " + url,
                    url=url,
                ) from exc
            except requests.exceptions.RequestException as exc:
                raise PortalError(f"{what}: request failed after retries ({_root_cause(exc)}). URL: {url}", url=url) from exc
        if response.status_code != 200:
            message = _portal_message(response)
            error = DatasetNotFound if response.status_code == 404 else PortalError
            raise error(
                f"{what}: portal answered HTTP {response.status_code}: {message}. URL: {url}",
                url=url,
                status=response.status_code,
            )
        return response.content


def _portal_message(response: requests.Response) -> str:
    try:
        body = response.json()
        return f"{body.get('error_code', 'error')}: {body.get('message', '')}".strip()
    except ValueError:
        return response.text[:200].strip() or response.reason or "no message"


def _root_cause(exc: BaseException) -> str:
    while exc.__cause__ or exc.__context__:
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    return f"{type(exc).__name__}: {exc}"
