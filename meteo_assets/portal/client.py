"""HTTP client for the Opendatasoft Explore v2.1 API of the Toulouse Métropole portal.

Retries of refused connections, connection resets, read timeouts and 429/5xx answers (exponential
backoff with jitter, `Retry-After` honoured up to `retry_after_max`) are urllib3's. urllib3 cannot
see a body that breaks off after the headers (requests streams it): a body shorter than its
Content-Length, a stalled body or a CSV export cut mid-line is retried here with the same urllib3
policy, and never handed on as if complete. Every error names what the request was for (station,
window, dataset) and its URL. The client only talks to the origin of `base_url`: a redirect to
another host is refused. An API key, if any, comes from the environment only and is sent as a header.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import os
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar
from urllib.parse import quote, urlencode, urljoin, urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import InvalidHeader, MaxRetryError, ProtocolError, ReadTimeoutError
from urllib3.util.retry import Retry

API_PATH = "/api/explore/v2.1"
USER_AGENT = "meteo_assets (Toulouse weather-station pipeline)"
CATALOGUE_DATASET = "stations-meteo-en-place"  # where each station stands: coordinates, altitude, LCZ
API_KEY_ENV = "METEO_PORTAL_API_KEY"  # optional Opendatasoft API key (higher rate limits)
PORTAL_DATASET_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,199}$")  # one URL path segment, nothing to escape
MAX_REDIRECTS = 5
BODY_CHUNK = 1 << 20  # bytes per read of a response body

T = TypeVar("T")


class PortalError(RuntimeError):
    """A request to the portal failed; the message names dataset, window, URL, status and cause."""

    def __init__(self, message: str, *, url: str, status: int | None = None):
        super().__init__(message)
        self.url, self.status = url, status


class DatasetNotFound(PortalError):
    pass


class PortalUnreachable(PortalError):
    pass


class PortalTimeout(PortalError):
    """The portal accepted the connection but did not answer within the read timeout, every try."""


class IncompleteResponse(PortalError):
    """Every try returned a body that broke off (short of its Content-Length, or a CSV cut mid-line)."""


class RedirectRefused(PortalError):
    """The portal (or something posing as it) redirected to another host."""


class _Incomplete(Exception):
    """One try's body is incomplete: retry it (internal)."""


class _ForeignRedirect(Exception):
    def __init__(self, target: str):
        super().__init__(target)
        self.target = target


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


def origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme.lower(), parts.netloc.lower()


class _SameOriginSession(requests.Session):
    """Follows redirects within the portal's origin only; any other target raises before it is contacted."""

    def __init__(self, allowed: str):
        super().__init__()
        self.allowed = origin(allowed)
        self.max_redirects = MAX_REDIRECTS

    def get_redirect_target(self, resp: requests.Response) -> str | None:
        target = super().get_redirect_target(resp)
        if target is not None and origin(urljoin(resp.url, target)) != self.allowed:
            raise _ForeignRedirect(urljoin(resp.url, target))
        return target


class PortalClient:
    def __init__(
        self,
        base_url: str,
        *,
        connect_timeout: float = 10.0,
        read_timeout: float = 120.0,
        retries: int = 5,
        backoff_factor: float = 1.0,
        backoff_max: float = 60.0,
        retry_after_max: float = 120.0,
        max_concurrent: int = 4,
        api_key: str | None = None,
    ):
        self.base_url = base_url.rstrip("/")
        self.timeout = (connect_timeout, read_timeout)
        self.retries = retries
        # Worst case per request: `retries` waits of at most max(backoff_max, retry_after_max) seconds.
        self.retry = Retry(
            total=retries,
            connect=min(retries, 3),  # an unreachable portal should be reported within seconds
            read=retries,
            status=retries,
            redirect=False,  # requests follows redirects itself (same origin only, see _SameOriginSession)
            backoff_factor=backoff_factor,
            backoff_jitter=backoff_factor / 2,
            backoff_max=backoff_max,
            retry_after_max=retry_after_max,
            status_forcelist=(429, 500, 502, 503, 504),
            allowed_methods=("GET",),
            respect_retry_after_header=True,
            raise_on_status=False,
        )
        self.session = _SameOriginSession(self.base_url)
        self.session.headers["User-Agent"] = USER_AGENT
        api_key = api_key if api_key is not None else os.environ.get(API_KEY_ENV)
        if api_key:
            self.session.headers["Authorization"] = f"Apikey {api_key}"
        adapter = HTTPAdapter(max_retries=self.retry, pool_maxsize=max(max_concurrent, 1))
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self._slots = threading.BoundedSemaphore(max_concurrent)

    def url(self, path: str, params: dict | None = None) -> str:
        query = f"?{urlencode(params)}" if params else ""
        return f"{self.base_url}{API_PATH}{path}{query}"

    def dataset_url(self, dataset: str, suffix: str = "", params: dict | None = None) -> str:
        """The URL of a dataset's endpoint; ids that are not a plain portal id are refused, never escaped."""
        if not isinstance(dataset, str) or not PORTAL_DATASET_ID.match(dataset):
            raise ValueError(f"invalid portal dataset id {dataset!r}: expected lowercase letters, digits, '-' or '_'")
        return self.url(f"/catalog/datasets/{quote(dataset, safe='')}{suffix}", params)

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
        url = self.dataset_url(dataset, "/exports/csv", params)
        return Export(dataset=dataset, url=url, content=self._get(url, what, complete_csv), start=start, end=end)

    def dataset(self, dataset: str) -> dict:
        """A dataset's `fields` and `metas` (modified, data_processed, records_count)."""
        return self._get(self.dataset_url(dataset), f"dataset {dataset} metadata", complete_json)

    def export_json(self, dataset: str) -> list[dict]:
        """A small dataset's whole content as records (e.g. the station catalogue)."""
        url = self.dataset_url(dataset, "/exports/json", {"timezone": "UTC"})
        return self._get(url, f"dataset {dataset} export", complete_json)

    def records(self, dataset: str, params: dict, *, what: str) -> dict:
        """A small ODSQL query on `/records` (aggregates such as `max(heure_de_paris)`)."""
        return self._get(self.dataset_url(dataset, "/records", params), f"dataset {dataset} {what}", complete_json)

    def catalog(self, where: str | None = None, page: int = 100) -> list[dict]:
        """All catalogue entries matching `where`, paged by offset (the catalogue is small)."""
        results: list[dict] = []
        while True:
            params = {"limit": page, "offset": len(results), **({"where": where} if where else {})}
            body = self._get(self.url("/catalog/datasets", params), "catalogue", complete_json)
            results.extend(body.get("results", []))
            if not body.get("results") or len(results) >= body.get("total_count", 0):
                return results

    def _get(self, url: str, what: str, complete: Callable[[bytes], T]) -> T:
        """GET `url` and return `complete(body)`; a body that breaks off is fetched again.

        urllib3 retries everything up to the response headers; a failure in the body comes after
        that, so it is retried here, counted and spaced by the same urllib3 `Retry` policy.
        """
        retry = self.retry
        while True:
            try:
                return self._try_once(url, what, complete)
            except _Incomplete as exc:
                try:
                    retry = retry.increment("GET", url, error=ProtocolError(str(exc)))
                except MaxRetryError:
                    raise IncompleteResponse(
                        f"{what}: the portal's answer broke off on each of {self.retries + 1} tries "
                        f"(last: {exc}); nothing of it was kept. URL: {url}",
                        url=url,
                    ) from exc
                retry.sleep()

    def _try_once(self, url: str, what: str, complete: Callable[[bytes], T]) -> T:
        with self._slots:
            try:
                response = self.session.get(url, timeout=self.timeout, stream=True)
                with response:
                    # in 1 MB reads, not requests' 10 kB: a download on a thread then takes the
                    # interpreter lock ~100 times less often from a step at work (a 2 MB export
                    # arrived at 3-5 MB/s beside a busy step, at 36 MB/s this way)
                    content = b"".join(response.iter_content(BODY_CHUNK)) if response.status_code == 200 else response.content
            except _ForeignRedirect as exc:
                target = urlsplit(exc.target)
                raise RedirectRefused(
                    f"{what}: the portal redirected to {target.scheme}://{target.netloc}, another host; refused "
                    f"(this client only talks to {urlsplit(self.base_url).netloc}, the host of METEO_PORTAL_URL). "
                    f"URL: {url}",
                    url=url,
                ) from None
            except (requests.exceptions.ChunkedEncodingError, requests.exceptions.ContentDecodingError) as exc:
                raise _Incomplete(f"body broken off ({_root_cause(exc)})") from exc
            except requests.exceptions.ConnectionError as exc:
                first = exc.args[0] if exc.args else None
                if isinstance(first, ReadTimeoutError):  # raised while reading the body
                    raise _Incomplete(f"body stalled for more than {self.timeout[1]:g} s") from exc
                reason = getattr(first, "reason", None)
                if isinstance(reason, ReadTimeoutError):
                    raise self._timeout(what, url) from exc
                if isinstance(reason, ProtocolError):
                    raise PortalError(
                        f"{what}: the portal dropped the connection on each of {self.retries + 1} tries "
                        f"({_root_cause(exc)}). URL: {url}",
                        url=url,
                    ) from exc
                raise PortalUnreachable(
                    f"{what}: could not reach the portal at {urlsplit(self.base_url).netloc} ({_root_cause(exc)}). "
                    "Check the network, or point METEO_PORTAL_URL at a reachable portal "
                    "(`make demo` runs everything against the local stand-in). URL: " + url,
                    url=url,
                ) from exc
            except requests.exceptions.ReadTimeout as exc:
                raise self._timeout(what, url) from exc
            except requests.exceptions.RequestException as exc:
                raise PortalError(f"{what}: request failed after retries ({_root_cause(exc)}). URL: {url}", url=url) from exc
        if response.status_code != 200:
            error = DatasetNotFound if response.status_code == 404 else PortalError
            raise error(
                f"{what}: portal answered HTTP {response.status_code}: {_portal_message(response)}"
                f"{self._after_retries(response)}. URL: {url}",
                url=url,
                status=response.status_code,
            )
        return complete(content)

    def _after_retries(self, response: requests.Response) -> str:
        if response.status_code not in self.retry.status_forcelist:
            return ""
        try:
            asked = self.retry.get_retry_after(response)
        except InvalidHeader:
            asked = None
        wait = "" if asked is None else f"; last asked to wait {asked:g} s"
        if asked is not None and asked >= self.retry.retry_after_max:
            wait = f"; last asked to wait {response.headers['Retry-After']} s, waits are capped at {asked:g} s"
        return f" ({self.retries + 1} tries{wait})"

    def _timeout(self, what: str, url: str) -> PortalTimeout:
        return PortalTimeout(
            f"{what}: the portal did not answer within {self.timeout[1]:g} s on any of {self.retries + 1} tries. "
            f"URL: {url}",
            url=url,
        )


def complete_csv(content: bytes) -> bytes:
    """The export itself, if whole: a header, and a last line that ends with a newline.

    HTTP framing (Content-Length, chunked encoding) is checked by urllib3; this catches a body that
    is well framed but cut mid-line. A whole last line with a wrong field count is a malformed
    row, not a cut: the parser rejects and counts it.
    """
    if not content:
        raise _Incomplete("empty body: an export always has a header line")
    if not content.endswith(b"\n"):
        last = content[content.rfind(b"\n") + 1 :]
        header = _fields(content.split(b"\n", 1)[0])
        raise _Incomplete(
            f"CSV cut mid-line: the last line ({_fields(last)} of {header} fields) has no line end"
        )
    return content


def complete_json(content: bytes):
    try:
        return json.loads(content)
    except ValueError as exc:
        raise _Incomplete(f"invalid JSON ({exc})") from exc


def _fields(line: bytes) -> int:
    return len(next(csv.reader([line.decode("utf-8", "replace")], delimiter=";"), []))


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
