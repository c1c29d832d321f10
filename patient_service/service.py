"""Use cases of patient_service: each takes a unit of work and commits what it changes."""

from __future__ import annotations

import logging
import zlib
from datetime import date

from sqlalchemy import func, or_, select, text

from patient_service.models import Patient
from patient_service.rules import (
    ALLOWED_TRANSITIONS,
    PatientStatus,
    Qualification,
    QualificationInput,
    QualificationPolicy,
    check_staff_transition,
    from_older_search,
    qualify,
)
from patient_service.schemas import (
    PATIENT_CREATED,
    PATIENT_UPDATED,
    PatientCreate,
    PatientEventPayload,
    PatientListQuery,
    PatientUpdate,
)
from shared.db import UnitOfWork, utcnow
from shared.errors import Conflict, NotFound
from shared.events import EventType
from shared.outbox import PendingEvent
from shared.web import Page

PRODUCER = "patient_service"
log = logging.getLogger(__name__)


class DuplicatePatient(Conflict):
    """A patient with the same name and birth date, or the same email, exists."""

    code = "duplicate_patient"


def register_patient(
    uow: UnitOfWork,
    command: PatientCreate,
    policy: QualificationPolicy,
    *,
    force: bool = False,
    correlation_id: str | None = None,
) -> Patient:
    """Create a patient (409 on a probable duplicate unless forced) and emit patient.created."""
    data = command.model_dump()
    data["email"] = data["email"].lower() if data.get("email") else None
    with uow:
        if not force:
            _lock_identity(uow, data)
            existing = _find_duplicate(uow, data)
            if existing is not None:
                raise DuplicatePatient(
                    f"patient {existing} has the same name and birth date or email; "
                    "repeat with ?force=true to create anyway",
                    {"existing_id": existing},
                )
        patient = Patient(**data, status=PatientStatus.REGISTERED.value, version=1)
        uow.session.add(patient)
        uow.session.flush()
        uow.emit(_event(PATIENT_CREATED, patient, policy, sorted(data), correlation_id))
        uow.commit()
    return patient


def _lock_identity(uow: UnitOfWork, data: dict[str, object]) -> None:
    """Serialise concurrent registrations of the same person (transaction-scoped lock)."""
    keys = [f"{data['last_name']}|{data['first_name']}|{data['birth_date']}".lower()]
    if data.get("email"):
        keys.append(str(data["email"]))
    for key in sorted(keys):
        uow.session.execute(
            text("SELECT pg_advisory_xact_lock(:namespace, :key)"),
            {"namespace": 1001, "key": zlib.crc32(key.encode()) - 2**31},
        )


def _find_duplicate(uow: UnitOfWork, data: dict[str, object]) -> int | None:
    same_person = (
        (func.lower(Patient.last_name) == str(data["last_name"]).lower())
        & (func.lower(Patient.first_name) == str(data["first_name"]).lower())
        & (Patient.birth_date == data["birth_date"])
    )
    condition = (
        or_(same_person, Patient.email == data["email"]) if data.get("email") else same_person
    )
    return uow.session.execute(
        select(Patient.id).where(condition).order_by(Patient.id).limit(1)
    ).scalar_one_or_none()


def get_patient(uow: UnitOfWork, patient_id: int) -> Patient:
    """One patient, or NotFound."""
    with uow:
        return _load(uow, patient_id)


def _load(uow: UnitOfWork, patient_id: int, *, for_update: bool = False) -> Patient:
    statement = select(Patient).where(Patient.id == patient_id)
    if for_update:
        statement = statement.with_for_update()
    patient = uow.session.execute(statement).scalar_one_or_none()
    if patient is None:
        raise NotFound(f"patient {patient_id} does not exist")
    return patient


def list_patients(uow: UnitOfWork, query: PatientListQuery) -> Page:
    """A page of patients, newest first, filtered by status and postal-code prefix."""
    conditions = []
    if query.status is not None:
        conditions.append(Patient.status == query.status.value)
    if query.postal_code_prefix:
        conditions.append(Patient.postal_code.startswith(query.postal_code_prefix, autoescape=True))
    with uow:
        total = uow.session.execute(
            select(func.count()).select_from(Patient).where(*conditions)
        ).scalar_one()
        items = (
            uow.session.execute(
                select(Patient)
                .where(*conditions)
                .order_by(Patient.id.desc())
                .offset((query.page - 1) * query.per_page)
                .limit(query.per_page)
            )
            .scalars()
            .all()
        )
    return Page(items=items, total=total, page=query.page, per_page=query.per_page)


def update_patient(
    uow: UnitOfWork,
    patient_id: int,
    changes: PatientUpdate,
    policy: QualificationPolicy,
    *,
    correlation_id: str | None = None,
) -> Patient:
    """Apply the given fields and emit patient.updated; a status only along the transitions
    staff own (`searching` and `in_therapy` come from the patient's search, via events)."""
    fields = changes.model_dump(exclude_unset=True)
    if fields.get("email"):
        fields["email"] = fields["email"].lower()
    with uow:
        patient = _load(uow, patient_id, for_update=True)
        if "status" in fields:
            check_staff_transition(PatientStatus(patient.status), PatientStatus(fields["status"]))
        changed = sorted(name for name, value in fields.items() if getattr(patient, name) != value)
        if not changed:
            return patient
        for name in changed:
            setattr(patient, name, fields[name])
        patient.version += 1
        patient.updated_at = utcnow()
        uow.session.flush()
        uow.emit(_event(PATIENT_UPDATED, patient, policy, changed, correlation_id))
        uow.commit()
    return patient


def mark_searching(
    uow: UnitOfWork,
    patient_id: int,
    search_id: int,
    policy: QualificationPolicy,
    *,
    correlation_id: str | None = None,
) -> bool:
    """Matching started a search: move the patient to `searching` when the lifecycle allows.

    Runs inside the consumer's unit of work (the consumer commits). A patient already
    searching, unknown here, or in a status that cannot move (matching refuses searches for
    them) is left as it is, and so is one whose newer search was reported already; returns
    whether the status changed.
    """
    patient = _following(uow, patient_id, search_id, "started")
    if patient is None:
        return False
    current = PatientStatus(patient.status)
    if PatientStatus.SEARCHING not in ALLOWED_TRANSITIONS[current]:
        if current is not PatientStatus.SEARCHING:
            log.warning("search started for patient %s in status %s: ignored", patient_id, current)
        return False
    _set_status(uow, patient, PatientStatus.SEARCHING, policy, correlation_id)
    return True


def mark_search_cancelled(
    uow: UnitOfWork,
    patient_id: int,
    search_id: int,
    policy: QualificationPolicy,
    *,
    correlation_id: str | None = None,
) -> bool:
    """Matching cancelled the patient's search: a `searching` patient moves to
    `search_cancelled`.

    Runs inside the consumer's unit of work (the consumer commits). A patient unknown here,
    no longer searching (already moved, or placed meanwhile), or searching again in a newer
    search is left as it is; returns whether the status changed.
    """
    patient = _following(uow, patient_id, search_id, "cancelled")
    if patient is None:
        return False
    if patient.status != PatientStatus.SEARCHING:
        log.info(
            "search cancelled for patient %s in status %s: ignored", patient_id, patient.status
        )
        return False
    _set_status(uow, patient, PatientStatus.SEARCH_CANCELLED, policy, correlation_id)
    return True


def mark_in_therapy(
    uow: UnitOfWork,
    patient_id: int,
    search_id: int,
    policy: QualificationPolicy,
    *,
    correlation_id: str | None = None,
) -> bool:
    """Staff confirmed the place after trial sessions (search.succeeded): a `searching`
    patient moves to `in_therapy`.

    Runs inside the consumer's unit of work (the consumer commits). A patient unknown here,
    not searching (a redelivery finds them in therapy already), or following a newer search
    is left as it is; returns whether the status changed.
    """
    patient = _following(uow, patient_id, search_id, "succeeded")
    if patient is None:
        return False
    if patient.status != PatientStatus.SEARCHING:
        log.info(
            "search succeeded for patient %s in status %s: ignored", patient_id, patient.status
        )
        return False
    _set_status(uow, patient, PatientStatus.IN_THERAPY, policy, correlation_id)
    return True


def _following(uow: UnitOfWork, patient_id: int, search_id: int, what: str) -> Patient | None:
    """The patient (locked) following `search_id`, now its newest search; None (logged) when
    the patient is unknown or the event is about an older search."""
    patient = uow.session.execute(
        select(Patient).where(Patient.id == patient_id).with_for_update()
    ).scalar_one_or_none()
    if patient is None:
        log.warning("search %s for unknown patient %s: ignored", what, patient_id)
        return None
    if from_older_search(patient.search_id, search_id):
        log.info(
            "search %s %s of patient %s: ignored, search %s is newer",
            search_id,
            what,
            patient_id,
            patient.search_id,
        )
        return None
    patient.search_id = search_id
    return patient


def _set_status(
    uow: UnitOfWork,
    patient: Patient,
    status: PatientStatus,
    policy: QualificationPolicy,
    correlation_id: str | None,
) -> None:
    patient.status = status.value
    patient.version += 1
    patient.updated_at = utcnow()
    uow.session.flush()
    uow.emit(_event(PATIENT_UPDATED, patient, policy, ["status"], correlation_id))


def patient_qualification(
    uow: UnitOfWork, patient_id: int, policy: QualificationPolicy
) -> Qualification:
    """Every unmet qualification criterion of a patient, as of today."""
    with uow:
        return _qualify(_load(uow, patient_id), policy)


def _qualify(
    patient: Patient, policy: QualificationPolicy, today: date | None = None
) -> Qualification:
    return qualify(
        QualificationInput(
            contract_signed=patient.contract_signed,
            payment_received=patient.payment_received,
            diagnosis=patient.diagnosis,
            availability=patient.availability,
            group_therapy_only=patient.group_therapy_only,
            last_therapy_end_date=patient.last_therapy_end_date,
            postal_code=patient.postal_code,
        ),
        today or utcnow().date(),
        min_weekly_hours=policy.min_weekly_hours,
        min_weekly_hours_group=policy.min_weekly_hours_group,
        two_year_rule_days=policy.two_year_rule_days,
    )


def _event(
    event_type: EventType,
    patient: Patient,
    policy: QualificationPolicy,
    changed: list[str],
    correlation_id: str | None,
) -> PendingEvent:
    qualification = _qualify(patient, policy)
    payload = PatientEventPayload(
        patient_id=patient.id,
        version=patient.version,
        status=PatientStatus(patient.status),
        gender=patient.gender,  # type: ignore[arg-type]
        birth_date=patient.birth_date,
        postal_code=patient.postal_code,
        diagnosis=patient.diagnosis,
        symptoms=patient.symptoms,
        availability=patient.availability,
        max_travel_km=patient.max_travel_km,
        travel_mode=patient.travel_mode,  # type: ignore[arg-type]
        preferred_therapist_gender=patient.preferred_therapist_gender,  # type: ignore[arg-type]
        preferred_therapy_method=patient.preferred_therapy_method,  # type: ignore[arg-type]
        open_to_group_therapy=patient.open_to_group_therapy,
        group_therapy_only=patient.group_therapy_only,
        qualified=qualification.qualified,
        unmet_criteria=list(qualification.unmet),
        two_year_rule_flag=qualification.two_year_rule_flag,
        changed_fields=changed,
    )
    return PendingEvent.of(
        event_type,
        producer=PRODUCER,
        aggregate_id=patient.id,
        payload=payload,
        correlation_id=correlation_id,
    )
