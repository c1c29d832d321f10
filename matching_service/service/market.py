"""The bundler's input read from the projections, and who may be contacted (business-rules.md §6).

One query per table, rows straight into the bundler's value types (no ORM object per row).
Contactability is computed in SQL from the database's own records: the therapist's status,
the practice's cooling periods, its open inquiries and the therapist's location.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import Integer, and_, cast, exists, func, literal, or_, select
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session

from matching_service.bundling.model import Search, Therapist
from matching_service.models import (
    OPEN_INQUIRY_STATUSES,
    CoolingPeriod,
    Inquiry,
    InquiryPatient,
    Location,
    PatientProjection,
    PatientSearch,
    SearchExclusion,
    TherapistProjection,
)
from matching_service.service import _location_reason
from matching_service.service.history import answer_histories


@dataclass(frozen=True, slots=True)
class Contactability:
    """Whether a therapist may get an inquiry on a day, and if not, every reason why."""

    therapist_id: int
    practice_key: str
    contactable: bool
    # status_<status>, cooling, open_inquiry, no_location: <why>
    reasons: tuple[str, ...]
    # the end of the practice's cooling (None: not cooling)
    cooling_until: date | None

    @property
    def next_contactable_date(self) -> date | None:
        """First day cooling allows a contact (None: today, or unknown while an inquiry is
        open or the therapist is not active)."""
        return self.cooling_until


def cooling_until(today: date) -> Any:
    """Correlated scalar: the end of the practice's cooling in force on `today`, or NULL."""
    return (
        select(func.max(CoolingPeriod.until))
        .where(
            CoolingPeriod.practice_key == TherapistProjection.practice_key,
            CoolingPeriod.overridden_at.is_(None),
            CoolingPeriod.starts_on <= today,
            CoolingPeriod.until > today,
        )
        .scalar_subquery()
    )


def practice_has_open_inquiry() -> Any:
    """Correlated EXISTS: the therapist's practice has an unsent, or sent and unanswered,
    inquiry."""
    return exists().where(
        Inquiry.practice_key == TherapistProjection.practice_key,
        Inquiry.status.in_(OPEN_INQUIRY_STATUSES),
    )


def contactability(
    session: Session, today: date, therapist_ids: Collection[int] | None = None
) -> dict[int, Contactability]:
    """Contactability of the given therapists (or all known ones) on `today`, in one query."""
    statement = (
        select(
            TherapistProjection.therapist_id,
            TherapistProjection.practice_key,
            TherapistProjection.status,
            TherapistProjection.postal_code,
            cooling_until(today).label("cooling_until"),
            practice_has_open_inquiry().label("open_inquiry"),
            Location.resolved,
            Location.reason,
            Location.postal_code.label("located_at"),
        )
        .outerjoin(
            Location,
            and_(
                Location.entity_type == "therapist",
                Location.entity_id == TherapistProjection.therapist_id,
            ),
        )
        .order_by(TherapistProjection.therapist_id)
    )
    if therapist_ids is not None:
        statement = statement.where(TherapistProjection.therapist_id.in_(list(therapist_ids)))
    result = {}
    for row in session.execute(statement):
        reasons = []
        if row.status != "active":
            reasons.append(f"status_{row.status}")
        if row.cooling_until is not None:
            reasons.append("cooling")
        if row.open_inquiry:
            reasons.append("open_inquiry")
        located = _location_reason(row.resolved, row.reason, row.located_at, row.postal_code)
        if located is not None:
            reasons.append(f"no_location: {located}")
        result[row.therapist_id] = Contactability(
            therapist_id=row.therapist_id,
            practice_key=row.practice_key,
            contactable=not reasons,
            reasons=tuple(reasons),
            cooling_until=row.cooling_until,
        )
    return result


def _located(entity_type: str, entity_id: Any, postal_code: Any) -> Any:
    """Join condition: the entity's resolved location for its current postal code."""
    return and_(
        Location.entity_type == entity_type,
        Location.entity_id == entity_id,
        Location.resolved.is_(True),
        or_(Location.postal_code.is_(None), Location.postal_code == postal_code),
    )


def load_therapists(
    session: Session,
    today: date,
    *,
    therapist_ids: Collection[int] | None = None,
    postal_code_prefix: str | None = None,
    only_contactable: bool = False,
) -> list[Therapist]:
    """Active therapists as the bundler sees them, by id, with their contactability on `today`,
    their potentially_available flag and answer history (service/history.py).

    Without a location row for their current postal code `lat`/`lon` are None (the bundler
    leaves them out with `no_location`).
    """
    t = TherapistProjection
    statement = (
        select(
            t.therapist_id,
            t.practice_key,
            t.gender,
            t.therapy_methods,
            t.patient_age_min,
            t.patient_age_max,
            t.preferred_patient_gender,
            t.preferred_diagnoses,
            t.prefers_group_therapy,
            t.working_hours,
            t.potentially_available,
            Location.lat,
            Location.lon,
            cooling_until(today).label("cooling_until"),
            practice_has_open_inquiry().label("open_inquiry"),
        )
        .outerjoin(Location, _located("therapist", t.therapist_id, t.postal_code))
        .where(t.status == "active")
        .order_by(t.therapist_id)
    )
    if therapist_ids is not None:
        statement = statement.where(t.therapist_id.in_(list(therapist_ids)))
    if postal_code_prefix:
        statement = statement.where(t.postal_code.startswith(postal_code_prefix, autoescape=True))
    rows = session.execute(statement).all()
    narrowed = therapist_ids is not None or bool(postal_code_prefix)
    histories = answer_histories(session, [row.therapist_id for row in rows] if narrowed else None)
    therapists = []
    for row in rows:
        reason = "cooling" if row.cooling_until is not None else None
        if row.open_inquiry:
            reason = "open_inquiry" if reason is None else f"{reason}, open_inquiry"
        if only_contactable and reason is not None:
            continue
        therapists.append(
            Therapist(
                therapist_id=row.therapist_id,
                lat=row.lat,
                lon=row.lon,
                practice_key=row.practice_key,
                gender=row.gender,
                therapy_methods=tuple(row.therapy_methods),
                patient_age_min=row.patient_age_min,
                patient_age_max=row.patient_age_max,
                preferred_patient_gender=row.preferred_patient_gender,
                preferred_diagnoses=tuple(row.preferred_diagnoses),
                prefers_group_therapy=row.prefers_group_therapy,
                working_hours=row.working_hours,
                contactable=reason is None,
                not_contactable_reason=reason,
                potentially_available=row.potentially_available,
                answer_history=histories.get(row.therapist_id, ()),
            )
        )
    return therapists


# the longest travel distance a patient may set (business-rules.md §2); a road is never shorter than
# the great circle, so nobody farther away can be eligible
MAX_TRAVEL_KM = 200.0
_KM_PER_DEGREE = 111.19


def _within_box(point: tuple[float, float], km: float) -> tuple[Any, ...]:
    """Conditions: the location lies in the lat/lon box of `km` around `point`."""
    lat, lon = point
    dlat = km / _KM_PER_DEGREE
    dlon = km / (_KM_PER_DEGREE * max(math.cos(math.radians(min(abs(lat) + dlat, 89.0))), 0.01))
    return (
        Location.lat.between(lat - dlat, lat + dlat),
        Location.lon.between(lon - dlon, lon + dlon),
    )


def load_searches(
    session: Session,
    *,
    search_ids: Collection[int] | None = None,
    postal_code_prefix: str | None = None,
    max_open_inquiries: int | None = None,
    near: tuple[float, float] | None = None,
) -> list[Search]:
    """Active searches as the bundler sees them, longest waiting first.

    `contact_budget` is what this run may use: the budget left, and no more than
    `max_open_inquiries` minus the open inquiries the search is in already. Without a
    resolved location for the patient's current postal code `lat`/`lon` are None. `near`
    (lat, lon) keeps only located patients within reach of that point: inside the box of
    the longest travel distance a patient may set (a pre-filter; the bundler's distance
    rules decide).
    """
    s, p = PatientSearch, PatientProjection
    open_inquiries = (
        select(func.count())
        .select_from(InquiryPatient)
        .join(Inquiry, Inquiry.id == InquiryPatient.inquiry_id)
        .where(
            InquiryPatient.search_id == s.id,
            InquiryPatient.status == "open",
            Inquiry.status.in_(OPEN_INQUIRY_STATUSES),
        )
        .scalar_subquery()
    )
    statement = (
        select(
            s.id,
            s.patient_id,
            s.waiting_since,
            (s.contact_budget - s.contacts_used).label("budget_left"),
            open_inquiries.label("open_inquiries")
            if max_open_inquiries is not None
            else literal(0).label("open_inquiries"),
            p.gender,
            p.birth_date,
            p.diagnosis,
            p.preferred_therapy_method,
            p.preferred_therapist_gender,
            p.open_to_group_therapy,
            p.availability,
            p.max_travel_km,
            p.travel_mode,
            p.excluded_therapist_ids,
            Location.lat,
            Location.lon,
        )
        .join(p, p.patient_id == s.patient_id)
        .outerjoin(Location, _located("patient", s.patient_id, p.postal_code))
        .where(s.status == "active")
        .order_by(s.waiting_since, s.id)
    )
    if search_ids is not None:
        statement = statement.where(s.id.in_(list(search_ids)))
    if postal_code_prefix:
        statement = statement.where(p.postal_code.startswith(postal_code_prefix, autoescape=True))
    if near is not None:
        statement = statement.where(*_within_box(near, MAX_TRAVEL_KM))
    rows = session.execute(statement).all()
    excluded = _exclusions(session, [row.id for row in rows])
    searches = []
    for row in rows:
        budget = max(row.budget_left, 0)
        if max_open_inquiries is not None:
            budget = min(budget, max(max_open_inquiries - row.open_inquiries, 0))
        searches.append(
            Search(
                search_id=row.id,
                patient_id=row.patient_id,
                lat=row.lat,
                lon=row.lon,
                max_travel_km=float(row.max_travel_km),
                travel_mode=row.travel_mode,
                waiting_since=row.waiting_since,
                contact_budget=budget,
                gender=row.gender,
                birth_date=row.birth_date,
                diagnosis=row.diagnosis,
                preferred_therapy_method=row.preferred_therapy_method,
                preferred_therapist_gender=row.preferred_therapist_gender,
                open_to_group_therapy=row.open_to_group_therapy,
                availability=row.availability,
                # the search's exclusions and the patient's own (for every search)
                excluded_therapist_ids=frozenset(
                    [*excluded.get(row.id, ()), *(row.excluded_therapist_ids or ())]
                ),
            )
        )
    return searches


def _exclusions(session: Session, search_ids: list[int]) -> dict[int, list[int]]:
    """Therapists excluded per search (one query)."""
    if not search_ids:
        return {}
    ids = ARRAY(Integer)
    rows = session.execute(
        select(SearchExclusion.search_id, SearchExclusion.therapist_id).where(
            # one array parameter: a region has thousands of searches
            SearchExclusion.search_id == func.any(cast(literal(search_ids, ids), ids))
        )
    )
    excluded: dict[int, list[int]] = {}
    for search_id, therapist_id in rows:
        excluded.setdefault(search_id, []).append(therapist_id)
    return excluded
