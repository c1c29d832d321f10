"""Pure geocoding rules: points, postal codes in addresses, distance estimates. No I/O."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

EARTH_RADIUS_KM = 6371.0088  # mean radius (IUGG)
MAX_DISTANCE_PAIRS = 10_000  # per `POST /api/distances`

TravelMode = Literal["car", "transit"]
TRAVEL_MODES: tuple[TravelMode, ...] = ("car", "transit")

POSTAL_CODE = re.compile(r"^[0-9]{5}$")  # ASCII digits only (\d is any script's)
# a German PLZ inside an address: five digits standing alone ("04109 Leipzig", "D-04109")
_POSTAL_CODE_IN_TEXT = re.compile(r"(?<![0-9.,])([0-9]{5})(?![0-9.,])")
_COORDINATES = re.compile(
    r"^ *([+-]?[0-9]{1,3}(?:\.[0-9]+)?) *, *([+-]?[0-9]{1,3}(?:\.[0-9]+)?) *$"
)


@dataclass(frozen=True)
class Coordinates:
    """A point in WGS84 degrees."""

    lat: float
    lon: float


@dataclass(frozen=True)
class Point:
    """One end of a distance query: a postal code (its centroid) or coordinates."""

    postal_code: str | None = None
    coordinates: Coordinates | None = None


def parse_point(text: str) -> Point:
    """`12345` (a PLZ) or `lat,lon` in degrees; ValueError saying what is wrong otherwise."""
    if len(text) == 5 and text.isascii() and text.isdigit():  # the common case, no regex
        return Point(postal_code=text)
    match = _COORDINATES.fullmatch(text)
    if match is None:
        raise ValueError("must be a 5-digit postal code or 'lat,lon' in degrees")
    lat, lon = float(match.group(1)), float(match.group(2))
    if not -90 <= lat <= 90:
        raise ValueError("latitude must be between -90 and 90")
    if not -180 <= lon <= 180:
        raise ValueError("longitude must be between -180 and 180")
    return Point(coordinates=Coordinates(lat, lon))


def postal_codes_in(address: str) -> list[str]:
    """The 5-digit numbers standing alone in an address, in order (candidate PLZ)."""
    return _POSTAL_CODE_IN_TEXT.findall(address)


def normalise_address(address: str) -> str:
    """The cache key of an address: case, spacing and trailing punctuation do not matter."""
    return " ".join(address.casefold().replace(",", ", ").split()).strip(" ,;.")


def therapist_address(street: str | None, postal_code: str, city: str | None) -> str | None:
    """`Street 1, 04109 Leipzig, Deutschland` for a geocoder; None without a street."""
    if not street or not street.strip():
        return None
    place = f"{postal_code} {city.strip()}" if city and city.strip() else postal_code
    return f"{street.strip()}, {place}, Deutschland"


def haversine_km(
    lat1: np.ndarray, lon1: np.ndarray, lat2: np.ndarray, lon2: np.ndarray
) -> np.ndarray:
    """Great-circle distance in km between coordinate arrays (degrees), elementwise."""
    p1, p2 = np.radians(lat1), np.radians(lat2)
    dphi = p2 - p1
    dlmb = np.radians(lon2) - np.radians(lon1)
    a = np.sin(dphi * 0.5) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dlmb * 0.5) ** 2
    return 2.0 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.minimum(a, 1.0)))


@dataclass(frozen=True)
class DistancePolicy:
    """How a straight-line distance becomes a travel estimate (settings `DETOUR_FACTOR_*`,
    `SPEED_*_KMH`): road or network distance = great circle x detour; time = that / speed."""

    detour: Mapping[str, float] = field(default_factory=lambda: {"car": 1.3, "transit": 1.5})
    speed_kmh: Mapping[str, float] = field(default_factory=lambda: {"car": 50.0, "transit": 25.0})

    def estimate(self, great_circle_km: np.ndarray, mode: str) -> tuple[np.ndarray, np.ndarray]:
        """(travel km, minutes) for great-circle distances, elementwise."""
        km = great_circle_km * self.detour[mode]
        return km, km / self.speed_kmh[mode] * 60.0


def estimate_between(
    policy: DistancePolicy, start: Coordinates, end: Coordinates, mode: str
) -> tuple[float, float]:
    """(travel km, minutes) between two points by the policy's estimate."""
    km, minutes = policy.estimate(
        haversine_km(
            np.array([start.lat]), np.array([start.lon]), np.array([end.lat]), np.array([end.lon])
        ),
        mode,
    )
    return float(km[0]), float(minutes[0])


def centroid(points: Sequence[tuple[float, float]]) -> Coordinates:
    """The mean of (lat, lon) points, rounded to 6 decimals (about 0.1 m): the same places
    give the same centroid whatever their order, so a re-import changes nothing."""
    count = len(points)
    return Coordinates(
        round(math.fsum(lat for lat, _ in points) / count, 6),
        round(math.fsum(lon for _, lon in points) / count, 6),
    )


@dataclass(frozen=True)
class Location:
    """Where an entity was placed: coordinates with their precision and source, or why not."""

    resolved: bool
    lat: float | None = None
    lon: float | None = None
    precision: Literal["address", "plz"] | None = None
    source: str | None = None
    reason: str | None = None


UNKNOWN_POSTAL_CODE = "unknown_postal_code"


def location_by_centroid(centroid_of_plz: Coordinates | None) -> Location:
    """A location at the PLZ centroid, or unresolved when the PLZ is not known."""
    if centroid_of_plz is None:
        return Location(resolved=False, reason=UNKNOWN_POSTAL_CODE)
    return Location(
        resolved=True,
        lat=centroid_of_plz.lat,
        lon=centroid_of_plz.lon,
        precision="plz",
        source="plz_centroid",
    )


def retry_delay_seconds(attempts: int, base: float = 60.0, cap: float = 3600.0) -> float:
    """Back-off before the next attempt at an address the geocoder could not answer."""
    return min(cap, base * 2 ** max(attempts - 1, 0))


def provider_backoff_seconds(
    failures: int, retry_after: float | None, base: float, cap: float
) -> float:
    """Pause of the address loop after `failures` failures of the geocoder in a row: the
    provider's Retry-After when it sent one, else doubling from `base`; at most `cap`."""
    if retry_after is not None and retry_after >= 0:
        return min(cap, retry_after)
    return min(cap, base * 2 ** max(failures - 1, 0))
