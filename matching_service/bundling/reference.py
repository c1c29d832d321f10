"""The bundle engine on per-pair arrays (every eligible search x therapist pair materialised).

It was the production engine before the columnar one (`engine.py`, `columnar.py`). It stays
as the reference the columnar engine is compared with (property tests, `benchmarks/
bench_bundles.py`) and runs the baseline strategy.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

import numpy as np

from .assign_baseline import assign_baseline
from .assign_global import Assignment, assign_global, choose_representatives
from .eligibility import Pairs, Prepared, eligible_pairs, pair_details, prepare
from .model import (
    BundleConfig,
    BundleResult,
    LeftOut,
    PatientFit,
    ProposedInquiry,
    Search,
    SearchReason,
    Strategy,
    Therapist,
    TherapistReason,
    TherapistWithoutInquiry,
)


def propose_bundles_reference(
    searches: Sequence[Search],
    therapists: Sequence[Therapist],
    config: BundleConfig,
    today: date,
    strategy: Strategy = Strategy.GLOBAL,
) -> BundleResult:
    """The reference engine's inquiries and explanations (same contract as `propose_bundles`)."""
    prep = prepare(searches, therapists, config, today)
    pairs = eligible_pairs(prep, config, today)
    if strategy is Strategy.GLOBAL:
        state = assign_global(prep, pairs, config)
    else:
        state = assign_baseline(prep, pairs, config)
    inquiries = _inquiries(prep, state)
    return BundleResult(
        strategy=strategy,
        inquiries=tuple(inquiries),
        left_out=tuple(_left_out(prep, pairs, state, config, strategy)),
        therapists_without_inquiry=tuple(_idle_therapists(prep, pairs, state, config)),
    )


def _inquiries(prep: Prepared, state: Assignment) -> list[ProposedInquiry]:
    bundles = [(t, list(m)) for t, m in enumerate(state.members) if m]
    if not bundles:
        return []
    sizes = np.array([len(m) for _, m in bundles])
    p = np.array([q for _, m in bundles for q in m], dtype=np.int64)
    t = np.repeat(np.array([tt for tt, _ in bundles], dtype=np.int64), sizes)
    bundle = np.repeat(np.arange(len(bundles)), sizes)
    dist, overlap = pair_details(prep, p, t)
    wait = prep.wait_days[p]
    # Position: longest wait first, then more overlap, nearer, lower index (= search id).
    order = np.lexsort((p, dist, -overlap.astype(np.int64), -wait, bundle))
    p, dist, overlap, wait = p[order], dist[order], overlap[order], wait[order]
    position = np.arange(len(p)) - np.repeat(np.cumsum(sizes) - sizes, sizes) + 1
    rows = zip(
        [prep.searches[q].search_id for q in p.tolist()],
        position.tolist(),
        np.round(dist, 3).tolist(),
        overlap.tolist(),
        wait.tolist(),
        strict=True,
    )
    fits = [PatientFit(sid, i, d, None if ov < 0 else ov / 2.0, w) for sid, i, d, ov, w in rows]
    result, k = [], 0
    for (tt, _), size in zip(bundles, sizes.tolist(), strict=True):
        result.append(
            ProposedInquiry(
                therapist_id=prep.therapists[tt].therapist_id,
                practice_key=prep.practice[tt],
                patients=tuple(fits[k : k + size]),
            )
        )
        k += size
    return result


def _left_out(
    prep: Prepared, pairs: Pairs, state: Assignment, config: BundleConfig, strategy: Strategy
) -> list[LeftOut]:
    n_t = len(prep.therapists)
    deg = np.bincount(pairs.therapist, minlength=n_t)
    viable_t = deg >= config.bundle_min_size
    n_p = len(prep.searches)
    to_viable = np.bincount(pairs.patient[viable_t[pairs.therapist]], minlength=n_p)
    if strategy is Strategy.GLOBAL:
        rep_t = viable_t & choose_representatives(prep, deg)
        to_rep = np.bincount(pairs.patient[rep_t[pairs.therapist]], minlength=n_p)
    else:
        to_rep = to_viable
    out = []
    for q, search in enumerate(prep.searches):
        if state.assigned[q]:
            continue
        if not prep.s_located[q]:
            reason = SearchReason.NO_LOCATION
        elif prep.budget[q] <= 0:
            reason = SearchReason.BUDGET_USED_UP
        elif pairs.in_range[q] == 0:
            reason = SearchReason.NO_THERAPIST_IN_RANGE
        elif pairs.pref_ok[q] == 0:
            reason = SearchReason.NO_THERAPIST_MATCHES_PREFERENCES
        elif pairs.eligible[q] == 0:
            reason = SearchReason.EXCLUDED_EVERYWHERE
        elif to_viable[q] == 0:
            reason = SearchReason.THERAPISTS_BELOW_MINIMUM
        elif to_rep[q] == 0:
            reason = SearchReason.PRACTICE_SERVED_BY_COLLEAGUE
        else:
            reason = SearchReason.NO_CAPACITY
        out.append(LeftOut(search_id=search.search_id, reason=reason.value))
    return out


def _idle_therapists(
    prep: Prepared, pairs: Pairs, state: Assignment, config: BundleConfig
) -> list[TherapistWithoutInquiry]:
    deg = np.bincount(pairs.therapist, minlength=len(prep.therapists))
    served = {prep.practice[t] for t, m in enumerate(state.members) if m}
    out = []
    for t, therapist in enumerate(prep.therapists):
        if state.members[t]:
            continue
        if not therapist.contactable:
            reason = TherapistReason.NOT_CONTACTABLE.value
            if therapist.not_contactable_reason:
                reason = f"{reason}: {therapist.not_contactable_reason}"
        elif therapist.lat is None or therapist.lon is None:
            reason = TherapistReason.NO_LOCATION.value
        elif prep.practice[t] in served:
            reason = TherapistReason.PRACTICE_HAS_INQUIRY.value
        elif deg[t] < config.bundle_min_size:
            reason = TherapistReason.FEWER_THAN_MINIMUM_ELIGIBLE.value
        else:
            reason = TherapistReason.PATIENTS_ASSIGNED_ELSEWHERE.value
        out.append(TherapistWithoutInquiry(therapist_id=therapist.therapist_id, reason=reason))
    return out
