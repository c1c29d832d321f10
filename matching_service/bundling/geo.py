"""Great-circle distance (vectorised) and a lat/lon grid index that prunes candidate pairs."""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np

EARTH_RADIUS_KM = 6371.0088
KM_PER_DEGREE = EARTH_RADIUS_KM * math.pi / 180.0


def haversine_km(
    lat1: np.ndarray, lon1: np.ndarray, lat2: np.ndarray, lon2: np.ndarray
) -> np.ndarray:
    """Great-circle distance in km between coordinate arrays (degrees), elementwise."""
    p1, p2 = np.radians(lat1), np.radians(lat2)
    dphi = p2 - p1
    dlmb = np.radians(lon2) - np.radians(lon1)
    a = np.sin(dphi * 0.5) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dlmb * 0.5) ** 2
    return 2.0 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.minimum(a, 1.0)))


def unit_vectors(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """Points on the unit sphere (n x 3) for chord-length distance tests."""
    phi, lmb = np.radians(lat), np.radians(lon)
    return np.stack([np.cos(phi) * np.cos(lmb), np.cos(phi) * np.sin(lmb), np.sin(phi)], axis=1)


def chord_squared_limit(distance_km: np.ndarray) -> np.ndarray:
    """Squared unit-sphere chord of a great-circle distance: d <= D iff chord^2 <= this.

    The haversine term a = sin^2(d / 2R) equals chord^2 / 4, so comparing squared chords
    is the haversine test without any trigonometry per pair.
    """
    theta = np.minimum(np.maximum(distance_km, 0.0) / EARTH_RADIUS_KM, math.pi)
    return 4.0 * np.sin(theta * 0.5) ** 2


def ragged_arange(lengths: np.ndarray) -> np.ndarray:
    """Concatenation of arange(n) for every n in lengths, without a Python loop."""
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    starts = np.cumsum(lengths) - lengths
    return np.arange(total, dtype=np.int64) - np.repeat(starts, lengths)


class GridIndex:
    """Points bucketed into lat/lon cells; a query returns the points of the covering cells."""

    def __init__(self, lat: np.ndarray, lon: np.ndarray, cell_km: float) -> None:
        self.size = len(lat)
        self.cell_lat = cell_km / KM_PER_DEGREE
        mid = float(np.mean(lat)) if self.size else 0.0
        self.cell_lon = self.cell_lat / max(math.cos(math.radians(mid)), 0.05)
        self.lat0 = float(lat.min()) if self.size else 0.0
        self.lon0 = float(lon.min()) if self.size else 0.0
        iy = np.floor((lat - self.lat0) / self.cell_lat).astype(np.int64)
        ix = np.floor((lon - self.lon0) / self.cell_lon).astype(np.int64)
        self.ny = int(iy.max()) + 1 if self.size else 0
        self.nx = int(ix.max()) + 1 if self.size else 0
        cells = iy * self.nx + ix
        self.order = np.argsort(cells, kind="stable")
        self.sorted_cells = cells[self.order]

    def _row_slices(
        self, lat: np.ndarray, lon: np.ndarray, radius_km: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per (query, grid row) the slice [a, b) of sorted points in its bounding box."""
        dlat = radius_km / KM_PER_DEGREE
        top = np.minimum(np.abs(lat) + dlat, 89.0)
        dlon = np.minimum(radius_km / (KM_PER_DEGREE * np.cos(np.radians(top))), 180.0)
        iy0 = np.floor((lat - dlat - self.lat0) / self.cell_lat).astype(np.int64)
        iy1 = np.floor((lat + dlat - self.lat0) / self.cell_lat).astype(np.int64)
        ix0 = np.floor((lon - dlon - self.lon0) / self.cell_lon).astype(np.int64)
        ix1 = np.floor((lon + dlon - self.lon0) / self.cell_lon).astype(np.int64)
        iy0, iy1 = np.maximum(iy0, 0), np.minimum(iy1, self.ny - 1)
        ix0, ix1 = np.maximum(ix0, 0), np.minimum(ix1, self.nx - 1)
        rows = np.where((iy1 >= iy0) & (ix1 >= ix0), iy1 - iy0 + 1, 0)
        query = np.repeat(np.arange(len(lat), dtype=np.int64), rows)
        row = iy0[query] + ragged_arange(rows)
        lo = np.searchsorted(self.sorted_cells, row * self.nx + ix0[query], side="left")
        hi = np.searchsorted(self.sorted_cells, row * self.nx + ix1[query], side="right")
        return query, lo, hi

    def candidate_chunks(
        self,
        lat: np.ndarray,
        lon: np.ndarray,
        radius_km: np.ndarray,
        max_pairs: int = 4_000_000,
        grid_order: bool = False,
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield (query index, point index) pairs in bounding-box range, query-major, chunked.

        With `grid_order` the second array holds positions in `order` (points sorted by
        cell: contiguous runs, cheaper to gather from arrays permuted the same way).
        """
        for query, lengths, pos in self.candidate_runs(lat, lon, radius_km, max_pairs, grid_order):
            yield np.repeat(query, lengths), pos

    def candidate_runs(
        self,
        lat: np.ndarray,
        lon: np.ndarray,
        radius_km: np.ndarray,
        max_pairs: int = 4_000_000,
        grid_order: bool = False,
    ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """As `candidate_chunks`, with the query index once per run: (query, run length,
        point index); a value per query repeats onto the pairs cheaper than it gathers."""
        if self.size == 0 or len(lat) == 0:
            return
        query, lo, hi = self._row_slices(lat, lon, radius_km)
        per_query = np.bincount(query, weights=hi - lo, minlength=len(lat)).astype(np.int64)
        ends = np.cumsum(per_query)
        start_q = 0
        while start_q < len(lat):
            base = ends[start_q - 1] if start_q else 0
            stop_q = int(np.searchsorted(ends, base + max_pairs, side="right"))
            stop_q = max(stop_q, start_q + 1)
            r0, r1 = np.searchsorted(query, [start_q, stop_q], side="left")
            lengths = hi[r0:r1] - lo[r0:r1]
            # lo + ragged_arange(lengths) with one repeat: arange plus each run's offset
            pos = np.arange(int(lengths.sum()), dtype=np.int64)
            pos += np.repeat(lo[r0:r1] - (np.cumsum(lengths) - lengths), lengths)
            yield query[r0:r1], lengths, pos if grid_order else self.order[pos]
            start_q = stop_q
