"""Use cases of matching_service."""

from __future__ import annotations

import functools
from typing import Any

from pydantic import BaseModel
from sqlalchemy import Table, bindparam, select
from sqlalchemy.dialects.postgresql import insert as pg_insert

from matching_service.models import (
    OPEN_SEARCH_STATUSES,
    Base,
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
        if not patient.qualified:
            raise RuleViolation(
                f"patient {patient_id} does not meet the qualification criteria",
                {"patient_id": patient_id, "unmet_criteria": patient.unmet_criteria},
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
