"""The outside world of geocoding_service: Nominatim (through geopy), OSRM, PLZ downloads.

Each client makes exactly one HTTP request per call (no retries of its own: the caller
decides, and Nominatim's rate limit counts every request) and turns every failure into
`ProviderUnavailable` with a short reason. Caching and the shared rate limit live in
`service.py`, in the database.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

import requests
from geopy.adapters import RequestsAdapter, get_retry_after
from geopy.exc import (
    GeocoderParseError,
    GeocoderQueryError,
    GeocoderRateLimited,
    GeocoderTimedOut,
    GeopyError,
)
from geopy.geocoders import Nominatim

from geocoding_service.plz_data import PlzDataError
from geocoding_service.rules import Coordinates, DistancePolicy
from geocoding_service.settings import GeocodingSettings

log = logging.getLogger(__name__)

MAX_SOURCE_BYTES = 200 * 1024 * 1024  # GeoNames' allCountries.zip is about 20 MB


class ProviderUnavailable(RuntimeError):
    """The provider did not answer usably (timeout, 429, 5xx, garbage); `reason` says which.

    `provider_down` tells a failure of the provider itself (unreachable, timed out, 429,
    5xx, no turn at the rate limit: asking again later, with any address, is the cure) from
    an answer about this one query that cannot be used (unreadable, query refused).
    `retry_after` is the provider's Retry-After in seconds, when it sent one.
    """

    def __init__(
        self, reason: str, *, provider_down: bool = True, retry_after: float | None = None
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.provider_down = provider_down
        self.retry_after = retry_after


class NominatimGeocoder:
    """Address -> coordinates through geopy's Nominatim client, one request per call."""

    def __init__(self, url: str, user_agent: str, timeout: float) -> None:
        parts = urlsplit(url)
        self._client = Nominatim(
            domain=parts.netloc + parts.path.rstrip("/"),
            scheme=parts.scheme,
            user_agent=user_agent,
            timeout=timeout,
            # one request per call: a retry would bypass the shared rate limit
            adapter_factory=lambda proxies, ssl_context: RequestsAdapter(
                proxies=proxies, ssl_context=ssl_context, max_retries=0
            ),
        )

    def locate(self, address: str) -> Coordinates | None:
        """The best match in Germany, or None when Nominatim knows no such address."""
        try:
            found = self._client.geocode(address, exactly_one=True, country_codes="de")
        except (GeocoderParseError, GeocoderQueryError) as exc:  # about this query only
            raise ProviderUnavailable(_nominatim_failure(exc), provider_down=False) from None
        except GeopyError as exc:
            raise ProviderUnavailable(
                _nominatim_failure(exc), retry_after=_retry_after(exc)
            ) from None
        except (ValueError, TypeError, KeyError) as exc:  # an answer geopy cannot read
            raise ProviderUnavailable(
                f"nominatim answer unreadable: {exc.__class__.__name__}", provider_down=False
            ) from None
        if found is None:
            return None
        return Coordinates(float(found.latitude), float(found.longitude))


def _nominatim_failure(exc: GeopyError) -> str:
    status = getattr(exc.__cause__, "status_code", None)  # geopy's AdapterHTTPError
    if isinstance(exc, GeocoderRateLimited):
        return "nominatim rate limited (HTTP 429)"
    if status is not None:
        return f"nominatim failed: HTTP {status}"
    if isinstance(exc, GeocoderTimedOut):
        return "nominatim timed out"
    return f"nominatim failed: {exc.__class__.__name__}"


def _retry_after(exc: GeopyError) -> float | None:
    """Retry-After of a 429 (geopy reads it) or of another HTTP failure (e.g. 503)."""
    seconds = getattr(exc, "retry_after", None)
    if seconds is None:
        headers = getattr(exc.__cause__, "headers", None)
        seconds = get_retry_after(headers) if headers else None
    return float(seconds) if seconds is not None else None


@dataclass(frozen=True)
class Route:
    """A route's length and travel time."""

    distance_m: float
    duration_s: float


class OsrmRouter:
    """Road distance and time from OSRM's `route` service, one request per call."""

    def __init__(self, url: str, timeout: float, user_agent: str | None = None) -> None:
        self._url = url.rstrip("/")
        self._timeout = timeout
        self._headers = {"User-Agent": user_agent or "placement-platform geocoding_service"}

    def route(self, profile: str, start: Coordinates, end: Coordinates) -> Route | None:
        """The fastest route, or None when OSRM finds none between the points."""
        url = (
            f"{self._url}/route/v1/{profile}/"
            f"{start.lon:.6f},{start.lat:.6f};{end.lon:.6f},{end.lat:.6f}"
        )
        try:
            response = requests.get(
                url, params={"overview": "false"}, timeout=self._timeout, headers=self._headers
            )
        except requests.Timeout:
            raise ProviderUnavailable("osrm timed out") from None
        except requests.RequestException as exc:
            raise ProviderUnavailable(f"osrm unreachable: {exc.__class__.__name__}") from None
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict) and body.get("code") in ("NoRoute", "NoSegment"):
            return None
        if response.status_code != 200 or not isinstance(body, dict) or body.get("code") != "Ok":
            code = body.get("code") if isinstance(body, dict) else None
            raise ProviderUnavailable(
                f"osrm failed: HTTP {response.status_code} {code or ''}".strip()
            )
        try:
            best = body["routes"][0]
            return Route(float(best["distance"]), float(best["duration"]))
        except (KeyError, IndexError, TypeError, ValueError):
            raise ProviderUnavailable("osrm answer unreadable") from None


def fetch_source(source: str, timeout: float = 60.0) -> bytes:
    """The bytes of a PLZ data file: a local path (or file:// URL) or an http(s) URL."""
    if source.startswith(("http://", "https://")):
        return _download(source, timeout)
    path = Path(source.removeprefix("file://")).expanduser()
    try:
        if not path.exists():
            raise PlzDataError(f"no such file: {path}")
        if not path.is_file():  # directories, devices, pipes
            raise PlzDataError(f"not a regular file: {path}")
        if path.stat().st_size > MAX_SOURCE_BYTES:
            raise PlzDataError(f"{path} is larger than {MAX_SOURCE_BYTES // 2**20} MB")
        return path.read_bytes()
    except OSError as exc:  # unreadable, or a name the file system refuses (too long, ...)
        reason = exc.strerror or exc.__class__.__name__
        raise PlzDataError(f"cannot read {str(path)[:200]}: {reason}") from None


def _download(url: str, timeout: float) -> bytes:
    try:
        with requests.get(url, stream=True, timeout=(10, timeout)) as response:
            if response.status_code != 200:
                raise PlzDataError(f"cannot download {url}: HTTP {response.status_code}")
            chunks, size = [], 0
            for chunk in response.iter_content(chunk_size=1 << 16):
                size += len(chunk)
                if size > MAX_SOURCE_BYTES:
                    raise PlzDataError(f"{url} is larger than {MAX_SOURCE_BYTES // 2**20} MB")
                chunks.append(chunk)
            return b"".join(chunks)
    except requests.RequestException as exc:
        raise PlzDataError(f"cannot download {url}: {exc.__class__.__name__}") from None


class AddressGeocoder(Protocol):
    """Address -> coordinates (None: no such address); ProviderUnavailable on failure."""

    def locate(self, address: str) -> Coordinates | None: ...


class Router(Protocol):
    """Route between two points (None: no route); ProviderUnavailable on failure."""

    def route(self, profile: str, start: Coordinates, end: Coordinates) -> Route | None: ...


@dataclass(frozen=True)
class Providers:
    """What the use cases may call and how: the geocoder and router when configured, the
    distance estimate, and the rules of the shared geocoder rate limit."""

    policy: DistancePolicy = field(default_factory=DistancePolicy)
    geocoder: AddressGeocoder | None = None
    router: Router | None = None
    osrm_profiles: Mapping[str, str | None] = field(
        default_factory=lambda: {"car": "driving", "transit": None}
    )
    min_interval_s: float = 1.0
    max_wait_s: float = 10.0
    max_address_attempts: int = 5
    backoff_s: float = 5.0  # the address loop's first pause when the geocoder is down
    backoff_max_s: float = 300.0  # its longest, also for a Retry-After


def providers_from_settings(settings: GeocodingSettings) -> Providers:
    """The providers these settings configure (no connection is made here)."""
    geocoder = None
    if settings.nominatim_url:
        assert settings.nominatim_user_agent  # the settings refuse a URL without one
        geocoder = NominatimGeocoder(
            settings.nominatim_url,
            settings.nominatim_user_agent,
            settings.nominatim_timeout_seconds,
        )
    router = None
    if settings.osrm_url:
        router = OsrmRouter(
            settings.osrm_url, settings.osrm_timeout_seconds, settings.nominatim_user_agent
        )
    return Providers(
        policy=settings.distance_policy(),
        geocoder=geocoder,
        router=router,
        osrm_profiles=settings.osrm_profiles(),
        min_interval_s=settings.nominatim_min_interval_seconds,
        max_wait_s=settings.nominatim_max_wait_seconds,
        max_address_attempts=settings.nominatim_max_attempts,
        backoff_s=settings.nominatim_backoff_seconds,
        backoff_max_s=settings.nominatim_backoff_max_seconds,
    )
