"""Hard constraints (business-rules.md §6) on columns, without materialising every eligible pair.

Patients sit at postal-code centroids, so the unit of the spatial work is a distinct patient
location: the grid index is queried once per location (radius: the largest limit there), which
gives location pairs (location, therapist, squared chord). From them:

- `degree`: eligible patients per therapist, counted per location pair from prefix counts of
  the location's patients grouped by travel limit, per therapist profile (no patient pairs);
- `nearest`: per patient the nearest `candidate_limit` eligible therapists of a given set,
  scanning the location's distance-sorted pairs in windows;
- `pairs_of`: every eligible pair of a few patients or a few therapists (explanations,
  colleague fallback).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .columns import NO_AGE_MAX, NO_AGE_MIN, SearchColumns, TherapistColumns
from .geo import EARTH_RADIUS_KM, GridIndex, chord_squared_limit, unit_vectors
from .model import TRAVEL_MODES, BundleConfig, Id, id_sort_key

# A computed distance must stay this far below the limit (as in eligibility.py).
_DISTANCE_EPSILON_KM = 1e-6
# Location pairs per grid chunk (bounds temporary memory).
_CHUNK_PAIRS = 2_000_000
# Searches whose first candidate window is checked at once (bounds temporary memory).
_WINDOW_BLOCK = 8192
# Distinct patient x therapist schedules up to this many pairs: overlap from a table.
_OVERLAP_TABLE_LIMIT = 4_000_000


def id_order(ids: list[Id]) -> np.ndarray:
    """Indices that sort ids by `id_sort_key` (ints by value, then strings)."""
    if ids and all(type(i) is str for i in ids):
        return np.argsort(np.array(ids, dtype=str), kind="stable")
    if ids and all(type(i) is int for i in ids):
        return np.argsort(np.array(ids, dtype=np.int64), kind="stable")
    return np.array(sorted(range(len(ids)), key=lambda i: id_sort_key(ids[i])), dtype=np.int64)


def _ranks(order: np.ndarray) -> np.ndarray:
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    return rank


def ages_on(birth: np.ndarray, today: date) -> np.ndarray:
    """Whole years on `today` per yyyymmdd birth date; -1 unknown (or born later)."""
    years = today.year - birth // 10000 - ((birth % 10000) > today.month * 100 + today.day)
    return np.where((birth > 0) & (years >= 0), years, -1).astype(np.int64)


@dataclass
class Market:
    """Searches in priority order, therapists in id order, and the spatial pairs between them.

    Index p is a search's rank (longest wait first, then earlier `waiting_since`, then id);
    index t a therapist's rank by id. Every tie-break uses these indices.
    """

    s: SearchColumns
    t: TherapistColumns
    s_rows: np.ndarray  # priority rank -> input row
    t_rows: np.ndarray  # id rank -> input row
    wait_days: np.ndarray
    budget: np.ndarray
    located: np.ndarray
    t_usable: np.ndarray
    practice: np.ndarray  # int code per therapist
    limit: np.ndarray  # squared chord limit per search (0 when inactive)
    detour: np.ndarray
    s_prof: np.ndarray
    t_prof: np.ndarray
    table: np.ndarray  # bool s-profile x t-profile
    s_loc: np.ndarray  # location per search, -1 inactive
    loc_start: np.ndarray  # location pairs of location l: [loc_start[l], loc_start[l + 1])
    l_t: np.ndarray  # therapist of each location pair
    l_c2: np.ndarray  # squared unit chord
    loc_search_start: np.ndarray  # searches of location l: loc_searches[...]
    loc_searches: np.ndarray
    excl_p: np.ndarray  # excluded (search, therapist) pairs, both in rank order
    excl_t: np.ndarray
    t_open: np.ndarray
    s_avail: np.ndarray
    t_hours: np.ndarray
    _overlap_table: np.ndarray | None = None
    _s_pattern: np.ndarray | None = None
    _t_pattern: np.ndarray | None = None

    @property
    def n_s(self) -> int:
        """Number of searches."""
        return len(self.s_rows)

    @property
    def n_t(self) -> int:
        """Number of therapists."""
        return len(self.t_rows)

    def pair_location(self) -> np.ndarray:
        """Location of each location pair."""
        n_loc = len(self.loc_start) - 1
        return np.repeat(np.arange(n_loc, dtype=np.int64), np.diff(self.loc_start))

    def overlap(self, p: np.ndarray, t: np.ndarray) -> np.ndarray:
        """Weekly overlap in 30-minute slots of given pairs; -1 where a side has no schedule.

        Schedules repeat (a few hundred distinct ones), so the overlap is a lookup in a
        table of distinct patient schedules x distinct therapist schedules.
        """
        if self._overlap_table is None:
            s_pat, s_inv = _unique_rows(self.s_avail)
            t_pat, t_inv = _unique_rows(self.t_hours)
            self._s_pattern, self._t_pattern = s_inv.reshape(-1), t_inv.reshape(-1)
            if len(s_pat) * len(t_pat) <= _OVERLAP_TABLE_LIMIT:
                both = s_pat[:, None, :] & t_pat[None, :, :]
                table = np.bitwise_count(both).sum(axis=2, dtype=np.int16)
                table[~s_pat.any(axis=1), :] = -1
                table[:, ~t_pat.any(axis=1)] = -1
                self._overlap_table = table
            else:
                self._overlap_table = np.zeros((0, 0), dtype=np.int16)
        if self._overlap_table.size and self._s_pattern is not None and self._t_pattern is not None:
            # one flat index: a single-index gather is quicker than a two-index one
            at = self._s_pattern[p] * self._overlap_table.shape[1]
            at += self._t_pattern[t]
            return self._overlap_table.ravel()[at]
        out = np.full(len(p), -1, dtype=np.int16)
        known = self.s_avail[p].any(axis=1) & self.t_hours[t].any(axis=1)
        if known.any():
            both = self.s_avail[p[known]] & self.t_hours[t[known]]
            out[known] = np.bitwise_count(both).sum(axis=1, dtype=np.int16)
        return out


def _unique_rows(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct rows of a uint64 matrix and the row index of each (hash, then verified)."""
    weights = np.array([0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9,
                        0xD6E8FEB86659FD93, 0xFF51AFD7ED558CCD, 0x94D049BB133111EB],
                       dtype=np.uint64)  # fmt: skip
    if rows.shape[1] <= len(weights) and len(rows):
        h = (rows * weights[: rows.shape[1]]).sum(axis=1, dtype=np.uint64)
        _, first, inverse = np.unique(h, return_index=True, return_inverse=True)
        inverse = inverse.reshape(-1)
        if np.array_equal(rows[first][inverse], rows):
            return rows[first], inverse
    uniq, inverse = np.unique(rows, axis=0, return_inverse=True)
    return uniq, inverse.reshape(-1)


def build_market(
    s: SearchColumns, t: TherapistColumns, config: BundleConfig, today: date
) -> Market:
    """Order both sides, compute profiles and query the grid once per patient location."""
    wait = np.maximum(today.toordinal() - s.waiting_day, 0)
    s_rows = np.lexsort((_ranks(id_order(s.search_id)), s.waiting_at, -wait))
    t_rows = id_order(t.therapist_id)
    wait = wait[s_rows]
    lat, lon = s.lat[s_rows], s.lon[s_rows]
    located = ~(np.isnan(lat) | np.isnan(lon))
    budget = np.clip(
        np.minimum(s.contact_budget[s_rows], config.max_inquiries_per_patient), 0, None
    )
    t_lat, t_lon = t.lat[t_rows], t.lon[t_rows]
    t_usable = t.contactable[t_rows] & ~(np.isnan(t_lat) | np.isnan(t_lon))
    # practices numbered by first appearance (only equality is used; sorting the strings cost more)
    codes: dict[str, int] = {}
    keys = t.practice_key
    practice = np.fromiter(
        (codes.setdefault(keys[j], len(codes)) for j in t_rows.tolist()), np.int64, len(t_rows)
    )
    modes = s.travel_mode[s_rows]
    factors = np.array(
        [config.detour_factor.get(m, np.nan) for m in TRAVEL_MODES], dtype=np.float64
    )
    detour = factors[modes]
    active = located & (budget > 0)
    limit = np.zeros(len(s_rows))
    limit[active] = chord_squared_limit(
        (s.max_travel_km[s_rows][active] - _DISTANCE_EPSILON_KM) / detour[active]
    )
    s_prof, t_prof, table = _profiles(s, t, s_rows, t_rows, t_usable, today)
    excl_p, excl_t = _exclusions(s, t, s_rows, t_rows)
    market = Market(
        s=s, t=t, s_rows=s_rows, t_rows=t_rows, wait_days=wait.astype(np.int64),
        budget=budget.astype(np.int64), located=located, t_usable=t_usable,
        practice=practice.reshape(-1), limit=limit, detour=detour, s_prof=s_prof,
        t_prof=t_prof, table=table, s_loc=np.full(len(s_rows), -1, dtype=np.int64),
        loc_start=np.zeros(1, dtype=np.int64), l_t=np.zeros(0, dtype=np.int32),
        l_c2=np.zeros(0), loc_search_start=np.zeros(1, dtype=np.int64),
        loc_searches=np.zeros(0, dtype=np.int64), excl_p=excl_p, excl_t=excl_t,
        t_open=t.openness[t_rows], s_avail=s.availability[s_rows], t_hours=t.hours[t_rows],
    )  # fmt: skip
    _locate(market, lat, lon, t_lat, t_lon, active)
    return market


def _locate(
    m: Market, lat: np.ndarray, lon: np.ndarray, t_lat: np.ndarray, t_lon: np.ndarray,
    active: np.ndarray,
) -> None:  # fmt: skip
    """Location pairs within each location's largest limit, grouped by location."""
    s_idx = np.flatnonzero(active)
    t_idx = np.flatnonzero(m.t_usable)
    if len(s_idx) == 0:
        return
    # distinct (lat, lon) points: one complex number each sorts by lat, then lon
    points = lat[s_idx] + 1j * lon[s_idx]
    uniq, inverse = np.unique(points, return_inverse=True)
    locs = np.stack([uniq.real, uniq.imag], axis=1)
    inverse = inverse.reshape(-1)
    m.s_loc[s_idx] = inverse
    by_loc = np.argsort(inverse, kind="stable")
    m.loc_searches = s_idx[by_loc]
    m.loc_search_start = np.searchsorted(inverse[by_loc], np.arange(len(locs) + 1))
    loc_limit = np.zeros(len(locs))
    np.maximum.at(loc_limit, inverse, m.limit[s_idx])
    if len(t_idx) == 0:
        m.loc_start = np.zeros(len(locs) + 1, dtype=np.int64)
        return
    loc_radius = 2.0 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(loc_limit) * 0.5) + 1e-3
    grid = GridIndex(t_lat[t_idx], t_lon[t_idx], max(2.0, float(np.median(loc_radius)) / 2.0))
    # therapists in grid order: each cell's points are contiguous (int32, as pairs keep them)
    t_grid = t_idx[grid.order].astype(np.int32)
    tx, ty, tz = unit_vectors(t_lat[t_grid], t_lon[t_grid]).T.copy()
    lx, ly, lz = unit_vectors(locs[:, 0], locs[:, 1]).T.copy()
    per_loc = np.zeros(len(locs), dtype=np.int64)
    parts_t, parts_c2 = [], []
    for qr, run, pos in grid.candidate_runs(
        locs[:, 0], locs[:, 1], loc_radius, _CHUNK_PAIRS, grid_order=True
    ):
        # each location's coordinates repeated onto its runs (cheaper than a gather per
        # pair), differences squared in place
        c2 = np.repeat(lx[qr], run)
        c2 -= tx[pos]
        np.square(c2, out=c2)
        for lv, tv in ((ly, ty), (lz, tz)):
            d = np.repeat(lv[qr], run)
            d -= tv[pos]
            np.square(d, out=d)
            c2 += d
        keep = np.flatnonzero(c2 <= np.repeat(loc_limit[qr], run))
        # pairs kept per run (kept positions before each run's end), added per location
        kept = np.diff(np.searchsorted(keep, np.cumsum(run)), prepend=0)
        np.add.at(per_loc, qr, kept)
        parts_t.append(t_grid[pos[keep]])
        parts_c2.append(c2[keep])
    # Chunks come location-major, so pairs are grouped by location already.
    m.loc_start = np.zeros(len(locs) + 1, dtype=np.int64)
    np.cumsum(per_loc, out=m.loc_start[1:])
    m.l_t = np.concatenate(parts_t) if parts_t else np.zeros(0, dtype=np.int32)
    m.l_c2 = np.concatenate(parts_c2) if parts_c2 else np.zeros(0)


def _profiles(
    s: SearchColumns, t: TherapistColumns, s_rows: np.ndarray, t_rows: np.ndarray,
    t_usable: np.ndarray, today: date,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
    """Profile per search and therapist and the profile compatibility table (business-rules.md
    §6: gender both ways, method, age range, diagnosis prefixes, group therapy)."""
    amin, amax = t.age_min[t_rows].astype(np.int64), t.age_max[t_rows].astype(np.int64)
    bounds = np.unique(np.concatenate([amin[t_usable], amax[t_usable] + 1, [0]]))
    age = ages_on(s.birth[s_rows], today)
    bucket = np.where(age >= 0, np.searchsorted(bounds, age, side="right"), -1) + 1
    diag = s.diagnosis[s_rows].astype(np.int64)
    pg = s.preferred_therapist_gender[s_rows].astype(np.int64)
    method = s.preferred_method[s_rows].astype(np.int64)
    gender = s.gender[s_rows].astype(np.int64)
    group = s.open_to_group_therapy[s_rows].astype(np.int64)
    key = ((((pg * 5 + method) * (len(bounds) + 2) + bucket) * 5 + gender) * 2 + group) * (
        max(len(s.diagnoses), 1)
    ) + diag
    _, first, s_prof = np.unique(key, return_index=True, return_inverse=True)

    tg = t.gender[t_rows].astype(np.int64)
    tmask = t.methods[t_rows].astype(np.int64)
    tpref = t.preferred_patient_gender[t_rows].astype(np.int64)
    tgroup = t.prefers_group_therapy[t_rows].astype(np.int64)
    prefset = t.diagnosis_prefixes[t_rows].astype(np.int64)
    ages = np.unique(np.stack([amin, amax], axis=1), axis=0, return_inverse=True)[1].reshape(-1)
    n_sets = max(len(t.prefix_sets), 1)
    t_key = ((((tg * 32 + tmask) * 5 + tpref) * 2 + tgroup) * n_sets + prefset) * (
        int(ages.max()) + 1 if len(ages) else 1
    ) + ages
    _, t_first, t_prof = np.unique(t_key, return_index=True, return_inverse=True)

    compat = np.array(
        [
            [not ps or (d is not None and any(d.startswith(x) for x in ps)) for ps in t.prefix_sets]
            for d in s.diagnoses
        ],
        dtype=bool,
    ).reshape(len(s.diagnoses), len(t.prefix_sets))
    sp, tp = first, t_first
    a = age[sp][:, None]
    lo, hi = amin[tp][None, :], amax[tp][None, :]
    no_limit = (lo == NO_AGE_MIN) & (hi == NO_AGE_MAX)
    table = (pg[sp][:, None] == 0) | (pg[sp][:, None] == tg[tp][None, :])
    table &= (method[sp][:, None] == 0) | (((tmask[tp][None, :] >> method[sp][:, None]) & 1) == 1)
    table &= no_limit | ((a >= 0) & (a >= lo) & (a <= hi))
    table &= (tpref[tp][None, :] == 0) | (tpref[tp][None, :] == gender[sp][:, None])
    if compat.size:
        table &= compat[diag[sp][:, None], prefset[tp][None, :]]
    table &= (tgroup[tp][None, :] == 0) | (group[sp][:, None] == 1)
    return s_prof.reshape(-1).astype(np.int32), t_prof.reshape(-1).astype(np.int32), table


def _exclusions(
    s: SearchColumns, t: TherapistColumns, s_rows: np.ndarray, t_rows: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Excluded (search rank, therapist rank) pairs naming a therapist of the run."""
    if not s.excluded_ids:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    t_rank = _ranks(t_rows)
    where = {tid: int(t_rank[j]) for j, tid in enumerate(t.therapist_id)}
    counts = np.diff(s.excluded_start)
    p_rank = np.repeat(_ranks(s_rows), counts)
    ts = np.array([where.get(tid, -1) for tid in s.excluded_ids], dtype=np.int64)
    known = ts >= 0
    return p_rank[known], ts[known]


def _exclusion_hits(m: Market, p: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Which of the given pairs are excluded by the search."""
    hits = np.zeros(len(p), dtype=bool)
    if len(m.excl_p) == 0 or len(p) == 0:
        return hits
    has = np.zeros(m.n_s, dtype=bool)
    has[m.excl_p] = True
    check = np.flatnonzero(has[p])
    keys = np.unique(m.excl_p * m.n_t + m.excl_t)
    hits[check] = np.isin(p[check].astype(np.int64) * m.n_t + t[check], keys)
    return hits


def degree(m: Market) -> np.ndarray:
    """Eligible patients (located, with budget) per therapist, without listing the pairs.

    The patients of a location are grouped by their travel limit (largest first); for each
    group and therapist profile a running count of compatible patients is kept, so a
    location pair adds the count of the last group whose limit still reaches the therapist.
    """
    deg = np.zeros(m.n_t, dtype=np.int64)
    n_loc = len(m.loc_start) - 1
    if n_loc <= 0 or len(m.l_t) == 0:
        return deg
    ps = m.loc_searches
    loc = m.s_loc[ps]
    order = np.lexsort((-m.limit[ps], loc))
    ps, loc = ps[order], loc[order]
    lim = m.limit[ps]
    new = np.ones(len(ps), dtype=bool)
    new[1:] = (loc[1:] != loc[:-1]) | (lim[1:] != lim[:-1])
    g_start = np.flatnonzero(new)
    g_loc, g_lim = loc[g_start], lim[g_start]
    n_tp = m.table.shape[1]
    # running count over patients (location-major, largest limit first) of those compatible
    # with each therapist profile, kept at the last patient of every group
    g_end = np.r_[g_start[1:], len(ps)] - 1
    # Counts wrap around in the narrowest type that holds a location's patients: only
    # differences within one location are used, and they are exact modulo 2^bits.
    most = int(np.diff(m.loc_search_start).max())
    kind = np.uint8 if most < 2**8 else np.uint16 if most < 2**16 else np.int64
    # row g + 1: the count after group g; row 0 stays zero (before the first group)
    counts = np.zeros((len(g_start) + 1, n_tp), dtype=kind)
    carry = np.zeros(n_tp, dtype=kind)
    step = max(1, 8_000_000 // max(n_tp, 1))
    as_kind = m.table.astype(kind)
    for a in range(0, len(ps), step):
        run = as_kind[m.s_prof[ps[a : a + step]]]
        run[0] += carry
        np.cumsum(run, axis=0, out=run)
        g = np.flatnonzero((g_end >= a) & (g_end < a + step))
        counts[g + 1] = run[g_end[g] - a]
        carry = run[-1]
    loc_first = np.searchsorted(g_loc, np.arange(n_loc + 1))
    # per location pair: the last group of its location whose limit reaches the therapist,
    # looked up by (location, rank of the limit among the distinct limits) in a table of
    # the last group up to each rank (-1: none; groups ascend with the rank per location)
    limits = np.unique(g_lim)
    top = len(limits) - 1
    last_up_to = np.full((n_loc, len(limits) + 1), -1, dtype=np.int64)
    last_up_to[g_loc, top - np.searchsorted(limits, g_lim) + 1] = np.arange(len(g_loc))
    np.maximum.accumulate(last_up_to, axis=1, out=last_up_to)
    # values per location repeated onto its pairs (cheaper than gathering by location)
    per_loc = np.diff(m.loc_start)
    at = np.repeat(np.arange(n_loc, dtype=np.int64) * (len(limits) + 1) + top + 1, per_loc)
    at -= np.searchsorted(limits, m.l_c2)  # column of rank r is r + 1; -1 (beyond all) is 0
    last = last_up_to.ravel()[at]
    first = np.repeat(loc_first[:-1], per_loc)
    # A location's pairs lie within its largest limit, so all of them reach one of its
    # groups (the same float values): the gather is a guard that does not run.
    l_t = m.l_t
    reach = np.flatnonzero(last >= first)
    if len(reach) < len(last):
        last, first, l_t = last[reach], first[reach], l_t[reach]
    # count after the last group minus the count before the location's first, flat indices
    flat = counts.ravel()
    tp = m.t_prof.astype(np.int64)[l_t]
    last += 1
    last *= n_tp
    last += tp
    first *= n_tp
    first += tp
    value = flat[last]
    value -= flat[first]
    np.add.at(deg, l_t, value.astype(np.int64))
    if len(m.excl_p):
        p, t = m.excl_p, m.excl_t
        ok = eligible_mask(m, p, t, check_exclusions=False)
        np.subtract.at(deg, t[ok], 1)
    return deg


def chord2(m: Market, p: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Squared unit chord between searches and therapists (given pairs)."""
    s_lat, s_lon = m.s.lat[m.s_rows[p]], m.s.lon[m.s_rows[p]]
    t_lat, t_lon = m.t.lat[m.t_rows[t]], m.t.lon[m.t_rows[t]]
    diff = unit_vectors(s_lat, s_lon) - unit_vectors(t_lat, t_lon)
    return np.einsum("ij,ij->i", diff, diff)


def eligible_mask(
    m: Market, p: np.ndarray, t: np.ndarray, check_exclusions: bool = True
) -> np.ndarray:
    """Which given (search, therapist) pairs pass every hard constraint."""
    ok = (m.s_loc[p] >= 0) & m.t_usable[t]
    if ok.any():
        ok[ok] = chord2(m, p[ok], t[ok]) <= m.limit[p[ok]]
    ok &= m.table[m.s_prof[p], m.t_prof[t]]
    if check_exclusions:
        ok &= ~_exclusion_hits(m, p, t)
    return ok


def _patient_pairs(m: Market, ps: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All location pairs of the given searches (search, therapist, chord^2), search-major."""
    loc = m.s_loc[ps]
    a, b = m.loc_start[loc], m.loc_start[loc + 1]
    lengths = b - a
    p = np.repeat(ps, lengths)
    pos = np.repeat(a - (np.cumsum(lengths) - lengths), lengths) + np.arange(int(lengths.sum()))
    return p, m.l_t[pos].astype(np.int64), m.l_c2[pos]


def reason_counts(m: Market, ps: np.ndarray) -> tuple[np.ndarray, ...]:
    """For given active searches: therapists in range, matching preferences, eligible."""
    p, t, c2 = _patient_pairs(m, ps)
    local = np.searchsorted(ps, p) if len(ps) else p
    in_range = c2 <= m.limit[p]
    pref = in_range & m.table[m.s_prof[p], m.t_prof[t]]
    elig = pref & ~_exclusion_hits(m, p, t)
    n = len(ps)
    return (
        np.bincount(local[in_range], minlength=n),
        np.bincount(local[pref], minlength=n),
        np.bincount(local[elig], minlength=n),
        local[elig],
        t[elig],
    )


def therapist_pairs(m: Market, ts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every eligible (search, therapist) pair of the given therapists, by therapist then
    search."""
    is_t = np.zeros(m.n_t, dtype=bool)
    is_t[ts] = True
    sel = np.flatnonzero(is_t[m.l_t])
    if len(sel) == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    l_loc = m.pair_location()[sel]
    a, b = m.loc_search_start[l_loc], m.loc_search_start[l_loc + 1]
    lengths = b - a
    pos = np.repeat(a - (np.cumsum(lengths) - lengths), lengths) + np.arange(int(lengths.sum()))
    p = m.loc_searches[pos]
    t = np.repeat(m.l_t[sel].astype(np.int64), lengths)
    c2 = np.repeat(m.l_c2[sel], lengths)
    keep = (c2 <= m.limit[p]) & m.table[m.s_prof[p], m.t_prof[t]]
    p, t = p[keep], t[keep]
    keep = ~_exclusion_hits(m, p, t)
    p, t = p[keep], t[keep]
    order = np.lexsort((p, t))
    return p[order], t[order]


def nearest(
    m: Market, allowed: np.ndarray, limit: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per active search the nearest `limit` eligible therapists among `allowed`.

    Returns (search, therapist, chord^2), search-major and nearest first (ties: therapist
    index); therapists as int32. Each search scans its location's distance-sorted pairs in
    windows, so a patient who can reach thousands of therapists checks about `limit` of them.
    """
    sel = np.flatnonzero(allowed[m.l_t])
    if len(sel) == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int32), np.zeros(0)
    n_loc = len(m.loc_start) - 1
    # location pairs are grouped by location: the selected ones of location l start at
    # the number selected before its first pair
    start = np.searchsorted(sel, m.loc_start)
    l_loc = np.repeat(np.arange(n_loc, dtype=np.int64), np.diff(start))
    # One float key orders each location's pairs by distance (chord^2 <= 4 keeps locations
    # apart). Equal distances (colleagues at one address) stay in an order fixed by the
    # canonical input order, so the result does not depend on the caller's order.
    key = l_loc * 8.0 + m.l_c2[sel]
    order = np.argsort(key)
    sel = sel[order]
    c2 = m.l_c2[sel]
    # the order moves pairs within their location only: the sorted key from the sorted chords
    key = l_loc * 8.0
    key += c2
    t_sorted = m.l_t[sel]
    tp_sorted = m.t_prof[t_sorted]
    ps = np.flatnonzero(m.s_loc >= 0)
    loc = m.s_loc[ps]
    first, end = start[loc], start[loc + 1]
    lim = m.limit[ps]
    # needles in ascending order: neighbouring binary searches touch the same memory
    # (several times faster than searching 3 M keys in priority order)
    needle = loc * 8.0 + lim
    by_needle = np.argsort(needle)
    stop = np.empty(len(ps), dtype=np.int64)
    stop[by_needle] = np.searchsorted(key, needle[by_needle], side="right")
    np.clip(stop, first, end, out=stop)
    while True:
        # the float key can round across a limit: step to the exact prefix end
        back = (stop > first) & (c2[np.maximum(stop - 1, 0)] > lim)
        ahead = (stop < end) & (c2[np.minimum(stop, len(c2) - 1)] <= lim)
        if not (back.any() or ahead.any()):
            break
        stop = stop - back + (ahead & ~back)
    flat = m.table.ravel()
    row = m.s_prof[ps].astype(np.int64) * m.table.shape[1]
    window = max(limit + limit // 2, 16)
    # First window of every search as the rows of a matrix: ranks are a cumulative sum
    # along each row, and the kept entries come out search-major, nearest first. The rows
    # are copied from a sliding view of the profiles (padded past the end), not gathered.
    span = np.minimum(stop - first, window)
    cols = np.arange(window)
    padded = np.concatenate([tp_sorted, np.zeros(window, dtype=tp_sorted.dtype)])
    rows_of = sliding_window_view(padded, window)
    ok2 = np.empty((len(ps), window), dtype=bool)
    # in blocks of searches: the table indexes of a block are small enough to reuse memory
    for a in range(0, len(ps), _WINDOW_BLOCK):
        at = row[a : a + _WINDOW_BLOCK, None] + rows_of[first[a : a + _WINDOW_BLOCK]]
        np.take(flat, at, out=ok2[a : a + _WINDOW_BLOCK], mode="clip")
    short = np.flatnonzero(span < window)
    ok2[short] &= cols[None, :] < span[short, None]
    if len(m.excl_p):
        has = np.zeros(m.n_s, dtype=bool)
        has[m.excl_p] = True
        rows = np.flatnonzero(has[ps])
        if len(rows):
            sub_p = np.repeat(ps[rows], window)
            sub_pos = np.minimum(first[rows, None] + cols[None, :], max(len(key) - 1, 0))
            sub_t = t_sorted[sub_pos].reshape(-1).astype(np.int64)
            ok2[rows] &= ~_exclusion_hits(m, sub_p, sub_t).reshape(len(rows), window)
    # ranks in the narrowest type that holds a window (less memory to sum and compare)
    small: type[np.signedinteger] = np.int8 if window < 2**7 else np.int32
    rank2 = np.cumsum(ok2, axis=1, dtype=small)
    ok2 &= rank2 <= limit
    found = np.minimum(rank2[:, -1], limit).astype(np.int64)
    # kept entry k of row i lies at position first[i] + k - i * window
    kept = np.flatnonzero(ok2)
    kept += np.repeat(first - np.arange(0, len(ps) * window, window), found)
    later_p, later_pos, later_rank = [], [], []
    cursor = first + span
    window *= 4
    todo = np.flatnonzero((found < limit) & (cursor < stop))
    while len(todo):
        a = cursor[todo]
        b = np.minimum(stop[todo], a + window)
        lengths = b - a
        total = int(lengths.sum())
        index: type[np.signedinteger] = np.int32 if max(total, len(key)) < 2**31 else np.int64
        local = np.repeat(todo.astype(index), lengths)
        pos: np.ndarray = np.arange(total, dtype=index)
        pos += np.repeat((a - (np.cumsum(lengths) - lengths)).astype(index), lengths)
        ok = flat[row[local] + tp_sorted[pos]]
        if len(m.excl_p):
            ok &= ~_exclusion_hits(m, ps[local], t_sorted[pos].astype(np.int64))
        local, pos = local[ok], pos[ok]
        # rank within the search, after what earlier windows found
        count = np.bincount(local, minlength=len(ps))
        run = np.arange(len(local)) - (np.cumsum(count) - count)[local]
        rank = run + found[local]
        keep = rank < limit
        later_p.append(local[keep])
        later_pos.append(pos[keep])
        later_rank.append(rank[keep])
        found += np.minimum(count, limit - found)
        cursor[todo] = b
        todo = todo[(found[todo] < limit) & (cursor[todo] < stop[todo])]
        window *= 4
    if later_p:
        # later windows lie farther out: their pairs go to their search's start + rank,
        # the first window's fill the places left, in order
        start_of = np.cumsum(found) - found
        at = start_of[np.concatenate(later_p)] + np.concatenate(later_rank)
        pos = np.empty(int(found.sum()), dtype=np.int64)
        rest = np.ones(len(pos), dtype=bool)
        rest[at] = False
        pos[rest] = kept
        pos[at] = np.concatenate(later_pos)
    else:
        pos = kept
    return np.repeat(ps, found), t_sorted[pos], c2[pos]
