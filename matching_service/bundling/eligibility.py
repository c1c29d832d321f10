"""Vectorised hard constraints (business-rules.md §6) over the grid-pruned candidate pairs of a
run."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

import numpy as np

from .geo import (
    EARTH_RADIUS_KM,
    GridIndex,
    chord_squared_limit,
    haversine_km,
    unit_vectors,
)
from .model import METHODS, BundleConfig, Search, Therapist, Weekly, id_sort_key
from .openness import openness_levels
from .weekly import WORDS, weekly_mask

_GENDER_CODE = {"male": 1, "female": 2, "diverse": 3, "unspecified": 4}
# A computed distance must stay this far below the limit, so rounding never lets a pair
# through that an independent check with another formula would reject.
_DISTANCE_EPSILON_KM = 1e-6


def age_on(birth_date: date, today: date) -> int:
    """Age in whole years on a day."""
    before_birthday = (today.month, today.day) < (birth_date.month, birth_date.day)
    return today.year - birth_date.year - int(before_birthday)


def waiting_days(search: Search, today: date) -> int:
    """Whole days a search has waited on a day (never negative)."""
    return max((today - search.waiting_since.date()).days, 0)


def patient_budget(search: Search, config: BundleConfig) -> int:
    """Inquiries a search may join in this run."""
    return max(min(search.contact_budget, config.max_inquiries_per_patient), 0)


def diagnosis_matches(diagnosis: str | None, prefixes: Sequence[str]) -> bool:
    """Therapist diagnosis preference: empty list = any, else a prefix of the ICD-10 code."""
    if not prefixes:
        return True
    return diagnosis is not None and any(diagnosis.startswith(p) for p in prefixes)


def methods_mask(methods: Sequence[str]) -> int:
    """Bit i+1 set for each offered method; 'any' offers every method."""
    if "any" in methods:
        return 0b11110
    return sum(1 << (METHODS.index(m) + 1) for m in set(methods) if m in METHODS)


def _pref_code(value: str | None) -> int:
    return 0 if value in (None, "any") else _GENDER_CODE[value]


@dataclass
class Prepared:
    """Searches in priority order and therapists in id order, as column arrays."""

    searches: list[Search]
    therapists: list[Therapist]
    wait_days: np.ndarray
    budget: np.ndarray
    s_located: np.ndarray
    t_usable: np.ndarray
    practice: list[str]
    s_lat: np.ndarray
    s_lon: np.ndarray
    s_detour: np.ndarray
    s_avail: np.ndarray
    t_lat: np.ndarray
    t_lon: np.ndarray
    t_hours: np.ndarray
    # openness level per therapist (bundling/openness.py; zeros when history is not used)
    t_open: np.ndarray

    @property
    def s_has_avail(self) -> np.ndarray:
        """Searches with a weekly availability."""
        # asarray only narrows numpy's `bool | ndarray` return type; no copy is made.
        return np.asarray(self.s_avail.any(axis=1))

    @property
    def t_has_hours(self) -> np.ndarray:
        """Therapists with known working hours."""
        return np.asarray(self.t_hours.any(axis=1))


@dataclass
class Pairs:
    """Eligible pairs (patient-major) and per-patient counts for the reasons."""

    patient: np.ndarray
    therapist: np.ndarray
    distance_km: np.ndarray
    in_range: np.ndarray
    pref_ok: np.ndarray
    eligible: np.ndarray


def prepare(
    searches: Sequence[Search], therapists: Sequence[Therapist], config: BundleConfig, today: date
) -> Prepared:
    """Order searches by waiting time (longest first, then start, then id), therapists by id."""
    order = sorted(
        searches, key=lambda s: (-waiting_days(s, today), s.waiting_since, id_sort_key(s.search_id))
    )
    t_order = sorted(therapists, key=lambda t: id_sort_key(t.therapist_id))
    nan = float("nan")
    return Prepared(
        searches=order,
        therapists=t_order,
        wait_days=np.array([waiting_days(s, today) for s in order], dtype=np.int64),
        budget=np.array([patient_budget(s, config) for s in order], dtype=np.int64),
        s_located=np.array([s.lat is not None and s.lon is not None for s in order], dtype=bool),
        t_usable=np.array(
            [t.contactable and t.lat is not None and t.lon is not None for t in t_order],
            dtype=bool,
        ),
        practice=[
            t.practice_key if t.practice_key is not None else f"therapist:{t.therapist_id}"
            for t in t_order
        ],
        s_lat=np.array([nan if s.lat is None else s.lat for s in order], dtype=np.float64),
        s_lon=np.array([nan if s.lon is None else s.lon for s in order], dtype=np.float64),
        s_detour=np.array([config.detour_factor[s.travel_mode] for s in order], dtype=float),
        s_avail=_weekly_matrix([s.availability for s in order]),
        t_lat=np.array([nan if t.lat is None else t.lat for t in t_order], dtype=np.float64),
        t_lon=np.array([nan if t.lon is None else t.lon for t in t_order], dtype=np.float64),
        t_hours=_weekly_matrix([t.working_hours for t in t_order]),
        t_open=openness_levels(t_order, today, config.use_answer_history),
    )


def pair_details(prep: Prepared, p: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Travel distance (km, detour applied) and overlap slots (-1 unknown) of given pairs."""
    dist = haversine_km(prep.s_lat[p], prep.s_lon[p], prep.t_lat[t], prep.t_lon[t])
    return dist * prep.s_detour[p], pair_overlap(prep, p, t)


def pair_overlap(prep: Prepared, p: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Weekly overlap in 30-minute slots of given pairs; -1 where a side has no schedule."""
    overlap = np.full(len(p), -1, dtype=np.int16)
    known = prep.s_has_avail[p] & prep.t_has_hours[t]
    if known.any():
        both = prep.s_avail[p[known]] & prep.t_hours[t[known]]
        overlap[known] = np.bitwise_count(both).sum(axis=1, dtype=np.int16)
    return overlap


def _weekly_matrix(items: Sequence[Weekly | None]) -> np.ndarray:
    cache: dict[str, np.ndarray] = {}
    out = np.zeros((len(items), WORDS), dtype=np.uint64)
    for i, weekly in enumerate(items):
        if not weekly:
            continue
        key = repr(weekly)
        if key not in cache:
            cache[key] = weekly_mask(weekly)
        out[i] = cache[key]
    return out


def eligible_pairs(prep: Prepared, config: BundleConfig, today: date) -> Pairs:
    """All pairs passing every hard constraint.

    Patients are located at postal-code centroids, so many share a point: distances are
    computed once per (distinct location, therapist in its grid cells) and each patient
    takes the prefix of its location's distance-sorted list that its own limit allows.
    Preferences are compared through small profile tables instead of per-pair attributes.
    """
    n_s = len(prep.searches)
    in_range = np.zeros(n_s, dtype=np.int64)
    pref_ok = np.zeros(n_s, dtype=np.int64)
    eligible = np.zeros(n_s, dtype=np.int64)
    s_idx = np.flatnonzero(prep.s_located & (prep.budget > 0))
    t_idx = np.flatnonzero(prep.t_usable)
    empty = Pairs(
        np.zeros(0, np.int32), np.zeros(0, np.int32), np.zeros(0, np.float32),
        in_range, pref_ok, eligible,
    )  # fmt: skip
    if len(s_idx) == 0 or len(t_idx) == 0:
        return empty
    ss = [prep.searches[i] for i in s_idx]
    detour = prep.s_detour[s_idx]
    s_max = np.array([s.max_travel_km for s in ss], dtype=np.float64)
    limit = chord_squared_limit((s_max - _DISTANCE_EPSILON_KM) / detour)

    # Distinct patient locations and, per location, the largest limit of its patients.
    coords = np.stack([prep.s_lat[s_idx], prep.s_lon[s_idx]], axis=1)
    locs, s_loc = np.unique(coords, axis=0, return_inverse=True)
    s_loc = s_loc.reshape(-1)
    loc_limit = np.zeros(len(locs))
    np.maximum.at(loc_limit, s_loc, limit)
    loc_radius = 2.0 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(loc_limit) * 0.5) + 1e-3
    t_lat, t_lon = prep.t_lat[t_idx], prep.t_lon[t_idx]
    loc_vec, t_vec = unit_vectors(locs[:, 0], locs[:, 1]), unit_vectors(t_lat, t_lon)
    grid = GridIndex(t_lat, t_lon, max(2.0, float(np.median(loc_radius)) / 2.0))
    lp_loc, lp_t, lp_c2 = [], [], []
    for q, t in grid.candidate_chunks(locs[:, 0], locs[:, 1], loc_radius, 2_000_000):
        diff = loc_vec[q] - t_vec[t]
        c2 = np.einsum("ij,ij->i", diff, diff)
        keep = c2 <= loc_limit[q]
        lp_loc.append(q[keep])
        lp_t.append(t[keep].astype(np.int32))
        lp_c2.append(c2[keep])
    l_loc, l_t, l_c2 = np.concatenate(lp_loc), np.concatenate(lp_t), np.concatenate(lp_c2)
    if len(l_c2) == 0:
        return empty
    # One float key orders by location, then distance (chord^2 <= 4 keeps locations apart).
    key = l_loc * 8.0 + l_c2
    order = np.argsort(key)
    key, l_loc, l_t, l_c2 = key[order], l_loc[order], l_t[order], l_c2[order]
    loc_start = np.searchsorted(l_loc, np.arange(len(locs) + 1))

    # Per patient: its location's pairs up to its own limit (a sorted prefix).
    first, end = loc_start[s_loc], loc_start[s_loc + 1]
    stop = np.clip(np.searchsorted(key, s_loc * 8.0 + limit, side="right"), first, end)
    _exact_prefix(stop, first, end, l_c2, limit)
    lengths = stop - first
    local = np.repeat(np.arange(len(ss), dtype=np.int32), lengths)
    offsets = np.cumsum(lengths) - lengths
    index = np.int32 if len(l_c2) < 2**31 else np.int64
    pos = np.arange(int(lengths.sum()), dtype=index) + np.repeat(
        (first - offsets).astype(index), lengths
    )
    # The key rounds at about 1e-11: re-check every pair exactly against its own limit.
    exact = l_c2[pos] <= limit[local]
    local, pos = local[exact], pos[exact]
    in_range[s_idx] = np.bincount(local, minlength=len(ss))

    s_prof, t_prof, table = _profile_tables(ss, [prep.therapists[i] for i in t_idx], today)
    l_prof = t_prof[l_t]
    ok = table.ravel()[s_prof[local] * table.shape[1] + l_prof[pos]]
    local, pos = local[ok], pos[ok]
    t = l_t[pos]
    pref_ok[s_idx] = np.bincount(local, minlength=len(ss))

    excl_keys = _exclusion_keys(prep, s_idx, t_idx)
    if len(excl_keys):
        has_excl = np.array([bool(s.excluded_therapist_ids) for s in ss])
        check = has_excl[local]
        if check.any():
            bad = np.zeros(len(local), dtype=bool)
            keys = local[check].astype(np.int64) * len(t_idx) + t[check]
            bad[check] = np.isin(keys, excl_keys)
            local, pos, t = local[~bad], pos[~bad], t[~bad]
    eligible[s_idx] = np.bincount(local, minlength=len(ss))
    # Chord length stands in for the arc (relative error < 1e-5 within 100 km): this
    # distance only ranks candidates; reported distances are exact haversine values.
    dist = EARTH_RADIUS_KM * np.sqrt(l_c2[pos]) * detour[local]
    return Pairs(
        s_idx[local].astype(np.int32),
        t_idx[t].astype(np.int32),
        dist.astype(np.float32),
        in_range,
        pref_ok,
        eligible,
    )


def _exact_prefix(
    stop: np.ndarray, first: np.ndarray, end: np.ndarray, c2: np.ndarray, limit: np.ndarray
) -> None:
    """Correct prefix ends where the float search key rounded across a patient's limit."""
    while True:
        back = (stop > first) & (c2[np.maximum(stop - 1, 0)] > limit)
        ahead = (stop < end) & (c2[np.minimum(stop, len(c2) - 1)] <= limit)
        if not (back.any() or ahead.any()):
            return
        stop -= back
        stop += ahead & ~back


def _profile_tables(
    searches: Sequence[Search], therapists: Sequence[Therapist], today: date
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Profile id per search and therapist, and which profiles are compatible (business-rules.md
    §6)."""
    big = 10**6
    t_rows = [
        (
            _GENDER_CODE.get(t.gender, 4),
            methods_mask(t.therapy_methods),
            -big if t.patient_age_min is None else t.patient_age_min,
            big if t.patient_age_max is None else t.patient_age_max,
            _pref_code(t.preferred_patient_gender),
            tuple(sorted(set(t.preferred_diagnoses))),
            t.prefers_group_therapy,
        )
        for t in therapists
    ]
    # Ages only matter relative to the therapists' limits: bucket them by those limits.
    bounds = np.unique([r[2] for r in t_rows] + [r[3] + 1 for r in t_rows])
    ages = [-1 if s.birth_date is None else age_on(s.birth_date, today) for s in searches]
    s_rows = [
        (
            _pref_code(s.preferred_therapist_gender),
            0
            if s.preferred_therapy_method in (None, "any")
            else METHODS.index(s.preferred_therapy_method) + 1,
            -1 if age < 0 else int(np.searchsorted(bounds, age, side="right")),
            _GENDER_CODE.get(s.gender, 4),
            s.diagnosis,
            s.open_to_group_therapy,
        )
        for s, age in zip(searches, ages, strict=True)
    ]
    s_ids: dict[tuple, int] = {}
    t_ids: dict[tuple, int] = {}
    s_prof = np.array([s_ids.setdefault(k, len(s_ids)) for k in s_rows], dtype=np.int32)
    t_prof = np.array([t_ids.setdefault(k, len(t_ids)) for k in t_rows], dtype=np.int32)
    rep_age = np.zeros(len(s_ids), dtype=np.int64)
    rep_age[s_prof] = ages  # any patient of a profile stands for all of them
    sp = list(s_ids)
    tp = list(t_ids)
    prefsets = {k: i for i, k in enumerate(dict.fromkeys(r[5] for r in tp))}
    diags = {k: i for i, k in enumerate(dict.fromkeys(r[4] for r in sp))}
    compat = np.array(
        [[diagnosis_matches(d, ps) for ps in prefsets] for d in diags], dtype=bool
    ).reshape(len(diags), len(prefsets))

    def col(rows: list[tuple], i: int) -> np.ndarray:
        return np.array([r[i] for r in rows])

    pg, method, gender, group = col(sp, 0), col(sp, 1), col(sp, 3), col(sp, 5).astype(bool)
    diag = np.array([diags[r[4]] for r in sp])
    tg, tmask, amin, amax = col(tp, 0), col(tp, 1), col(tp, 2), col(tp, 3)
    tpref, tgroup = col(tp, 4), col(tp, 6).astype(bool)
    prefset = np.array([prefsets[r[5]] for r in tp])
    age = rep_age[:, None]
    table = (pg[:, None] == 0) | (pg[:, None] == tg[None, :])
    table &= (method[:, None] == 0) | (((tmask[None, :] >> method[:, None]) & 1) == 1)
    no_limit = (amin == -big) & (amax == big)
    table &= no_limit[None, :] | ((age >= 0) & (age >= amin[None, :]) & (age <= amax[None, :]))
    table &= (tpref[None, :] == 0) | (tpref[None, :] == gender[:, None])
    table &= compat[diag[:, None], prefset[None, :]]
    table &= ~tgroup[None, :] | group[:, None]
    return s_prof, t_prof, table


def _scatter_counts(s_idx: np.ndarray, q: np.ndarray, n_loc: int, n_s: int) -> np.ndarray:
    counts = np.zeros(n_s, dtype=np.int64)
    counts[s_idx] = np.bincount(q, minlength=n_loc)
    return counts


def _exclusion_keys(prep: Prepared, s_idx: np.ndarray, t_idx: np.ndarray) -> np.ndarray:
    """Sorted keys (local search * n_therapists + local therapist) of excluded pairs."""
    position = {prep.therapists[j].therapist_id: k for k, j in enumerate(t_idx)}
    keys = [
        local * len(t_idx) + position[tid]
        for local, i in enumerate(s_idx)
        for tid in prep.searches[i].excluded_therapist_ids
        if tid in position
    ]
    return np.array(sorted(keys), dtype=np.int64)
