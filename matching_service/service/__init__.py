"""Use cases of matching_service: projections, locations and searches (this module); bundle
runs, inquiries, answers, cooling, follow-ups and analytics in the modules beside it."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from pydantic import BaseModel
from sqlalchemy import ColumnElement, Table, and_, any_, bindparam, literal, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert

from matching_service.models import (
    INFRA,
    OPEN_SEARCH_STATUSES,
    Base,
    Inquiry,
    InquiryPatient,
    Location,
    PatientProjection,
    PatientSearch,
    SearchExclusion,
    TherapistProjection,
)
from matching_service.placement.status import (
    FINAL_STATUSES,
    PATIENT_STATUSES_OPEN_TO_SEARCH,
    STAFF_TRANSITIONS,
    patient_may_start_search,
    staff_sources,
)
from matching_service.placement.values import SearchStatus
from matching_service.schemas import (
    SEARCH_CANCELLED,
    SEARCH_PAUSED,
    SEARCH_RESUMED,
    SEARCH_STARTED,
    ExclusionCreate,
    LocationResolvedView,
    LocationUnresolvedView,
    PatientSnapshot,
    SearchListQuery,
    SearchStartedPayload,
    SearchStatusChange,
    SearchStatusChangedPayload,
    TherapistSnapshot,
)
from matching_service.service.withdrawals import SEARCH_CANCELLED as WITHDRAWN_CANCELLED
from matching_service.service.withdrawals import withdraw_search
from shared import audit
from shared.db import UnitOfWork, count_upto, ids_where, utcnow
from shared.errors import Conflict, InvalidTransition, NotFound, RuleViolation
from shared.events import MAX_VERSION_JUMP, EventType, InvalidEvent, implausible_version
from shared.outbox import PendingEvent
from shared.web import Page

PRODUCER = "matching_service"


@functools.cache
def _upsert_newer(model: type[Base], columns: tuple[str, ...], keys: tuple[str, ...]) -> Any:
    """INSERT .. ON CONFLICT (keys) DO UPDATE .. WHERE newer, built once per table and
    shape (it runs per event)."""
    table = model.__table__
    assert isinstance(table, Table)
    statement = pg_insert(table).values({name: bindparam(name) for name in columns})
    return statement.on_conflict_do_update(
        index_elements=[table.c[key] for key in keys],
        set_={name: statement.excluded[name] for name in columns if name not in keys},
        where=table.c.version < statement.excluded.version,
    ).returning(table.c[keys[-1]])


def _apply_newer(
    uow: UnitOfWork, model: type[Base], keys: dict[str, Any], values: dict[str, Any]
) -> bool:
    """Upsert a row (`keys` and `values` with a `version`) unless it already holds this or
    a newer version.

    A version implausibly far ahead of the one held (a forged or corrupt event) is refused
    with `InvalidEvent` (dead-lettered): applied, it would freeze the record against every
    later real event. Checked only for high versions, so the common case costs no query.
    """
    version = values["version"]
    if version > MAX_VERSION_JUMP:
        held = uow.session.execute(
            select(model.version).where(  # type: ignore[attr-defined]
                *(getattr(model, name) == value for name, value in keys.items())
            )
        ).scalar_one_or_none()
        if implausible_version(held, version):
            entity = " ".join(str(value) for value in keys.values())
            raise InvalidEvent(
                f"{model.__tablename__} {entity}: version {version} is implausibly far "
                f"ahead of the version held ({held or 'none'})"
            )
    row = {**keys, **values, "updated_at": utcnow()}
    statement = _upsert_newer(model, tuple(row), tuple(keys))
    return uow.session.execute(statement, row).first() is not None


def _apply_snapshot(uow: UnitOfWork, model: type[Base], key: str, snapshot: BaseModel) -> bool:
    """Upsert a projection row unless it already holds this or a newer version."""
    values = snapshot.model_dump()
    return _apply_newer(uow, model, {key: values.pop(key)}, values)


def apply_patient_snapshot(uow: UnitOfWork, snapshot: PatientSnapshot) -> bool:
    """Upsert the patient projection unless it already holds this or a newer version."""
    return _apply_snapshot(uow, PatientProjection, "patient_id", snapshot)


def apply_therapist_snapshot(uow: UnitOfWork, snapshot: TherapistSnapshot) -> bool:
    """Upsert the therapist projection unless it already holds this or a newer version."""
    return _apply_snapshot(uow, TherapistProjection, "therapist_id", snapshot)


def start_search(
    uow: UnitOfWork,
    patient_id: int,
    *,
    default_budget: int,
    correlation_id: str | None = None,
) -> PatientSearch:
    """Open a search for a qualified patient known to matching; one open search per patient."""
    with uow:
        patient = uow.session.get(PatientProjection, patient_id)
        if patient is None:
            raise NotFound(
                f"patient {patient_id} is not known to matching (yet): its registration event "
                "may still be on its way; retry in a moment",
                {"patient_id": patient_id},
            )
        if not patient_may_start_search(patient.status):
            allowed = ", ".join(sorted(PATIENT_STATUSES_OPEN_TO_SEARCH))
            raise Conflict(
                f"patient {patient_id} is in status '{patient.status}'; a search starts only "
                f"for patients in status {allowed}",
                {"patient_id": patient_id, "patient_status": patient.status},
            )
        location = _location_problem(uow, "patient", patient_id, patient.postal_code)
        if not patient.qualified or location is not None:
            unmet = [*patient.unmet_criteria, *(["location_unresolved"] if location else [])]
            details: dict[str, Any] = {"patient_id": patient_id, "unmet_criteria": unmet}
            if location is not None:
                details["location_reason"] = location
            raise RuleViolation(
                f"patient {patient_id} does not meet the qualification criteria", details
            )
        now = utcnow()
        search_id = uow.session.execute(
            pg_insert(PatientSearch)
            .values(
                patient_id=patient_id,
                status="active",
                waiting_since=now,
                contact_budget=default_budget,
                created_at=now,
                updated_at=now,
            )
            .on_conflict_do_nothing(
                index_elements=[PatientSearch.patient_id],
                index_where=PatientSearch.status.in_(OPEN_SEARCH_STATUSES),
            )
            .returning(PatientSearch.id)
        ).scalar_one_or_none()
        if search_id is None:
            existing = uow.session.execute(
                select(PatientSearch.id).where(
                    PatientSearch.patient_id == patient_id,
                    PatientSearch.status.in_(OPEN_SEARCH_STATUSES),
                )
            ).scalar_one_or_none()
            raise Conflict(
                f"patient {patient_id} already has an open search ({existing})",
                {"existing_search_id": existing},
            )
        search = uow.session.get_one(PatientSearch, search_id)
        payload = SearchStartedPayload(
            search_id=search.id,
            patient_id=patient_id,
            status="active",
            waiting_since=search.waiting_since,
            contact_budget=search.contact_budget,
        )
        uow.emit(
            PendingEvent.of(
                SEARCH_STARTED,
                producer=PRODUCER,
                aggregate_id=search.id,
                payload=payload,
                correlation_id=correlation_id,
            )
        )
        audit.record(uow.session, INFRA.audit_events, "create", "patient_search", search_id)
        uow.commit()
    return search


@dataclass(frozen=True)
class SearchDetail:
    """A search with what the detail view shows beside its row."""

    search: PatientSearch
    exclusions: list[SearchExclusion]
    # every inquiry the search is in, oldest first, with the patient's status there
    inquiries: list[dict[str, Any]] = field(default_factory=list)

    def __getattr__(self, name: str) -> Any:
        """The search's own columns (id, status, waiting_since, ...) read through."""
        if name == "search":  # not set yet (copy, unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.search, name)

    @property
    def contact_budget_left(self) -> int:
        """Contacts granted and not yet used by an inquiry."""
        return max(self.search.contact_budget - self.search.contacts_used, 0)


def list_searches(uow: UnitOfWork, query: SearchListQuery) -> Page:
    """A page of searches, longest waiting first, filtered by status, the patient's
    postal-code prefix and waiting time."""
    conditions = []
    if query.status is not None:
        conditions.append(PatientSearch.status == query.status)
    if query.postal_code_prefix:
        conditions.append(
            PatientSearch.patient_id
            == any_(
                ids_where(
                    PatientProjection.patient_id,
                    PatientProjection.postal_code.startswith(
                        query.postal_code_prefix, autoescape=True
                    ),
                )
            )
        )
    if query.waiting_longer_than_days is not None:
        since = utcnow() - timedelta(days=query.waiting_longer_than_days)
        conditions.append(PatientSearch.waiting_since < since)
    with uow:
        total, exact = count_upto(uow.session, select(PatientSearch).where(*conditions))
        items = (
            uow.session.execute(
                select(PatientSearch)
                .where(*conditions)
                .order_by(PatientSearch.waiting_since, PatientSearch.id)
                .offset((query.page - 1) * query.per_page)
                .limit(query.per_page)
            )
            .scalars()
            .all()
        )
    return Page(
        items=items, total=total, page=query.page, per_page=query.per_page, total_exact=exact
    )


def search_detail(uow: UnitOfWork, search_id: int) -> SearchDetail:
    """One search with its budget left and exclusions, or NotFound."""
    with uow:
        return _detail(uow, _load_search(uow, search_id))


def _load_search(uow: UnitOfWork, search_id: int) -> PatientSearch:
    search = uow.session.get(PatientSearch, search_id, populate_existing=True)
    if search is None:
        raise NotFound(f"patient search {search_id} does not exist")
    return search


def _detail(uow: UnitOfWork, search: PatientSearch) -> SearchDetail:
    exclusions = (
        uow.session.execute(
            select(SearchExclusion)
            .where(SearchExclusion.search_id == search.id)
            .order_by(SearchExclusion.created_at, SearchExclusion.id)
        )
        .scalars()
        .all()
    )
    return SearchDetail(search, list(exclusions), _search_inquiries(uow, search.id))


def _search_inquiries(uow: UnitOfWork, search_id: int) -> list[dict[str, Any]]:
    rows = uow.session.execute(
        select(
            Inquiry.id,
            Inquiry.therapist_id,
            Inquiry.status,
            Inquiry.created_at,
            Inquiry.sent_at,
            InquiryPatient.status.label("patient_status"),
            InquiryPatient.outcome,
        )
        .join(InquiryPatient, InquiryPatient.inquiry_id == Inquiry.id)
        .where(InquiryPatient.search_id == search_id)
        .order_by(Inquiry.created_at, Inquiry.id)
    )
    return [
        {
            "inquiry_id": row.id,
            "therapist_id": row.therapist_id,
            "status": row.status,
            "created_at": row.created_at,
            "sent_at": row.sent_at,
            "patient_status": row.patient_status,
            "outcome": row.outcome,
        }
        for row in rows
    ]


_STATUS_EVENTS: dict[SearchStatus, EventType] = {
    SearchStatus.PAUSED: SEARCH_PAUSED,
    SearchStatus.ACTIVE: SEARCH_RESUMED,
    SearchStatus.CANCELLED: SEARCH_CANCELLED,
}


def change_search_status(
    uow: UnitOfWork,
    search_id: int,
    change: SearchStatusChange,
    *,
    correlation_id: str | None = None,
) -> SearchDetail:
    """Staff pause, resume or cancel a search (business-rules.md §5); one conditional UPDATE, so of
    two concurrent changes from the same status only one succeeds."""
    target = SearchStatus(change.status)
    sources = staff_sources(target)
    with uow:
        # the locked row as it is now (not as the statement's snapshot saw it): its status
        # decides, and is the event's previous status
        held = (
            select(PatientSearch.id, PatientSearch.status)
            .where(PatientSearch.id == search_id)
            .with_for_update(key_share=True)
            .subquery("held")
        )
        # and the changed row itself, into the session (no second read)
        changed = uow.session.execute(
            update(PatientSearch)
            .where(PatientSearch.id == held.c.id, held.c.status.in_(sources))
            .values(status=target.value, status_reason=change.reason, updated_at=utcnow())
            .returning(PatientSearch, held.c.status)
            .execution_options(populate_existing=True, synchronize_session=False)
        ).first()
        if changed is None:
            current = SearchStatus(_load_search(uow, search_id).status)
            allowed = sorted(STAFF_TRANSITIONS[current])
            options = ", ".join(allowed) or "none"
            raise InvalidTransition(
                f"a search in status '{current}' cannot be set to '{target}' by staff; "
                f"allowed: {options}",
                {"current": current.value, "requested": target.value, "allowed": allowed},
            )
        search = changed.PatientSearch
        if target is SearchStatus.CANCELLED:
            withdraw_search(uow, search_id, WITHDRAWN_CANCELLED, correlation_id=correlation_id)
        event = _STATUS_EVENTS[target]
        payload = SearchStatusChangedPayload(
            search_id=search.id,
            patient_id=search.patient_id,
            status=target.value,
            previous_status=changed.status,
            waiting_since=search.waiting_since,
            contact_budget=search.contact_budget,
        )
        uow.emit(
            PendingEvent.of(
                event,
                producer=PRODUCER,
                aggregate_id=search.id,
                payload=payload,
                correlation_id=correlation_id,
            )
        )
        detail = _detail(uow, search)
        # written with the event, in its statement
        audit.record_on_commit(
            uow,
            INFRA.audit_events,
            "status_change",
            "patient_search",
            search_id,
            ["status", "status_reason"],
        )
        uow.commit()
        return detail


def grant_contacts(uow: UnitOfWork, search_id: int, count: int) -> SearchDetail:
    """Staff grant more contacts; grants add up (one atomic UPDATE); 409 on a final search."""
    with uow:
        granted = uow.session.execute(
            update(PatientSearch)
            .where(
                PatientSearch.id == search_id,
                PatientSearch.status.not_in([status.value for status in FINAL_STATUSES]),
            )
            .values(contact_budget=PatientSearch.contact_budget + count, updated_at=utcnow())
            .returning(PatientSearch.id)
        ).first()
        search = _load_search(uow, search_id)
        if granted is None:
            raise Conflict(
                f"patient search {search_id} is {search.status}: a final search gets no contacts",
                {"current": search.status},
            )
        detail = _detail(uow, search)
        uow.commit()
        return detail


def exclude_therapist(
    uow: UnitOfWork, search_id: int, exclusion: ExclusionCreate
) -> SearchExclusion:
    """Exclude a therapist known to matching from a search, once (409 on a second time)."""
    with uow:
        _load_search(uow, search_id)
        # one statement: the therapist must be in the projection, the pair must be new
        inserted = uow.session.execute(
            pg_insert(SearchExclusion)
            .from_select(
                ["search_id", "therapist_id", "reason", "created_at"],
                select(
                    literal(search_id),
                    TherapistProjection.therapist_id,
                    literal(exclusion.reason),
                    literal(utcnow()),
                ).where(TherapistProjection.therapist_id == exclusion.therapist_id),
            )
            .on_conflict_do_nothing(
                index_elements=[SearchExclusion.search_id, SearchExclusion.therapist_id]
            )
            .returning(SearchExclusion.id)
        ).scalar_one_or_none()
        if inserted is None:
            existing = uow.session.execute(
                select(SearchExclusion).where(
                    SearchExclusion.search_id == search_id,
                    SearchExclusion.therapist_id == exclusion.therapist_id,
                )
            ).scalar_one_or_none()
            if existing is None:
                raise RuleViolation(
                    f"therapist {exclusion.therapist_id} is not known to matching",
                    [{"field": "therapist_id", "message": "no such therapist"}],
                )
            raise Conflict(
                f"therapist {exclusion.therapist_id} is already excluded from search {search_id}",
                {"therapist_id": exclusion.therapist_id, "since": existing.created_at.isoformat()},
            )
        created = uow.session.get_one(SearchExclusion, inserted)
        uow.commit()
        return created


def get_patient_projection(uow: UnitOfWork, patient_id: int) -> PatientProjection | None:
    """Matching's copy of a patient, if it has one."""
    with uow:
        return uow.session.get(PatientProjection, patient_id)


# ---------------------------------------------------------------- locations (fail closed)

NOT_RESOLVED_YET = "not_resolved_yet"  # no location event has arrived for the entity


def apply_location(
    uow: UnitOfWork, location: LocationResolvedView | LocationUnresolvedView
) -> bool:
    """Upsert an entity's location (resolved or not) unless a newer version is held."""
    values: dict[str, Any] = {"version": location.version, "postal_code": location.postal_code}
    if isinstance(location, LocationResolvedView):
        values.update(
            resolved=True,
            lat=location.lat,
            lon=location.lon,
            precision=location.precision,
            source=location.source,
            reason=None,
        )
    else:
        values.update(
            resolved=False, lat=None, lon=None, precision=None, source=None, reason=location.reason
        )
    keys = {"entity_type": location.entity_type, "entity_id": location.entity_id}
    return _apply_newer(uow, Location, keys, values)


def _location_reason(
    resolved: bool | None, reason: str | None, located_at: str | None, postal_code: str | None
) -> str | None:
    """None when a location row says the entity is placed at its current postal code, else
    why not: no row, unresolved, or computed for another (old) postal code."""
    if resolved is None:
        return NOT_RESOLVED_YET
    if not resolved:
        return reason or NOT_RESOLVED_YET
    if located_at is not None and postal_code is not None and located_at != postal_code:
        return NOT_RESOLVED_YET  # the location event of the new address is on its way
    return None


def _location_problem(
    uow: UnitOfWork, entity_type: str, entity_id: int, postal_code: str
) -> str | None:
    """None when the entity has a resolved location for `postal_code` (the one matching
    holds for it), else why not."""
    held = uow.session.execute(
        select(Location.resolved, Location.reason, Location.postal_code).where(
            Location.entity_type == entity_type, Location.entity_id == entity_id
        )
    ).first()
    if held is None:
        return NOT_RESOLVED_YET
    return _location_reason(held.resolved, held.reason, held.postal_code, postal_code)


@dataclass(frozen=True)
class Unlocated:
    """A patient or therapist a bundle run must leave out: no resolved location, and why."""

    entity_type: str
    entity_id: int
    reason: str


def unlocated_entities(uow: UnitOfWork) -> list[Unlocated]:
    """Patients with an active search and active therapists that have no resolved location
    for their current postal code (never matched: distance checks fail closed), patients
    first, by id."""
    with uow:
        patients = uow.session.execute(
            select(
                PatientSearch.patient_id,
                Location.resolved,
                Location.reason,
                Location.postal_code,
                PatientProjection.postal_code,
            )
            .join(PatientProjection, PatientProjection.patient_id == PatientSearch.patient_id)
            .outerjoin(
                Location,
                and_(
                    Location.entity_type == "patient",
                    Location.entity_id == PatientSearch.patient_id,
                ),
            )
            .where(PatientSearch.status == "active", _not_located(PatientProjection.postal_code))
            .order_by(PatientSearch.patient_id)
        ).all()
        therapists = uow.session.execute(
            select(
                TherapistProjection.therapist_id,
                Location.resolved,
                Location.reason,
                Location.postal_code,
                TherapistProjection.postal_code,
            )
            .outerjoin(
                Location,
                and_(
                    Location.entity_type == "therapist",
                    Location.entity_id == TherapistProjection.therapist_id,
                ),
            )
            .where(
                TherapistProjection.status == "active",
                _not_located(TherapistProjection.postal_code),
            )
            .order_by(TherapistProjection.therapist_id)
        ).all()
    return [
        *(
            Unlocated("patient", row[0], _location_reason(*row[1:]) or NOT_RESOLVED_YET)
            for row in patients
        ),
        *(
            Unlocated("therapist", row[0], _location_reason(*row[1:]) or NOT_RESOLVED_YET)
            for row in therapists
        ),
    ]


def _not_located(postal_code: Any) -> ColumnElement[bool]:
    """No resolved location row, or one computed for another postal code than `postal_code`."""
    return or_(Location.resolved.is_not(True), Location.postal_code != postal_code)
