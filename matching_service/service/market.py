"""The bundler's input read from the projections, and who may be contacted (business-rules.md §6).

One query per table, executed as Core on the session's connection, rows straight into the
bundler's value types (no ORM object or result handling per row); what a row has many of is
aggregated in SQL (a search's exclusions as an array, a therapist's answer history as JSON).
Contactability is computed in SQL from the database's own records: the therapist's status,
the practice's cooling periods, its open inquiries and the therapist's location.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
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
from matching_service.service import history as answer_history


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
    leaves them out with `no_location`). One query, the answer histories aggregated into it.
    """
    t = TherapistProjection
    conditions = [t.status == "active"]
    if therapist_ids is not None:
        conditions.append(t.therapist_id.in_(list(therapist_ids)))
    if postal_code_prefix:
        conditions.append(t.postal_code.startswith(postal_code_prefix, autoescape=True))
    # the histories of these therapists only (all of them: no filter)
    narrowed = select(t.therapist_id).where(*conditions) if len(conditions) > 1 else None
    history = answer_history.history_documents(narrowed)
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
            cooling_until(today),
            practice_has_open_inquiry(),
            history.c.entries,
        )
        .select_from(t)
        .outerjoin(Location, _located("therapist", t.therapist_id, t.postal_code))
        .outerjoin(history, history.c.therapist_id == t.therapist_id)
        .where(*conditions)
        .order_by(t.therapist_id)
    )
    therapists = []
    for (
        therapist_id,
        practice_key,
        gender,
        therapy_methods,
        age_min,
        age_max,
        preferred_gender,
        preferred_diagnoses,
        prefers_group,
        working_hours,
        potentially_available,
        lat,
        lon,
        cooling,
        open_inquiry,
        entries,
    ) in _rows(session, statement):
        reason = "cooling" if cooling is not None else None
        if open_inquiry:
            reason = "open_inquiry" if reason is None else f"{reason}, open_inquiry"
        if only_contactable and reason is not None:
            continue
        therapists.append(
            Therapist(
                therapist_id=therapist_id,
                lat=lat,
                lon=lon,
                practice_key=practice_key,
                gender=gender,
                therapy_methods=tuple(therapy_methods),
                patient_age_min=age_min,
                patient_age_max=age_max,
                preferred_patient_gender=preferred_gender,
                preferred_diagnoses=tuple(preferred_diagnoses),
                prefers_group_therapy=prefers_group,
                working_hours=working_hours,
                contactable=reason is None,
                not_contactable_reason=reason,
                potentially_available=potentially_available,
                answer_history=answer_history.history_entries(entries),
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
    # correlated per search (index probes): a plan that stays right when the statistics are
    # stale, as they are after a run wrote thousands of inquiries (joined aggregates then
    # turn into nested loops over every open inquiry)
    if max_open_inquiries is not None:
        # the inquiry's status is read per patient row (a scalar subquery, never turned into
        # a join): the plan starts from the search's own rows
        inquiry_status = (
            select(Inquiry.status).where(Inquiry.id == InquiryPatient.inquiry_id).scalar_subquery()
        )
        open_inquiries: Any = (
            select(func.count())
            .select_from(InquiryPatient)
            .where(
                InquiryPatient.search_id == s.id,
                InquiryPatient.status == "open",
                inquiry_status.in_(OPEN_INQUIRY_STATUSES),
            )
            .scalar_subquery()
        )
    else:
        open_inquiries = literal(0)
    # the search's exclusions as one array
    excluded = (
        select(func.array_agg(SearchExclusion.therapist_id))
        .where(SearchExclusion.search_id == s.id)
        .scalar_subquery()
    )
    statement = (
        select(
            s.id,
            s.patient_id,
            s.waiting_since,
            s.contact_budget - s.contacts_used,
            open_inquiries,
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
            excluded,
            Location.lat,
            Location.lon,
        )
        .select_from(s)
        .join(p, p.patient_id == s.patient_id)
        .outerjoin(Location, _located("patient", s.patient_id, p.postal_code))
        .where(s.status == "active")
        .order_by(s.waiting_since, s.id)
    )
    if search_ids is not None:
        statement = statement.where(s.id == func.any(_int_array(list(search_ids))))
    if postal_code_prefix:
        statement = statement.where(p.postal_code.startswith(postal_code_prefix, autoescape=True))
    if near is not None:
        statement = statement.where(*_within_box(near, MAX_TRAVEL_KM))
    searches = []
    for (
        search_id,
        patient_id,
        waiting_since,
        budget_left,
        open_count,
        gender,
        birth_date,
        diagnosis,
        preferred_method,
        preferred_gender,
        open_to_group,
        availability,
        max_travel_km,
        travel_mode,
        patient_excluded,
        search_excluded,
        lat,
        lon,
    ) in _rows(session, statement):
        budget = max(budget_left, 0)
        if max_open_inquiries is not None:
            budget = min(budget, max(max_open_inquiries - open_count, 0))
        searches.append(
            Search(
                search_id=search_id,
                patient_id=patient_id,
                lat=lat,
                lon=lon,
                max_travel_km=float(max_travel_km),
                travel_mode=travel_mode,
                waiting_since=waiting_since,
                contact_budget=budget,
                gender=gender,
                birth_date=birth_date,
                diagnosis=diagnosis,
                preferred_therapy_method=preferred_method,
                preferred_therapist_gender=preferred_gender,
                open_to_group_therapy=open_to_group,
                availability=availability,
                # the search's exclusions and the patient's own (for every search)
                excluded_therapist_ids=frozenset(
                    [*(search_excluded or ()), *(patient_excluded or ())]
                ),
            )
        )
    return searches


def _rows(session: Session, statement: Any) -> Sequence[Any]:
    """The rows of a Core statement, on the session's connection (in its transaction),
    without the ORM's per-row result handling."""
    return session.connection().execute(statement).all()


def _int_array(items: list[int]) -> Any:
    """One parameter holding many ids (`= ANY(...)`: a region has thousands of searches)."""
    ids = ARRAY(Integer)
    return cast(literal(items, ids), ids)
