"""Seeded synthetic patients and therapists with realistic attribute mixes (assumptions)."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import numpy as np

from ..bundling.model import METHODS, Search, Therapist
from .geography import PostalAreas

# Assumed mixes; none of them comes from a published statistic unless said so.
MAX_TRAVEL_KM = ([5, 10, 15, 20, 25, 30, 50], [0.10, 0.20, 0.25, 0.20, 0.12, 0.10, 0.03])
PATIENT_GENDERS = (["female", "male", "diverse", "unspecified"], [0.64, 0.33, 0.02, 0.01])
THERAPIST_GENDERS = (["female", "male"], [0.72, 0.28])
DIAGNOSES = (
    ["F32.1", "F32.2", "F33.1", "F41.0", "F41.1", "F40.1", "F43.1", "F43.2", "F45.0", "F60.3"],
    [0.20, 0.08, 0.14, 0.08, 0.10, 0.08, 0.10, 0.10, 0.06, 0.06],
)
# Outpatient psychotherapy in Germany is mostly behavioural and psychodynamic.
METHOD_MIX = (list(METHODS), [0.55, 0.33, 0.07, 0.05])
WEEKLY_BLOCKS = [
    ("mon", "08:00-12:00"), ("mon", "14:00-19:00"), ("tue", "08:00-12:00"),
    ("tue", "14:00-19:00"), ("wed", "08:00-12:00"), ("wed", "14:00-19:00"),
    ("thu", "08:00-12:00"), ("thu", "14:00-19:00"), ("fri", "08:00-13:00"),
    ("sat", "09:00-13:00"),
]  # fmt: skip


def _weekly(rng: np.random.Generator, blocks: int) -> dict[str, list[str]]:
    picks = sorted(rng.choice(len(WEEKLY_BLOCKS), size=blocks, replace=False).tolist())
    out: dict[str, list[str]] = {}
    for i in picks:
        day, span = WEEKLY_BLOCKS[i]
        out.setdefault(day, []).append(span)
    return out


def make_searches(
    rng: np.random.Generator,
    areas: PostalAreas,
    count: int,
    today: date,
    first_id: int = 0,
    mean_wait_days: float = 30.0,
    budget_range: tuple[int, int] = (1, 10),
) -> list[Search]:
    """Patients located at postal-code centroids (as the platform locates them)."""
    where = rng.integers(0, len(areas), count)
    wait = np.minimum(rng.exponential(mean_wait_days, count), 365).astype(int)
    km = rng.choice(MAX_TRAVEL_KM[0], size=count, p=MAX_TRAVEL_KM[1])
    gender = rng.choice(PATIENT_GENDERS[0], size=count, p=PATIENT_GENDERS[1])
    diag = rng.choice(DIAGNOSES[0], size=count, p=DIAGNOSES[1])
    method = rng.choice(METHOD_MIX[0], size=count, p=METHOD_MIX[1])
    wants_method = rng.random(count) < 0.20
    pref_gender = rng.choice(
        np.array([None, "female", "male"], dtype=object), size=count, p=[0.70, 0.25, 0.05]
    )
    age = rng.integers(18, 76, count)
    budget = rng.integers(budget_range[0], budget_range[1] + 1, count)
    out = []
    noon = datetime.combine(today, time(9), tzinfo=UTC)
    for i in range(count):
        out.append(
            Search(
                search_id=f"S{first_id + i:07d}",
                patient_id=f"P{first_id + i:07d}",
                lat=float(areas.lat[where[i]]),
                lon=float(areas.lon[where[i]]),
                max_travel_km=float(km[i]),
                travel_mode="transit" if rng.random() < 0.5 else "car",
                waiting_since=noon - timedelta(days=int(wait[i])),
                contact_budget=int(budget[i]),
                gender=str(gender[i]),
                birth_date=date(today.year - int(age[i]), 1 + i % 12, 1 + i % 28),
                diagnosis=str(diag[i]),
                preferred_therapy_method=str(method[i]) if wants_method[i] else None,
                preferred_therapist_gender=pref_gender[i],
                open_to_group_therapy=bool(rng.random() < 0.3),
                availability=_weekly(rng, int(rng.integers(5, 9))),
                excluded_therapist_ids=frozenset(),
            )
        )
    return out


def make_therapists(
    rng: np.random.Generator, areas: PostalAreas, count: int, first_id: int = 0
) -> list[Therapist]:
    """Therapists clustered in cities; about one in six shares a practice with a colleague."""
    where = rng.choice(len(areas), size=count, p=areas.therapist_weights())
    # Practice addresses are geocoded precisely: scatter them about a kilometre round the centroid.
    jitter = rng.normal(0.0, 0.008, (count, 2))
    gender = rng.choice(THERAPIST_GENDERS[0], size=count, p=THERAPIST_GENDERS[1])
    out: list[Therapist] = []
    for i in range(count):
        shares = i > 0 and rng.random() < 0.15
        lat: float | None = float(areas.lat[where[i]] + jitter[i, 0])
        lon: float | None = float(areas.lon[where[i]] + jitter[i, 1])
        if shares:
            lat, lon = out[-1].lat, out[-1].lon
        methods = {str(rng.choice(METHOD_MIX[0], p=METHOD_MIX[1]))}
        if rng.random() < 0.2:
            methods.add(str(rng.choice(METHOD_MIX[0], p=METHOD_MIX[1])))
        has_age = rng.random() < 0.15
        tid = f"T{first_id + i:06d}"
        out.append(
            Therapist(
                therapist_id=tid,
                lat=lat,
                lon=lon,
                practice_key=out[-1].practice_key if shares else f"practice-{tid}",
                gender=str(gender[i]),
                therapy_methods=tuple(sorted(methods)),
                patient_age_min=int(rng.choice([18, 21, 25])) if has_age else None,
                patient_age_max=int(rng.choice([40, 60, 65])) if has_age else None,
                preferred_patient_gender="female" if rng.random() < 0.05 else None,
                preferred_diagnoses=("F3", "F4") if rng.random() < 0.10 else (),
                prefers_group_therapy=bool(rng.random() < 0.05),
                working_hours=_weekly(rng, int(rng.integers(5, 9))) if rng.random() < 0.4 else None,
                contactable=bool(rng.random() < 0.85),
            )
        )
    return out
