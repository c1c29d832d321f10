"""Global strategy: cover every waiting patient once (longest wait first) before anyone twice.

Phases (details and rationale in docs/matching-core.md):
1. one representative therapist per practice; therapists with too few eligible patients drop;
2. coverage round: patients in priority order take their best therapist with room, else an
   augmenting path moves earlier patients aside (the greedy of a transversal matroid: without
   the search cap it keeps the longest-waiting coverable set);
3. repair: bundles under the minimum are filled from patients with budget left, by moving a
   patient out of an over-minimum bundle or by absorbing a small bundle, else dissolved and
   their patients re-offered;
4. parallel rounds: remaining budget adds patients to bundles with room, round by round;
5. repair again, then colleagues of practices still without an inquiry get a chance.
"""

from __future__ import annotations

from collections import deque

import numpy as np

from .eligibility import Pairs, Prepared, pair_overlap
from .model import BundleConfig
from .openness import LEVEL_RANGE

# Augmenting searches stop after expanding this many full therapists: keeps the worst case
# bounded in saturated regions, where long chains rarely pay off (see docs/matching-core.md).
_COVER_EXPAND_LIMIT = 64
_REPAIR_EXPAND_LIMIT = 256
# Openness reorders a patient's candidates only within bands of this many kilometres.
OPENNESS_BAND_KM = 5


class Assignment:
    """Mutable bundle state shared by the phases."""

    def __init__(self, n_patients: int, n_therapists: int, budget: list[int]) -> None:
        self.members: list[dict[int, None]] = [{} for _ in range(n_therapists)]
        self.assigned: list[dict[int, None]] = [{} for _ in range(n_patients)]
        self.closed = [False] * n_therapists
        self.budget = budget

    def add(self, p: int, t: int) -> None:
        """Put patient p into therapist t's bundle."""
        self.members[t][p] = None
        self.assigned[p][t] = None

    def remove(self, p: int, t: int) -> None:
        """Take patient p out of therapist t's bundle."""
        del self.members[t][p]
        del self.assigned[p][t]


def choose_representatives(prep: Prepared, deg: np.ndarray) -> np.ndarray:
    """Per practice the therapist with most eligible patients; ties: the likeliest open,
    then lowest id. (Openness first could drop the only therapist a patient reaches.)"""
    best: dict[str, int] = {}
    rank = {t: (int(deg[t]), int(prep.t_open[t])) for t in np.flatnonzero(prep.t_usable).tolist()}
    for t, value in rank.items():
        key = prep.practice[t]
        if key not in best or value > rank[best[key]]:
            best[key] = t
    is_rep = np.zeros(len(prep.therapists), dtype=bool)
    is_rep[list(best.values())] = True
    return is_rep


def _preference_order(
    p: np.ndarray,
    t: np.ndarray,
    dist: np.ndarray,
    overlap: np.ndarray,
    deg: np.ndarray,
    t_open: np.ndarray,
    config: BundleConfig,
    n_t: int,
) -> np.ndarray:
    """Pair order: patient, then scarce therapist, more overlap, distance band, likelier
    open, nearer, lower id.

    Openness only reorders therapists within the same OPENNESS_BAND_KM of distance: placed
    before scarcity or across bands it lost coverage in generated markets (a patient with
    other options took a far therapist another patient needed to fill a bundle).
    """
    p, t = p.astype(np.int64), t.astype(np.int64)
    levels = 2 * LEVEL_RANGE + 1
    closed = LEVEL_RANGE - t_open[t].astype(np.int64)  # 0 = most likely open
    ratio = np.maximum(deg[t] / config.bundle_max_size, 1.0)
    bucket = np.minimum(np.ceil(2.0 * np.log2(ratio)), 15).astype(np.int64)
    over = 63 - np.clip(overlap.astype(np.int64) // 2, 0, 63)
    dq = np.clip(np.rint(dist * 10.0), 0, 2047).astype(np.int64)
    band = dq // (OPENNESS_BAND_KM * 10)
    bands = 2047 // (OPENNESS_BAND_KM * 10) + 1
    inner = ((((bucket * 64 + over) * bands + band) * levels + closed) * 2048 + dq) * n_t + t
    span = 16 * 64 * bands * levels * 2048 * n_t
    if len(p) and (int(p.max()) + 1) * span < 2**62:
        return np.argsort(p * span + inner, kind="stable")
    return np.lexsort((inner, p))


def assign_global(prep: Prepared, pairs: Pairs, config: BundleConfig) -> Assignment:
    """Run all phases of the global strategy and return the bundles."""
    n_p, n_t = len(prep.searches), len(prep.therapists)
    deg_all = np.bincount(pairs.therapist, minlength=n_t)
    is_rep = choose_representatives(prep, deg_all)
    viable = is_rep & (deg_all >= config.bundle_min_size)
    keep = viable[pairs.therapist]
    p, t = pairs.patient[keep], pairs.therapist[keep]
    deg = np.bincount(t, minlength=n_t)
    dist = pairs.distance_km[keep]
    # Pairs come patient-major and nearest first: keep the nearest candidate_limit
    # therapists per patient, then order those by scarcity, overlap, distance and id.
    starts = np.searchsorted(p, np.arange(n_p + 1))
    top = np.arange(len(p)) - starts[p] < config.candidate_limit
    p, t, dist = p[top], t[top], dist[top]
    overlap = pair_overlap(prep, p, t)
    order = _preference_order(p, t, dist, overlap, deg, prep.t_open, config, n_t)
    p, t = p[order], t[order]
    cand_start = np.searchsorted(p, np.arange(n_p + 1)).tolist()
    by_t = np.argsort(t, kind="stable")
    t_start = np.searchsorted(t[by_t], np.arange(n_t + 1)).tolist()

    state = Assignment(n_p, n_t, prep.budget.tolist())
    solver = _Solver(state, t.tolist(), cand_start, p[by_t].tolist(), t_start, config)
    # Room in all bundles before the first round: every candidate therapist is still empty.
    solver.cover_round(n_p, free=len(np.unique(t)) * config.bundle_max_size)
    solver.repair()
    for round_no in range(2, config.max_inquiries_per_patient + 1):
        solver.parallel_round(n_p, round_no)
    solver.repair()
    _colleague_fallback(prep, pairs, deg_all, state, config)
    return state


class _Solver:
    def __init__(
        self,
        state: Assignment,
        cand: list[int],
        cand_start: list[int],
        t_cand: list[int],
        t_start: list[int],
        config: BundleConfig,
    ) -> None:
        self.s = state
        self.cand_lists = [
            cand[cand_start[p] : cand_start[p + 1]] for p in range(len(cand_start) - 1)
        ]
        self.t_cand, self.t_start = t_cand, t_start
        self.max = config.bundle_max_size
        self.min = config.bundle_min_size

    def candidates(self, p: int) -> list[int]:
        return self.cand_lists[p]

    def patients_of(self, t: int) -> list[int]:
        """The patients listing therapist t, in priority order."""
        return self.t_cand[self.t_start[t] : self.t_start[t + 1]]

    def cover_round(self, n_p: int, free: int) -> None:
        """Give every patient with budget one place, longest waiting first."""
        s, dead = self.s, set[int]()
        members, closed, assigned = s.members, s.closed, s.assigned
        for p in range(n_p):
            if s.budget[p] < 1 or assigned[p] or free == 0:
                continue
            for t in self.cand_lists[p]:
                if len(members[t]) < self.max and not closed[t]:
                    # Assignment.add inlined: a place for almost every patient of a run
                    members[t][p] = None
                    assigned[p][t] = None
                    free -= 1
                    break
            else:
                # Capacity is never freed in this round, so a therapist from which a
                # search found no augmenting path is treated as hopeless from then on.
                if self.augment(p, dead, limit=_COVER_EXPAND_LIMIT):
                    free -= 1

    def augment(self, p: int, dead: set[int], limit: int) -> bool:
        """Find a chain of moves that frees room for p (breadth-first); apply it."""
        s = self.s
        members, closed, assigned = s.members, s.closed, s.assigned
        cand_lists, most = self.cand_lists, self.max
        parent: dict[int, tuple[int, int] | None] = {}
        queue: deque[int] = deque()
        expanded = 0
        for t in cand_lists[p]:
            if t not in parent and t not in dead and not closed[t] and t not in assigned[p]:
                parent[t] = None
                queue.append(t)
        while queue:
            if expanded >= limit:
                break
            expanded += 1
            t = queue.popleft()
            for q in members[t]:
                if q == p:
                    continue
                # q's therapists not reached yet, filtered in one comprehension (this loop is
                # most of the coverage round's time in a saturated city)
                mine = assigned[q]
                fresh = [
                    t2
                    for t2 in cand_lists[q]
                    if t2 not in parent and t2 not in dead and not closed[t2] and t2 not in mine
                ]
                step = (t, q)
                for t2 in fresh:
                    parent[t2] = step
                    if len(members[t2]) < most:
                        self._apply(p, t2, parent)
                        return True
                queue.extend(fresh)
        dead.update(parent)
        return False

    def _apply(self, p: int, end: int, parent: dict[int, tuple[int, int] | None]) -> None:
        cur = end
        step = parent[cur]
        while step is not None:
            prev, q = step
            self.s.remove(q, prev)
            self.s.add(q, cur)
            cur = prev
            step = parent[cur]
        self.s.add(p, cur)

    def parallel_round(self, n_p: int, round_no: int) -> None:
        """Add one more place for every patient with budget for it, in priority order."""
        s = self.s
        members, closed, assigned = s.members, s.closed, s.assigned
        for p in range(n_p):
            if s.budget[p] < round_no or len(assigned[p]) != round_no - 1:
                continue
            for t in self.cand_lists[p]:
                if len(members[t]) < self.max and not closed[t] and t not in assigned[p]:
                    s.add(p, t)
                    break

    def repair(self) -> None:
        """Bring every bundle to the minimum size or dissolve it and re-offer its patients."""
        s = self.s
        while True:
            # Re-offered patients can open new small bundles: repeat until none is left.
            # Every dissolution closes a therapist for good, so this terminates.
            pending = sorted(
                (t for t, m in enumerate(s.members) if 0 < len(m) < self.min),
                key=lambda t: (-len(s.members[t]), t),
            )
            if not pending:
                return
            for t in pending:
                if s.closed[t] or not 0 < len(s.members[t]) < self.min:
                    continue
                self._fill(t)
                if len(s.members[t]) >= self.min:
                    continue
                s.closed[t] = True
                orphans = list(s.members[t])
                for q in orphans:
                    s.remove(q, t)
                for q in orphans:
                    if not s.assigned[q]:
                        self._place(q)

    def _fill(self, t: int) -> None:
        s = self.s
        members = s.members[t]
        cands = self.patients_of(t)
        for q in cands:
            if len(members) >= self.min:
                return
            if q not in members and len(s.assigned[q]) < s.budget[q]:
                s.add(q, t)
        for q in cands:
            if len(members) >= self.min:
                return
            if q in members:
                continue
            for u in list(s.assigned[q]):
                if len(s.members[u]) > self.min:
                    s.remove(q, u)
                    s.add(q, t)
                    break
        self._take_over(t, cands)

    def _take_over(self, t: int, cands: list[int]) -> None:
        """Last resort before dissolving t: absorb a bundle u of at most minimum size.

        Done only when it keeps more patients covered than dissolving t would; patients
        u leaves behind are re-offered elsewhere.
        """
        s = self.s
        at_stake = sum(1 for r in s.members[t] if len(s.assigned[r]) == 1)
        for q in cands:
            if len(s.members[t]) >= self.min:
                return
            if q in s.members[t]:
                continue
            for u in list(s.assigned[q]):
                if u == t or len(s.members[u]) > self.min:
                    continue
                rest = [r for r in s.members[u] if r != q]
                room = self.max - len(s.members[t]) - 1
                movable = [r for r in rest if t in self.cand_lists[r] and t not in s.assigned[r]][
                    :room
                ]
                if len(s.members[t]) + 1 + len(movable) < self.min:
                    continue
                left = [r for r in rest if r not in movable and len(s.assigned[r]) == 1]
                if len(left) >= at_stake:
                    continue
                s.closed[u] = True
                for r in list(s.members[u]):
                    s.remove(r, u)
                for r in [q, *movable]:
                    s.add(r, t)
                for r in left:
                    self._place(r)
                break

    def _place(self, q: int) -> int | None:
        s = self.s
        for t in self.candidates(q):
            if len(s.members[t]) < self.max and not s.closed[t] and t not in s.assigned[q]:
                s.add(q, t)
                return t
        if self.augment(q, set(), limit=_REPAIR_EXPAND_LIMIT):
            return next(iter(s.assigned[q]))
        return None


def _colleague_fallback(
    prep: Prepared, pairs: Pairs, deg_all: np.ndarray, state: Assignment, config: BundleConfig
) -> None:
    """Practices whose representative got nothing: let a colleague try with budget left."""
    served = {prep.practice[t] for t, m in enumerate(state.members) if m}
    colleagues = [
        t
        for t in np.flatnonzero(prep.t_usable & (deg_all >= config.bundle_min_size)).tolist()
        if prep.practice[t] not in served and not state.members[t] and not state.closed[t]
    ]
    if not colleagues:
        return
    colleagues.sort(key=lambda t: (-int(prep.t_open[t]), -int(deg_all[t]), t))
    is_colleague = np.zeros(len(prep.therapists), dtype=bool)
    is_colleague[colleagues] = True
    mask = is_colleague[pairs.therapist]
    sub_t, sub_p = pairs.therapist[mask], pairs.patient[mask]
    order = np.lexsort((sub_p, sub_t))
    sub_t, sub_p = sub_t[order], sub_p[order]
    for t in colleagues:
        if prep.practice[t] in served:
            continue
        lo, hi = np.searchsorted(sub_t, [t, t + 1])
        chosen = [q for q in sub_p[lo:hi].tolist() if len(state.assigned[q]) < state.budget[q]][
            : config.bundle_max_size
        ]
        if len(chosen) >= config.bundle_min_size:
            for q in chosen:
                state.add(q, t)
            served.add(prep.practice[t])
