"""Which hard constraints (business-rules.md §6) one patient-therapist pair breaks, by rule name.

`eligible_pairs` decides; this names the rules for a person reading the answer (a manual
inquiry refused for a patient), with the same primitives.
"""

from __future__ import annotations

from datetime import date

import numpy as np

from .eligibility import age_on, diagnosis_matches, methods_mask
from .geo import haversine_km
from .model import METHODS, BundleConfig, Search, Therapist

NO_LOCATION = "no_location"
DISTANCE = "distance"
EXCLUDED = "excluded"
THERAPIST_GENDER = "preferred_therapist_gender"
THERAPY_METHOD = "preferred_therapy_method"
AGE_RANGE = "therapist_age_range"
PATIENT_GENDER = "therapist_preferred_patient_gender"
DIAGNOSIS = "therapist_preferred_diagnoses"
GROUP_THERAPY = "therapist_prefers_group_therapy"


def travel_km(search: Search, therapist: Therapist, config: BundleConfig) -> float | None:
    """Travel distance (great circle times the mode's detour), None when a side is unlocated."""
    if None in (search.lat, search.lon, therapist.lat, therapist.lon):
        return None
    km = haversine_km(
        np.array([search.lat]), np.array([search.lon]),
        np.array([therapist.lat]), np.array([therapist.lon]),
    )  # fmt: skip
    return float(km[0]) * config.detour_factor[search.travel_mode]


def unmet_constraints(
    search: Search, therapist: Therapist, config: BundleConfig, today: date
) -> list[str]:
    """The rules the pair breaks (empty: none found), in the order business-rules.md §6 lists
    them."""
    unmet = []
    km = travel_km(search, therapist, config)
    if km is None:
        unmet.append(NO_LOCATION)
    elif km > search.max_travel_km:
        unmet.append(DISTANCE)
    if therapist.therapist_id in search.excluded_therapist_ids:
        unmet.append(EXCLUDED)
    wanted = search.preferred_therapist_gender
    if wanted not in (None, "any") and wanted != therapist.gender:
        unmet.append(THERAPIST_GENDER)
    method = search.preferred_therapy_method
    if method in METHODS and not _offers(therapist, method):
        unmet.append(THERAPY_METHOD)
    if therapist.patient_age_min is not None or therapist.patient_age_max is not None:
        age = None if search.birth_date is None else age_on(search.birth_date, today)
        low = therapist.patient_age_min if therapist.patient_age_min is not None else -(10**6)
        high = therapist.patient_age_max if therapist.patient_age_max is not None else 10**6
        if age is None or not low <= age <= high:
            unmet.append(AGE_RANGE)
    preferred = therapist.preferred_patient_gender
    if preferred not in (None, "any") and preferred != search.gender:
        unmet.append(PATIENT_GENDER)
    if not diagnosis_matches(search.diagnosis, therapist.preferred_diagnoses):
        unmet.append(DIAGNOSIS)
    if therapist.prefers_group_therapy and not search.open_to_group_therapy:
        unmet.append(GROUP_THERAPY)
    return unmet


def _offers(therapist: Therapist, method: str) -> bool:
    """Whether the therapist offers the method ('any' offers every one)."""
    return bool((methods_mask(therapist.therapy_methods) >> (METHODS.index(method) + 1)) & 1)
