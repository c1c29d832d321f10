"""Use cases of patient_service: each takes a unit of work and commits what it changes."""

from __future__ import annotations

import functools
import logging
import zlib
from collections.abc import Callable, Mapping
from datetime import date
from typing import Any

from sqlalchemy import (
    Date,
    Integer,
    Select,
    Text,
    bindparam,
    cast,
    func,
    literal,
    literal_column,
    or_,
    select,
    text,
    update,
)

from patient_service.models import INFRA, Patient
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
    PATIENT_ERASED,
    PATIENT_UPDATED,
    ExclusionCreate,
    PatientCreate,
    PatientErasedPayload,
    PatientEventPayload,
    PatientExport,
    PatientListQuery,
    PatientOut,
    PatientUpdate,
)
from shared import audit
from shared.db import UnitOfWork, count_upto, utcnow
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
        _audit_on_commit(uow, "create", patient.id, data)
        uow.commit()
    return patient


def _audit(uow: UnitOfWork, action: str, patient_ids: object, fields: Any = ()) -> None:
    audit.record(uow.session, INFRA.audit_events, action, "patient", patient_ids, fields)


def _audit_on_commit(uow: UnitOfWork, action: str, patient_id: int, fields: Any = ()) -> None:
    """The entry written with the events at commit (in their statement)."""
    audit.record_on_commit(uow, INFRA.audit_events, action, "patient", patient_id, fields)


class PatientErased(Conflict):
    """The patient's personal data was erased: the record can no longer change."""

    code = "patient_erased"


def _check_not_erased(patient: Patient) -> None:
    if patient.status == PatientStatus.ERASED:
        raise PatientErased(
            f"patient {patient.id} was erased; the record can no longer change",
            {"patient_id": patient.id},
        )


def _lock_identity(uow: UnitOfWork, data: dict[str, object]) -> None:
    """Serialise concurrent registrations of the same person (transaction-scoped lock)."""
    keys = [f"{data['last_name']}|{data['first_name']}|{data['birth_date']}".lower()]
    if data.get("email"):
        keys.append(str(data["email"]))
    # one statement: unnest yields the keys in the array's order, and each row takes its
    # lock before the next row is read (the sorted order every registration locks in)
    uow.session.execute(
        _LOCK_KEYS,
        {"namespace": 1001, "keys": [zlib.crc32(key.encode()) - 2**31 for key in sorted(keys)]},
    )


_LOCK_KEYS = text(
    "SELECT pg_advisory_xact_lock(:namespace, key) FROM unnest(CAST(:keys AS integer[])) AS key"
)


def _find_duplicate(uow: UnitOfWork, data: dict[str, object]) -> int | None:
    return uow.session.execute(
        _duplicate_query(bool(data.get("email"))),
        {
            "last_name": str(data["last_name"]).lower(),
            "first_name": str(data["first_name"]).lower(),
            "birth_date": data["birth_date"],
            "email": data.get("email"),
        },
    ).scalar_one_or_none()


@functools.cache
def _duplicate_query(with_email: bool) -> Select[int]:
    """The first patient with the same name and birth date (or email), its values bound
    per call; built once per process (building cost more CPU than running it)."""
    same_person = (
        (func.lower(Patient.last_name) == bindparam("last_name", type_=Text))
        & (func.lower(Patient.first_name) == bindparam("first_name", type_=Text))
        & (Patient.birth_date == bindparam("birth_date", type_=Date))
    )
    condition = (
        or_(same_person, Patient.email == bindparam("email", type_=Text))
        if with_email
        else same_person
    )
    return select(Patient.id).where(condition).order_by(Patient.id).limit(1)


def get_patient(uow: UnitOfWork, patient_id: int) -> Patient:
    """One patient, or NotFound; the read is recorded in the audit log."""
    with uow:
        patient = uow.session.execute(
            _audited_read(), {"patient_id": patient_id, **audit.acting()}
        ).scalar_one_or_none()
        if patient is None:
            raise NotFound(f"patient {patient_id} does not exist")
        uow.commit()
        return patient


@functools.cache
def _audited_read() -> Select[Patient]:
    """One patient (`patient_id`) and the audit entry of its read, in one statement; built
    once per process (building it cost more CPU than running it)."""
    patient_id = bindparam("patient_id", type_=Integer)
    recorded = audit.recording(
        INFRA.audit_events, "read", "patient", Patient.id, Patient.id == patient_id
    )
    return select(Patient).where(Patient.id == patient_id).add_cte(recorded)


def _load(uow: UnitOfWork, patient_id: int, *, for_update: bool = False) -> Patient:
    statement = select(Patient).where(Patient.id == patient_id)
    if for_update:
        statement = statement.with_for_update()
    patient = uow.session.execute(statement).scalar_one_or_none()
    if patient is None:
        raise NotFound(f"patient {patient_id} does not exist")
    return patient


_SORTS = {
    "created_at": (Patient.created_at.asc(), Patient.id.asc()),
    "-created_at": (Patient.created_at.desc(), Patient.id.desc()),
    "last_name": (func.lower(Patient.last_name).asc(), Patient.id.asc()),
    "-last_name": (func.lower(Patient.last_name).desc(), Patient.id.desc()),
}


def list_patients(uow: UnitOfWork, query: PatientListQuery) -> Page:
    """A page of patients (newest first unless sorted otherwise), filtered by status,
    postal-code prefix, creation time and free text on name and email; a free-text search
    is recorded in the audit log as a read of the patients on the page."""
    conditions: list[Any] = []
    if query.status is not None:
        conditions.append(Patient.status == query.status.value)
    if query.postal_code_prefix:
        conditions.append(Patient.postal_code.startswith(query.postal_code_prefix, autoescape=True))
    if query.created_from is not None:
        conditions.append(Patient.created_at >= query.created_from)
    if query.created_to is not None:
        conditions.append(Patient.created_at < query.created_to)
    if query.search:
        needle = query.search.lower()
        # what is part of the first or the last name is part of "first last" too: one lower()
        # per row instead of three, the same matches (the search still reads every patient)
        full_name = func.lower(Patient.first_name + " " + Patient.last_name)
        conditions.append(
            or_(
                full_name.contains(needle, autoescape=True),
                Patient.email.contains(needle, autoescape=True),
            )
        )
    with uow:
        total, exact = count_upto(uow.session, select(Patient).where(*conditions))
        items = (
            uow.session.execute(
                select(Patient)
                .where(*conditions)
                .order_by(*_SORTS[query.sort])
                .offset((query.page - 1) * query.per_page)
                .limit(query.per_page)
            )
            .scalars()
            .all()
        )
        if query.search and items:
            _audit(uow, "read", [patient.id for patient in items], ["search"])
            uow.commit()
    return Page(
        items=items, total=total, page=query.page, per_page=query.per_page, total_exact=exact
    )


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
        _check_not_erased(patient)
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
        if "status" in changed:
            _audit_on_commit(uow, "status_change", patient.id, ["status"])
        if set(changed) - {"status"}:
            _audit_on_commit(uow, "update", patient.id, set(changed) - {"status"})
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
    _audit(uow, "status_change", patient.id, ["status"])


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
        excluded_therapist_ids=sorted(
            int(entry["therapist_id"]) for entry in patient.excluded_therapists or []
        ),
    )
    return PendingEvent.of(
        event_type,
        producer=PRODUCER,
        aggregate_id=patient.id,
        payload=payload,
        correlation_id=correlation_id,
    )


# ---------------------------------------------------------------- exclusions


class AlreadyExcluded(Conflict):
    """The therapist is on the patient's exclusion list already."""

    code = "already_excluded"


def add_exclusion(
    uow: UnitOfWork,
    patient_id: int,
    command: ExclusionCreate,
    policy: QualificationPolicy,
    *,
    correlation_id: str | None = None,
) -> Patient:
    """Put a therapist on the patient's exclusion list for good (409 when there already);
    patient.updated carries the ids so matching never pairs them again."""
    with uow:
        patient = _load(uow, patient_id, for_update=True)
        _check_not_erased(patient)
        current = list(patient.excluded_therapists or [])
        if any(entry["therapist_id"] == command.therapist_id for entry in current):
            raise AlreadyExcluded(
                f"therapist {command.therapist_id} is excluded for patient {patient_id} already",
                {"therapist_id": command.therapist_id},
            )
        entry = {
            "therapist_id": command.therapist_id,
            "reason": command.reason,
            "since": utcnow().isoformat(),
        }
        _change_exclusions(uow, patient, [*current, entry], policy, correlation_id)
    return patient


def remove_exclusion(
    uow: UnitOfWork,
    patient_id: int,
    therapist_id: int,
    policy: QualificationPolicy,
    *,
    correlation_id: str | None = None,
) -> None:
    """Take a therapist off the patient's exclusion list (404 when not on it)."""
    with uow:
        patient = _load(uow, patient_id, for_update=True)
        _check_not_erased(patient)
        current = list(patient.excluded_therapists or [])
        kept = [entry for entry in current if entry["therapist_id"] != therapist_id]
        if len(kept) == len(current):
            raise NotFound(
                f"therapist {therapist_id} is not excluded for patient {patient_id}",
                {"therapist_id": therapist_id},
            )
        _change_exclusions(uow, patient, kept, policy, correlation_id)


def _change_exclusions(
    uow: UnitOfWork,
    patient: Patient,
    exclusions: list[dict[str, Any]],
    policy: QualificationPolicy,
    correlation_id: str | None,
) -> None:
    patient.excluded_therapists = exclusions
    patient.version += 1
    patient.updated_at = utcnow()
    uow.session.flush()
    uow.emit(_event(PATIENT_UPDATED, patient, policy, ["excluded_therapists"], correlation_id))
    _audit(uow, "update", patient.id, ["excluded_therapists"])
    uow.commit()


# ---------------------------------------------------------------- GDPR: erasure and export

# what erasure blanks (None) or replaces; postal code, gender, diagnosis and the search facts
# stay for statistics, the birth date keeps only its year
_ERASED_VALUES: Mapping[str, object] = {
    "salutation": None,
    "first_name": "erased",
    "last_name": "erased",
    "street": None,
    "city": None,
    "email": None,
    "phone": None,
    "insurance_number": None,
    "gp_name": None,
    "health_insurer": None,
    "consent_version": None,
}


def erase_patient(
    uow: UnitOfWork, patient_id: int, *, correlation_id: str | None = None
) -> Patient:
    """Anonymise the patient (GDPR Art. 17), set status `erased` and emit patient.erased so
    every other service drops what it holds. Erasing again changes nothing and answers the
    same record."""
    with uow:
        patient = _load(uow, patient_id, for_update=True)
        if patient.status == PatientStatus.ERASED:
            return patient
        changed = sorted(
            name for name, value in _ERASED_VALUES.items() if getattr(patient, name) != value
        )
        for name, value in _ERASED_VALUES.items():
            setattr(patient, name, value)
        patient.birth_date = date(patient.birth_date.year, 1, 1)
        patient.excluded_therapists = [
            {**entry, "reason": ""} for entry in patient.excluded_therapists or []
        ]
        patient.status = PatientStatus.ERASED.value
        patient.erased_at = utcnow()
        patient.version += 1
        patient.updated_at = patient.erased_at
        uow.session.flush()
        uow.emit(
            PendingEvent.of(
                PATIENT_ERASED,
                producer=PRODUCER,
                aggregate_id=patient.id,
                payload=PatientErasedPayload(patient_id=patient.id),
                correlation_id=correlation_id,
            )
        )
        _cut_birth_dates_in_outbox(uow, patient)
        _audit(uow, "erase", patient.id, [*changed, "birth_date", "status"])
        uow.commit()
    return patient


def _cut_birth_dates_in_outbox(uow: UnitOfWork, patient: Patient) -> None:
    """The patient's events kept in the outbox (published or not) carry the birth year only,
    like the record."""
    outbox = INFRA.outbox
    uow.session.execute(
        update(outbox)
        .where(
            outbox.c.aggregate_id == str(patient.id),
            outbox.c.event_type.in_([PATIENT_CREATED.name, PATIENT_UPDATED.name]),
        )
        .values(
            envelope=func.jsonb_set(
                outbox.c.envelope,
                literal_column("'{payload,birth_date}'"),
                func.to_jsonb(cast(literal(patient.birth_date.isoformat()), Text)),
            )
        )
    )


# service name -> its part of the patient's data (or None when it could not be fetched)
PartsFetcher = Callable[[int], Mapping[str, dict[str, Any] | None]]


def export_patient(uow: UnitOfWork, patient_id: int, fetch_parts: PartsFetcher) -> PatientExport:
    """Everything the platform holds about the patient: this record and its audit entries,
    and each other service's part; a part that could not be fetched is named in `missing`.
    The export itself is recorded in the audit log."""
    with uow:
        patient = _load(uow, patient_id)
    parts = fetch_parts(patient_id)
    with uow:
        _audit(uow, "export", patient_id)
        uow.commit()
        entries = audit.entries_of(uow.session, INFRA.audit_events, "patient", patient_id)
    return PatientExport(
        patient_id=patient_id,
        exported_at=utcnow(),
        patient=PatientOut.model_validate(patient).model_dump(mode="json"),
        audit_events=[
            {**dict(entry), "occurred_at": entry["occurred_at"].isoformat()} for entry in entries
        ],
        services={name: part for name, part in parts.items() if part is not None},
        missing=sorted(name for name, part in parts.items() if part is None),
    )
