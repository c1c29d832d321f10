"""The global strategy on columns: arrays in (`SearchColumns`, `TherapistColumns`), arrays out
(`ColumnResult`); objects only at the edges (`engine.py`).

Phases (business-rules.md §6; docs/matching-core.md explains them and their rationale):
1. eligible patients per therapist, counted per patient location (`candidates.degree`);
2. one representative per practice; therapists with fewer than the minimum drop out;
3. per patient the nearest `candidate_limit` eligible representatives, ordered by scarcity,
   overlap, distance band, openness, distance and id;
4. coverage round with augmenting paths, repair, parallel rounds (deferred acceptance on
   arrays), repair, colleague fallback.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from itertools import chain, pairwise

import numpy as np

from .assign_global import OPENNESS_BAND_KM, Assignment, _Solver
from .candidates import Market, build_market, degree, nearest, reason_counts, therapist_pairs
from .columns import SearchColumns, TherapistColumns
from .geo import EARTH_RADIUS_KM, haversine_km
from .model import BundleConfig, SearchReason, TherapistReason
from .openness import LEVEL_RANGE

SEARCH_REASONS = tuple(SearchReason)
# Parallel rounds with fewer proposing patients run the serial loop of the reference solver.
_SERIAL_BELOW = 2000
# Candidate lists sorted together as the rows of one padded matrix (bounds its memory).
_SORT_ROWS = 16384
THERAPIST_REASONS = tuple(TherapistReason)


@dataclass(frozen=True, slots=True)
class ColumnResult:
    """A run's bundles and explanations as arrays; rows refer to the input columns.

    Inquiry i goes to therapist row `inquiry_therapist[i]` with the searches
    `member_search[member_start[i]:member_start[i + 1]]` in bundle order (position 1 first).
    Reasons are indices into SEARCH_REASONS / THERAPIST_REASONS.
    """

    inquiry_therapist: np.ndarray
    member_start: np.ndarray
    member_search: np.ndarray
    distance_km: np.ndarray  # float64, travel distance with detour, 3 decimals
    overlap_slots: np.ndarray  # int16 30-minute slots, -1 unknown
    waiting_days: np.ndarray  # int64
    left_out_search: np.ndarray  # search rows, priority order
    left_out_reason: np.ndarray
    idle_therapist: np.ndarray  # therapist rows, id order
    idle_reason: np.ndarray


def representatives(m: Market, deg: np.ndarray) -> np.ndarray:
    """Per practice the usable therapist with most eligible patients; ties: the likeliest
    open, then lowest id. (Openness first could drop the only therapist a patient reaches.)"""
    usable = np.flatnonzero(m.t_usable)
    order = np.lexsort((usable, -m.t_open[usable], -deg[usable], m.practice[usable]))
    ranked = usable[order]
    first = np.ones(len(ranked), dtype=bool)
    first[1:] = m.practice[ranked[1:]] != m.practice[ranked[:-1]]
    is_rep = np.zeros(m.n_t, dtype=bool)
    is_rep[ranked[first]] = True
    return is_rep


class _ArraySolver(_Solver):
    """The coverage and repair phases of the reference solver; parallel rounds on arrays."""

    def __init__(
        self, state: Assignment, cand: np.ndarray, cand_start: np.ndarray, config: BundleConfig
    ) -> None:
        # the reference solver's lists, built from arrays (no super().__init__)
        self.s = state
        self.max = config.bundle_max_size
        self.min = config.bundle_min_size
        n_t = len(state.members)
        # one Python int per therapist, shared by every list naming it (`tolist` would make
        # one per entry: 3.7 M objects in a national run, allocated and freed again)
        flat = np.arange(n_t).astype(object)[cand].tolist()
        bounds = cand_start.tolist()
        self.cand_lists = [flat[a:b] for a, b in pairwise(bounds)]
        # per therapist the patients listing it, in priority order (radix sort when it fits)
        key = cand.astype(np.uint16) if n_t <= 2**16 else cand
        by_t = np.argsort(key, kind="stable")
        t_start = np.zeros(n_t + 1, dtype=np.int64)
        np.cumsum(np.bincount(cand, minlength=n_t), out=t_start[1:])
        self.t_start = t_start.tolist()
        # only repair reads these, for the few therapists under the minimum: each list's
        # positions map to their patients on demand
        self.by_t = by_t
        self.cand = cand
        self.cand_start = cand_start

    def patients_of(self, t: int) -> list[int]:
        """The patients listing therapist t, in priority order."""
        at = self.by_t[self.t_start[t] : self.t_start[t + 1]]
        return (np.searchsorted(self.cand_start, at, side="right") - 1).tolist()

    def parallel_round(self, n_p: int, round_no: int) -> None:
        """One more place for every patient with budget for it, in priority order.

        Deferred acceptance: patients propose to their next candidate with room, a therapist
        holds the highest-priority proposals up to its room. All therapists rank patients by
        the same priority, so the outcome is the serial one (patients in priority order each
        taking their first candidate with room), computed in a few array passes.
        """
        s = self.s
        budget = np.asarray(s.budget)
        held_now = np.fromiter(map(len, s.assigned), np.int64, len(s.assigned))
        proposers = np.flatnonzero((budget >= round_no) & (held_now == round_no - 1))
        if len(proposers) == 0:
            return
        if len(proposers) < _SERIAL_BELOW:
            # few proposers: the serial rule directly (array passes cost more than they save)
            super().parallel_round(n_p, round_no)
            return
        sizes = np.fromiter(map(len, s.members), np.int64, len(s.members))
        room = np.where(np.array(s.closed, dtype=bool), 0, self.max - sizes)
        a, b = self.cand_start[proposers], self.cand_start[proposers + 1]
        lengths = b - a
        owner = np.repeat(np.arange(len(proposers)), lengths)
        pos = np.repeat(a - (np.cumsum(lengths) - lengths), lengths) + np.arange(int(lengths.sum()))
        t = self.cand[pos]
        ok = room[t] > 0
        # every proposer holds exactly round_no - 1 places: skip those therapists
        held_by = map(s.assigned.__getitem__, proposers.tolist())
        mine = np.fromiter(
            chain.from_iterable(held_by), np.int64, len(proposers) * (round_no - 1)
        ).reshape(len(proposers), round_no - 1)
        for k in range(round_no - 1):
            ok &= t != np.repeat(mine[:, k], lengths)
        owner, t = owner[ok], t[ok]
        start = np.searchsorted(owner, np.arange(len(proposers) + 1))
        ptr = start[:-1].copy()
        end = start[1:]
        # held[t]: the proposals therapist t holds (proposer indices ascending, `none` = free)
        none = len(proposers)
        held = np.full((len(room), max(self.max, 1)), none, dtype=np.int64)
        active = np.flatnonzero(ptr < end)
        while len(active):
            new_t = t[ptr[active]]
            # by therapist, then proposer (one integer key: quicker than a lexsort)
            order = np.argsort(new_t * (none + 1) + active)
            new_t, new_p = new_t[order], active[order]
            ts, first, count = np.unique(new_t, return_index=True, return_counts=True)
            # only therapists with new proposals re-rank: what they hold plus what came in
            incoming = np.full((len(ts), int(count.max())), none, dtype=np.int64)
            incoming[
                np.repeat(np.arange(len(ts)), count),
                np.arange(len(new_t)) - np.repeat(first, count),
            ] = new_p
            merged = np.sort(np.concatenate([held[ts], incoming], axis=1), axis=1)
            kept = np.arange(merged.shape[1])[None, :] < room[ts][:, None]
            held[ts] = np.where(kept, merged, none)[:, : held.shape[1]]
            rejected = merged[~kept & (merged != none)]
            ptr[rejected] += 1
            active = rejected[ptr[rejected] < end[rejected]]
        ther, slot = np.nonzero(held != none)
        who = held[ther, slot]
        order = np.argsort(who, kind="stable")
        # Assignment.add inlined: tens of thousands of places per round in a national run
        members, assigned = s.members, s.assigned
        for q, u in zip(proposers[who[order]].tolist(), ther[order].tolist(), strict=True):
            members[u][q] = None
            assigned[q][u] = None


def _preference_order(
    m: Market,
    p: np.ndarray,
    t: np.ndarray,
    dist: np.ndarray,
    overlap: np.ndarray,
    deg: np.ndarray,
    config: BundleConfig,
) -> tuple[np.ndarray, np.ndarray]:
    """Each search's candidates (input grouped by search, in index order) in preference
    order: scarce therapist, more overlap, distance band, likelier open, nearer, lower index.
    Returns the therapists in that order and where each search's list starts.

    Openness only reorders therapists within the same OPENNESS_BAND_KM of distance: placed
    before scarcity or across bands it lost coverage in generated markets (a patient with
    other options took a far therapist another patient needed to fill a bundle). Each list is
    short (`candidate_limit`), so the lists are sorted as rows of a padded matrix.
    """
    n_s = m.n_s
    cand_start = np.zeros(n_s + 1, dtype=np.int64)
    count = np.bincount(p, minlength=n_s)
    np.cumsum(count, out=cand_start[1:])
    if len(p) == 0:
        return t.astype(np.int64), cand_start
    levels = 2 * LEVEL_RANGE + 1
    ratio = np.maximum(deg / config.bundle_max_size, 1.0)
    bucket = np.minimum(np.ceil(2.0 * np.log2(ratio)), 15).astype(np.int64)
    closed = LEVEL_RANGE - m.t_open.astype(np.int64)  # 0 = most likely open
    bands = 2047 // (OPENNESS_BAND_KM * 10) + 1
    t = t.astype(np.int64)
    over = overlap.astype(np.int64)
    over //= 2
    np.clip(over, 0, 63, out=over)
    dq = np.clip(np.rint(dist * 10.0), 0, 2047).astype(np.int64)
    # the key built in place: one array of pairs instead of a temporary per term
    key = bucket[t]
    key *= 64
    key += 63
    key -= over
    key *= bands
    key += dq // (OPENNESS_BAND_KM * 10)
    key *= levels
    key += closed[t]
    key *= 2048
    key += dq
    key *= m.n_t
    key += t
    rows = np.flatnonzero(count)
    width = int(count.max())
    # the input is search-major, so row-major order of the valid cells is the input order
    valid = np.arange(width)[None, :] < count[rows][:, None]
    ends = cand_start[rows + 1].tolist()
    # the keys sorted themselves (quicker than their order) end in the therapist index;
    # in blocks of rows, which keeps the padded matrix small enough to reuse memory
    for a in range(0, len(rows), _SORT_ROWS):
        block = valid[a : a + _SORT_ROWS]
        lo, hi = ends[a] - int(count[rows[a]]), ends[a + len(block) - 1]
        mat = np.full(block.shape, np.iinfo(np.int64).max, dtype=np.int64)
        mat[block] = key[lo:hi]
        mat.sort(axis=1)  # keys are unique per row; padding sorts last
        key[lo:hi] = mat[block]
    key %= m.n_t
    return key, cand_start


def propose_columns(
    searches: SearchColumns, therapists: TherapistColumns, config: BundleConfig, today: date
) -> ColumnResult:
    """The global strategy's bundles and explanations for one run."""
    m = build_market(searches, therapists, config, today)
    deg = degree(m)
    is_rep = representatives(m, deg)
    viable = is_rep & (deg >= config.bundle_min_size)
    p, t, c2 = nearest(m, viable, config.candidate_limit)
    # Chord length stands in for the arc (relative error < 1e-5 within 100 km): it only
    # ranks candidates; reported distances are exact haversine values.
    dist = (EARTH_RADIUS_KM * np.sqrt(c2) * m.detour[p]).astype(np.float32)
    overlap = m.overlap(p, t)
    t, cand_start = _preference_order(m, p, t, dist, overlap, deg, config)
    state = Assignment(m.n_s, m.n_t, m.budget.tolist())
    solver = _ArraySolver(state, t, cand_start, config)
    # Room in all bundles before the first round: every candidate therapist is still empty.
    listed = int(np.count_nonzero(np.bincount(t, minlength=m.n_t)))
    solver.cover_round(m.n_s, free=listed * config.bundle_max_size)
    solver.repair()
    for round_no in range(2, config.max_inquiries_per_patient + 1):
        solver.parallel_round(m.n_s, round_no)
    solver.repair()
    _colleague_fallback(m, deg, state, config)
    return _result(m, deg, is_rep, state, config, np.diff(cand_start) > 0)


def _colleague_fallback(
    m: Market, deg: np.ndarray, state: Assignment, config: BundleConfig
) -> None:
    """Practices whose representative got nothing: let a colleague try with budget left."""
    served = {int(m.practice[t]) for t, mm in enumerate(state.members) if mm}
    colleagues = [
        t
        for t in np.flatnonzero(m.t_usable & (deg >= config.bundle_min_size)).tolist()
        if int(m.practice[t]) not in served and not state.members[t] and not state.closed[t]
    ]
    if not colleagues:
        return
    colleagues.sort(key=lambda t: (-int(m.t_open[t]), -int(deg[t]), t))
    sub_p, sub_t = therapist_pairs(m, np.array(colleagues, dtype=np.int64))
    for t in colleagues:
        if int(m.practice[t]) in served:
            continue
        lo, hi = np.searchsorted(sub_t, [t, t + 1])
        chosen = [q for q in sub_p[lo:hi].tolist() if len(state.assigned[q]) < state.budget[q]][
            : config.bundle_max_size
        ]
        if len(chosen) >= config.bundle_min_size:
            for q in chosen:
                state.add(q, t)
            served.add(int(m.practice[t]))


def _result(
    m: Market,
    deg: np.ndarray,
    is_rep: np.ndarray,
    state: Assignment,
    config: BundleConfig,
    has_candidates: np.ndarray,
) -> ColumnResult:
    bundles = [(t, mm) for t, mm in enumerate(state.members) if mm]
    sizes = np.fromiter(map(len, state.members), np.int64, m.n_t)
    sizes = sizes[sizes > 0]
    p = np.fromiter(chain.from_iterable(mm for _, mm in bundles), np.int64, int(sizes.sum()))
    t = np.repeat(np.array([tt for tt, _ in bundles], dtype=np.int64), sizes)
    bundle = np.repeat(np.arange(len(bundles)), sizes)
    sr, tr = m.s_rows[p], m.t_rows[t]
    dist = haversine_km(m.s.lat[sr], m.s.lon[sr], m.t.lat[tr], m.t.lon[tr]) * m.detour[p]
    overlap = m.overlap(p, t)
    wait = m.wait_days[p]
    # Position: longest wait first, then more overlap, nearer, lower index (= search id).
    order = np.lexsort((p, dist, -overlap.astype(np.int64), -wait, bundle))
    p, dist, overlap, wait = p[order], dist[order], overlap[order], wait[order]

    assigned = np.zeros(m.n_s, dtype=bool)
    if len(p):
        assigned[p] = True
    out = np.flatnonzero(~assigned)
    reason = np.full(len(out), SEARCH_REASONS.index(SearchReason.NO_CAPACITY), dtype=np.int64)
    reason[~m.located[out]] = SEARCH_REASONS.index(SearchReason.NO_LOCATION)
    reason[m.located[out] & (m.budget[out] <= 0)] = SEARCH_REASONS.index(
        SearchReason.BUDGET_USED_UP
    )
    # A search with candidates reaches an eligible representative, so it lacked room: only
    # the searches without any need their location pairs counted.
    active = (m.s_loc[out] >= 0) & ~has_candidates[out]
    ps = out[active]
    if len(ps):
        in_range, pref, elig, e_local, e_t = reason_counts(m, ps)
        viable_t = deg >= config.bundle_min_size
        to_viable = np.bincount(e_local[viable_t[e_t]], minlength=len(ps))
        to_rep = np.bincount(e_local[(viable_t & is_rep)[e_t]], minlength=len(ps))
        sub = np.full(len(ps), SEARCH_REASONS.index(SearchReason.NO_CAPACITY), dtype=np.int64)
        # first that applies wins: assign in reverse order of precedence
        for counts, why in (
            (to_rep, SearchReason.PRACTICE_SERVED_BY_COLLEAGUE),
            (to_viable, SearchReason.THERAPISTS_BELOW_MINIMUM),
            (elig, SearchReason.EXCLUDED_EVERYWHERE),
            (pref, SearchReason.NO_THERAPIST_MATCHES_PREFERENCES),
            (in_range, SearchReason.NO_THERAPIST_IN_RANGE),
        ):
            sub[counts == 0] = SEARCH_REASONS.index(why)
        reason[active] = sub

    has = np.zeros(m.n_t, dtype=bool)
    has[[tt for tt, _ in bundles]] = True
    served = np.zeros(int(m.practice.max()) + 1 if m.n_t else 0, dtype=bool)
    served[m.practice[has]] = True
    idle = np.flatnonzero(~has)
    t_rows = m.t_rows[idle]
    located = ~(np.isnan(m.t.lat[t_rows]) | np.isnan(m.t.lon[t_rows]))
    idle_reason = np.full(
        len(idle), THERAPIST_REASONS.index(TherapistReason.PATIENTS_ASSIGNED_ELSEWHERE)
    )
    for cond, cause in (
        (deg[idle] < config.bundle_min_size, TherapistReason.FEWER_THAN_MINIMUM_ELIGIBLE),
        (served[m.practice[idle]], TherapistReason.PRACTICE_HAS_INQUIRY),
        (~located, TherapistReason.NO_LOCATION),
        (~m.t.contactable[t_rows], TherapistReason.NOT_CONTACTABLE),
    ):
        idle_reason[cond] = THERAPIST_REASONS.index(cause)
    return ColumnResult(
        inquiry_therapist=m.t_rows[[tt for tt, _ in bundles]].astype(np.int64),
        member_start=np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64),
        member_search=m.s_rows[p].astype(np.int64),
        distance_km=np.round(dist, 3),
        overlap_slots=overlap,
        waiting_days=wait,
        left_out_search=m.s_rows[out].astype(np.int64),
        left_out_reason=reason,
        idle_therapist=t_rows.astype(np.int64),
        idle_reason=idle_reason.astype(np.int64),
    )
