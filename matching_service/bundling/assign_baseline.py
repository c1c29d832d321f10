"""Baseline strategy: therapists in id order each take the oldest eligible searches."""

from __future__ import annotations

import numpy as np

from .assign_global import Assignment
from .eligibility import Pairs, Prepared
from .model import BundleConfig


def assign_baseline(prep: Prepared, pairs: Pairs, config: BundleConfig) -> Assignment:
    """Per therapist in a fixed order, the oldest eligible searches with budget, up to max."""
    n_p, n_t = len(prep.searches), len(prep.therapists)
    state = Assignment(n_p, n_t, prep.budget.tolist())
    # Patients are indexed in priority order, so a stable sort by therapist keeps
    # each therapist's candidates oldest first.
    order = np.argsort(pairs.therapist, kind="stable")
    t_sorted = pairs.therapist[order]
    p_sorted = pairs.patient[order].tolist()
    starts = np.searchsorted(t_sorted, np.arange(n_t + 1)).tolist()
    served: set[str] = set()
    used = [0] * n_p
    for t in range(n_t):
        if prep.practice[t] in served:
            continue
        chosen: list[int] = []
        for q in p_sorted[starts[t] : starts[t + 1]]:
            if used[q] < state.budget[q]:
                chosen.append(q)
                if len(chosen) == config.bundle_max_size:
                    break
        if len(chosen) < config.bundle_min_size:
            continue
        for q in chosen:
            used[q] += 1
            state.add(q, t)
        served.add(prep.practice[t])
    return state
