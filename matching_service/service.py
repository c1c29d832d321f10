"""Use cases of matching_service."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel
from sqlalchemy import Table, and_, bindparam, select
from sqlalchemy.dialects.postgresql import insert as pg_insert

from matching_service.models import (
    OPEN_SEARCH_STATUSES,
    Base,
    Location,
    PatientProjection,
    PatientSearch,
    TherapistProjection,
)
from matching_service.placement.status import (
    PATIENT_STATUSES_OPEN_TO_SEARCH,
    patient_may_start_search,
)
from matching_service.schemas import (
    SEARCH_STARTED,
    LocationResolvedView,
    LocationUnresolvedView,
    PatientSnapshot,
    SearchStartedPayload,
    TherapistSnapshot,
)
from shared.db import UnitOfWork, utcnow
from shared.errors import Conflict, NotFound, RuleViolation
from shared.events import MAX_VERSION_JUMP, InvalidEvent, implausible_version
from shared.outbox import PendingEvent

PRODUCER = "matching_service"


@functools.cache
def _upsert_projection(model: type[Base], snapshot: type[BaseModel], key: str) -> Any:
    """INSERT .. ON CONFLICT DO UPDATE .. WHERE newer, built once per projection (it runs per
    event)."""
    table = model.__table__
    assert isinstance(table, Table)
    columns = [*snapshot.model_fields, "updated_at"]
    statement = pg_insert(table).values({name: bindparam(name) for name in columns})
    return statement.on_conflict_do_update(
        index_elements=[table.c[key]],
        set_={name: statement.excluded[name] for name in columns if name != key},
        where=table.c.version < statement.excluded.version,
    ).returning(table.c[key])


def _apply_snapshot(
    uow: UnitOfWork, model: type[Base], key: str, snapshot: BaseModel, version: int
) -> bool:
    """Upsert a projection row unless it already holds this or a newer version.

    A version implausibly far ahead of the one held (a forged or corrupt event) is refused
    with `InvalidEvent` (dead-lettered): applied, it would freeze the record against every
    later real event. Checked only for high versions, so the common case costs no query.
    """
    entity_id = getattr(snapshot, key)
    if version > MAX_VERSION_JUMP:
        held = uow.session.execute(
            select(model.version).where(getattr(model, key) == entity_id)  # type: ignore[attr-defined]
        ).scalar_one_or_none()
        if implausible_version(held, version):
            raise InvalidEvent(
                f"{model.__tablename__} {entity_id}: version {version} is implausibly far "
                f"ahead of the version held ({held or 'none'})"
            )
    values = {**snapshot.model_dump(), "updated_at": utcnow()}
    statement = _upsert_projection(model, type(snapshot), key)
    return uow.session.execute(statement, values).first() is not None


def apply_patient_snapshot(uow: UnitOfWork, snapshot: PatientSnapshot) -> bool:
    """Upsert the patient projection unless it already holds this or a newer version."""
    return _apply_snapshot(uow, PatientProjection, "patient_id", snapshot, snapshot.version)


def apply_therapist_snapshot(uow: UnitOfWork, snapshot: TherapistSnapshot) -> bool:
    """Upsert the therapist projection unless it already holds this or a newer version."""
    return _apply_snapshot(uow, TherapistProjection, "therapist_id", snapshot, snapshot.version)


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
        location = _location_problem(uow, "patient", patient_id)
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
            PendingEvent(
                SEARCH_STARTED.topic,
                SEARCH_STARTED.build(
                    producer=PRODUCER,
                    aggregate_id=search.id,
                    payload=payload,
                    correlation_id=correlation_id,
                ),
            )
        )
        uow.commit()
    return search


def get_search(uow: UnitOfWork, search_id: int) -> PatientSearch:
    """One search, or NotFound."""
    with uow:
        search = uow.session.get(PatientSearch, search_id)
        if search is None:
            raise NotFound(f"patient search {search_id} does not exist")
        return search


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
    key = (location.entity_type, location.entity_id)
    key_columns = ("entity_type", "entity_id")
    if location.version > MAX_VERSION_JUMP:
        held = uow.session.execute(
            select(Location.version).where(
                Location.entity_type == key[0], Location.entity_id == key[1]
            )
        ).scalar_one_or_none()
        if implausible_version(held, location.version):
            raise InvalidEvent(
                f"location of {key[0]} {key[1]}: version {location.version} is implausibly "
                f"far ahead of the version held ({held or 'none'})"
            )
    values: dict[str, Any] = {
        "entity_type": location.entity_type,
        "entity_id": location.entity_id,
        "version": location.version,
        "updated_at": utcnow(),
    }
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
    insert = pg_insert(Location).values(values)
    statement = insert.on_conflict_do_update(
        index_elements=[Location.entity_type, Location.entity_id],
        set_={name: insert.excluded[name] for name in values if name not in key_columns},
        where=Location.version < insert.excluded.version,
    ).returning(Location.entity_id)
    return uow.session.execute(statement).first() is not None


def _location_problem(uow: UnitOfWork, entity_type: str, entity_id: int) -> str | None:
    """None when the entity has a resolved location, else why not."""
    held = uow.session.execute(
        select(Location.resolved, Location.reason).where(
            Location.entity_type == entity_type, Location.entity_id == entity_id
        )
    ).first()
    if held is None:
        return NOT_RESOLVED_YET
    return None if held.resolved else held.reason or NOT_RESOLVED_YET


@dataclass(frozen=True)
class Unlocated:
    """A patient or therapist a bundle run must leave out: no resolved location, and why."""

    entity_type: str
    entity_id: int
    reason: str


def unlocated_entities(uow: UnitOfWork) -> list[Unlocated]:
    """Patients with an active search and active therapists that have no resolved location
    (never matched: distance checks fail closed), patients first, by id."""
    with uow:
        patients = uow.session.execute(
            select(PatientSearch.patient_id, Location.reason)
            .outerjoin(
                Location,
                and_(
                    Location.entity_type == "patient",
                    Location.entity_id == PatientSearch.patient_id,
                ),
            )
            .where(PatientSearch.status == "active", Location.resolved.is_not(True))
            .order_by(PatientSearch.patient_id)
        ).all()
        therapists = uow.session.execute(
            select(TherapistProjection.therapist_id, Location.reason)
            .outerjoin(
                Location,
                and_(
                    Location.entity_type == "therapist",
                    Location.entity_id == TherapistProjection.therapist_id,
                ),
            )
            .where(TherapistProjection.status == "active", Location.resolved.is_not(True))
            .order_by(TherapistProjection.therapist_id)
        ).all()
    return [
        *(Unlocated("patient", pid, reason or NOT_RESOLVED_YET) for pid, reason in patients),
        *(Unlocated("therapist", tid, reason or NOT_RESOLVED_YET) for tid, reason in therapists),
    ]
