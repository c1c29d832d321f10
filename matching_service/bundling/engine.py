"""Entry point of the bundle algorithm: columns, a strategy, then explanations.

The global strategy runs on columns (`columnar.py`); the baseline strategy on the reference
engine's per-pair arrays (`reference.py`).
"""

from __future__ import annotations

import gc
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import fields
from datetime import date

import numpy as np

from .columnar import SEARCH_REASONS, THERAPIST_REASONS, ColumnResult, propose_columns
from .columns import (
    SearchColumns,
    TherapistColumns,
    searches_from_objects,
    therapists_from_objects,
)
from .model import (
    BundleConfig,
    BundleResult,
    Id,
    LeftOut,
    PatientFit,
    ProposedInquiry,
    Search,
    Strategy,
    Therapist,
    TherapistReason,
    TherapistWithoutInquiry,
)
from .reference import propose_bundles_reference


def propose_bundles(
    searches: Sequence[Search],
    therapists: Sequence[Therapist],
    config: BundleConfig,
    today: date,
    strategy: Strategy = Strategy.GLOBAL,
) -> BundleResult:
    """Propose this run's inquiries and explain every search and therapist left without one."""
    if strategy is not Strategy.GLOBAL:
        return propose_bundles_reference(searches, therapists, config, today, strategy)
    with without_cycle_collection():
        s = searches_from_objects(searches)
        t = therapists_from_objects(therapists, today, config.use_answer_history)
        return bundle_result(propose_columns(s, t, config, today), s, t)


@contextmanager
def without_cycle_collection() -> Iterator[None]:
    """Pause Python's cycle collector while a run builds many small acyclic objects.

    Every few hundred new lists, dicts and result objects it would otherwise scan all live
    objects (the caller's searches and therapists included); reference counting still frees
    everything, and the collector resumes afterwards.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


# PatientFit's slots in field order (unpacking fails at import if a field is added)
_SET_SEARCH, _SET_POSITION, _SET_DISTANCE, _SET_OVERLAP, _SET_WAITING = (
    PatientFit.__dict__[f.name].__set__ for f in fields(PatientFit)
)

# ProposedInquiry's slots in field order
_SET_THERAPIST, _SET_PRACTICE, _SET_PATIENTS = (
    ProposedInquiry.__dict__[f.name].__set__ for f in fields(ProposedInquiry)
)


def _patient_fits(
    ids: list[Id], positions: list[int], km: list[float], hours: list[float | None], days: list[int]
) -> list[PatientFit]:
    """PatientFit objects from columns, their slots set directly.

    The frozen dataclass's `__init__` sets each field through `object.__setattr__` and takes
    about twice as long; a national run builds 177,000 of them.
    """
    new = object.__new__
    out = []
    for q, k, d, h, w in zip(ids, positions, km, hours, days, strict=True):
        fit = new(PatientFit)
        _SET_SEARCH(fit, q)
        _SET_POSITION(fit, k)
        _SET_DISTANCE(fit, d)
        _SET_OVERLAP(fit, h)
        _SET_WAITING(fit, w)
        out.append(fit)
    return out


def bundle_result(result: ColumnResult, s: SearchColumns, t: TherapistColumns) -> BundleResult:
    """The objects of a column result (ids instead of rows)."""
    sid = s.search_id
    starts = result.member_start
    sizes = np.diff(starts)
    position = np.arange(len(result.member_search)) - np.repeat(starts[:-1], sizes) + 1
    # unknown overlap as None, set on an object array rather than item by item in a list
    hours_of = (result.overlap_slots / 2.0).astype(object)
    hours_of[result.overlap_slots < 0] = None
    hours = hours_of.tolist()
    fits = _patient_fits(
        [sid[q] for q in result.member_search.tolist()],
        position.tolist(),
        result.distance_km.tolist(),
        hours,
        result.waiting_days.tolist(),
    )
    bounds = starts.tolist()
    new = object.__new__
    inquiries = []
    for i, row in enumerate(result.inquiry_therapist.tolist()):
        # slots set directly, as for PatientFit (30,000 inquiries in a national run)
        inquiry = new(ProposedInquiry)
        _SET_THERAPIST(inquiry, t.therapist_id[row])
        _SET_PRACTICE(inquiry, t.practice_key[row])
        _SET_PATIENTS(inquiry, tuple(fits[bounds[i] : bounds[i + 1]]))
        inquiries.append(inquiry)
    left_out = tuple(
        LeftOut(search_id=sid[q], reason=SEARCH_REASONS[r].value)
        for q, r in zip(
            result.left_out_search.tolist(), result.left_out_reason.tolist(), strict=True
        )
    )
    idle = []
    for row, r in zip(result.idle_therapist.tolist(), result.idle_reason.tolist(), strict=True):
        reason = THERAPIST_REASONS[r].value
        if (
            THERAPIST_REASONS[r] is TherapistReason.NOT_CONTACTABLE
            and t.not_contactable_reason[row]
        ):
            reason = f"{reason}: {t.not_contactable_reason[row]}"
        idle.append(TherapistWithoutInquiry(therapist_id=t.therapist_id[row], reason=reason))
    return BundleResult(
        strategy=Strategy.GLOBAL,
        inquiries=tuple(inquiries),
        left_out=left_out,
        therapists_without_inquiry=tuple(idle),
    )
