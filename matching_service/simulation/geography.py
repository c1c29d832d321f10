"""Where people live: German postal-code centroids from ../shared/data, or a synthetic map."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..bundling.geo import haversine_km

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_ZIPCODES = REPO_ROOT.parent / "shared" / "data" / "zipcodes.de.csv"
# A community with at least this many postal codes counts as a city, where therapists
# cluster (assumption: therapist density in large cities is about twice the average).
CITY_MIN_POSTAL_CODES = 10
CITY_THERAPIST_WEIGHT = 2.0


@dataclass(frozen=True)
class PostalAreas:
    """One row per postal code: centroid and whether it lies in a city."""

    codes: list[str]
    lat: np.ndarray
    lon: np.ndarray
    city: np.ndarray
    source: str

    def __len__(self) -> int:
        return len(self.codes)

    def nearest(self, lat: float, lon: float, count: int) -> PostalAreas:
        """The count postal areas closest to a point (a region around a city)."""
        d = haversine_km(np.full(len(self), lat), np.full(len(self), lon), self.lat, self.lon)
        pick = np.sort(np.argsort(d, kind="stable")[: max(count, 1)])
        return PostalAreas(
            [self.codes[i] for i in pick],
            self.lat[pick],
            self.lon[pick],
            self.city[pick],
            self.source,
        )

    def therapist_weights(self) -> np.ndarray:
        """Sampling weights for practices: cities get more per postal area."""
        w = np.where(self.city, CITY_THERAPIST_WEIGHT, 1.0)
        return w / w.sum()


def load_postal_areas(path: Path | None = None) -> PostalAreas | None:
    """Centroids per postal code from a GeoNames-derived CSV; None when the file is missing."""
    path = path or DEFAULT_ZIPCODES
    if not path.is_file():
        return None
    coords: dict[str, list[tuple[float, float]]] = {}
    community: dict[str, str] = {}
    with path.open(encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle):
            try:
                point = (float(row["latitude"]), float(row["longitude"]))
            except (KeyError, ValueError):
                continue
            coords.setdefault(row["zipcode"], []).append(point)
            community.setdefault(row["zipcode"], row.get("community_code") or row["zipcode"])
    codes = sorted(coords)
    per_community: dict[str, int] = {}
    for code in codes:
        per_community[community[code]] = per_community.get(community[code], 0) + 1
    lat = np.array([np.mean([p[0] for p in coords[c]]) for c in codes])
    lon = np.array([np.mean([p[1] for p in coords[c]]) for c in codes])
    city = np.array([per_community[community[c]] >= CITY_MIN_POSTAL_CODES for c in codes])
    return PostalAreas(codes, lat, lon, city, f"postal codes ({path.name})")


def synthetic_areas(rng: np.random.Generator, count: int = 8000) -> PostalAreas:
    """A Germany-sized synthetic map: dense city clusters on a sparse countryside."""
    centres = rng.uniform([47.5, 6.5], [54.5, 14.5], size=(40, 2))
    in_city = rng.random(count) < 0.45
    which = rng.integers(0, len(centres), count)
    spread = np.where(in_city, 0.08, 0.0)[:, None]
    base = np.where(
        in_city[:, None], centres[which], rng.uniform([47.3, 6.0], [55.0, 15.0], (count, 2))
    )
    points = base + rng.normal(0.0, 1.0, (count, 2)) * spread
    codes = [f"{i:05d}" for i in range(count)]
    return PostalAreas(codes, points[:, 0], points[:, 1], in_city, "synthetic map")
