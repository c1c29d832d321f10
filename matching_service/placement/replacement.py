"""Replacement patients for a therapist whose acceptance lost a conflict (same hard rules)."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import replace
from datetime import date

import numpy as np

from ..bundling.eligibility import eligible_pairs, prepare
from ..bundling.model import BundleConfig, Id, Search, Therapist


def replacement_offer(
    therapist: Therapist,
    candidates: Sequence[Search],
    config: BundleConfig,
    today: date,
    skip_search_ids: Collection[Id] = (),
    limit: int | None = None,
) -> list[Id]:
    """Eligible searches with budget for this therapist, longest waiting first."""
    pool = [s for s in candidates if s.search_id not in skip_search_ids]
    # The reply answers the therapist's own message: cooling does not hold it back.
    reachable = replace(therapist, contactable=True)
    prep = prepare(pool, [reachable], config, today)
    pairs = eligible_pairs(prep, config, today)
    chosen = np.unique(pairs.patient).tolist()
    ids = [prep.searches[p].search_id for p in chosen]
    return ids[: limit if limit is not None else config.bundle_max_size]
