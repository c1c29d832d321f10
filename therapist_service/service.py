"""Use cases of therapist_service: each takes a unit of work and commits what it changes."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.exc import IntegrityError

from shared.db import UnitOfWork, utcnow
from shared.errors import Conflict, NotFound, ValidationFailed
from shared.events import EventType
from shared.outbox import PendingEvent
from shared.web import Page
from therapist_service.models import Therapist
from therapist_service.rules import TherapistStatus, gender_from_salutation
from therapist_service.schemas import (
    THERAPIST_BLOCKED,
    THERAPIST_CREATED,
    THERAPIST_UNBLOCKED,
    THERAPIST_UPDATED,
    TherapistCreate,
    TherapistEventPayload,
    TherapistListQuery,
    TherapistUpdate,
)

PRODUCER = "therapist_service"


def create_therapist(
    uow: UnitOfWork, command: TherapistCreate, *, correlation_id: str | None = None
) -> Therapist:
    """Add a therapist (staff, for therapists outside the directory); emits therapist.created."""
    data = command.model_dump()
    data["gender"] = data["gender"] or gender_from_salutation(data["salutation"])
    with uow:
        if data["directory_id"] is not None:
            _refuse_taken_directory_id(uow, data["directory_id"])
        therapist = Therapist(**data, status=TherapistStatus.ACTIVE.value, version=1)
        uow.session.add(therapist)
        try:
            uow.session.flush()
        except IntegrityError:  # a concurrent create took the directory id first
            raise Conflict(
                f"a therapist with directory id {data['directory_id']} already exists",
                {"directory_id": data["directory_id"]},
            ) from None
        uow.session.refresh(therapist, ["practice_key"])  # computed by PostgreSQL
        uow.emit(therapist_event(THERAPIST_CREATED, therapist, sorted(data), correlation_id))
        uow.commit()
    return therapist


def _refuse_taken_directory_id(uow: UnitOfWork, directory_id: str) -> None:
    # a friendly 409 first; the unique index still decides a race (IntegrityError -> 409)
    existing = uow.session.execute(
        select(Therapist.id).where(Therapist.directory_id == directory_id)
    ).scalar_one_or_none()
    if existing is not None:
        raise Conflict(
            f"therapist {existing} already has directory id {directory_id}",
            {"existing_id": existing},
        )


def get_therapist(uow: UnitOfWork, therapist_id: int) -> Therapist:
    """One therapist, or NotFound."""
    with uow:
        return _load(uow, therapist_id)


def _load(uow: UnitOfWork, therapist_id: int, *, for_update: bool = False) -> Therapist:
    statement = select(Therapist).where(Therapist.id == therapist_id)
    if for_update:
        statement = statement.with_for_update()
    therapist = uow.session.execute(statement).scalar_one_or_none()
    if therapist is None:
        raise NotFound(f"therapist {therapist_id} does not exist")
    return therapist


def list_therapists(uow: UnitOfWork, query: TherapistListQuery) -> Page:
    """A page of therapists, newest first, filtered as the query says."""
    conditions: list[Any] = []
    if query.status is not None:
        conditions.append(Therapist.status == query.status.value)
    if query.postal_code_prefix:
        conditions.append(
            Therapist.postal_code.startswith(query.postal_code_prefix, autoescape=True)
        )
    if query.therapy_method is not None:
        conditions.append(Therapist.therapy_methods.contains([query.therapy_method]))
    if query.potentially_available is not None:
        conditions.append(Therapist.potentially_available.is_(query.potentially_available))
    if query.informed_about_platform is not None:
        conditions.append(Therapist.informed_about_platform.is_(query.informed_about_platform))
    if query.practice_key is not None:
        conditions.append(Therapist.practice_key == query.practice_key)
    if query.q:
        pattern = f"%{_escape_like(query.q.lower())}%"
        conditions.append(
            or_(
                func.lower(Therapist.last_name).like(pattern, escape="\\"),
                func.lower(Therapist.first_name).like(pattern, escape="\\"),
            )
        )
    with uow:
        total = uow.session.execute(
            select(func.count()).select_from(Therapist).where(*conditions)
        ).scalar_one()
        items = (
            uow.session.execute(
                select(Therapist)
                .where(*conditions)
                .order_by(Therapist.id.desc())
                .offset((query.page - 1) * query.per_page)
                .limit(query.per_page)
            )
            .scalars()
            .all()
        )
    return Page(items=items, total=total, page=query.page, per_page=query.per_page)


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def update_therapist(
    uow: UnitOfWork,
    therapist_id: int,
    changes: TherapistUpdate,
    *,
    correlation_id: str | None = None,
) -> Therapist:
    """Apply the given fields and emit therapist.updated (nothing when nothing changed)."""
    fields = changes.model_dump(exclude_unset=True)
    with uow:
        therapist = _load(uow, therapist_id, for_update=True)
        if "status" in fields:
            _check_patch_status(therapist, fields["status"])
        _check_age_range(therapist, fields)
        changed = sorted(
            name for name, value in fields.items() if getattr(therapist, name) != value
        )
        if not changed:
            return therapist
        for name in changed:
            setattr(therapist, name, fields[name])
        _touch(uow, therapist, "email" in changed)
        uow.emit(therapist_event(THERAPIST_UPDATED, therapist, changed, correlation_id))
        uow.commit()
    return therapist


def _check_patch_status(therapist: Therapist, target: str) -> None:
    if therapist.status == TherapistStatus.BLOCKED and target != TherapistStatus.BLOCKED:
        raise ValidationFailed(
            f"therapist {therapist.id} is blocked: unblock it with POST "
            f"/api/therapists/{therapist.id}/unblock",
            [{"field": "status", "message": "a blocked therapist is unblocked by /unblock"}],
        )


def _check_age_range(therapist: Therapist, fields: dict[str, Any]) -> None:
    low = fields.get("patient_age_min", therapist.patient_age_min)
    high = fields.get("patient_age_max", therapist.patient_age_max)
    if low is not None and high is not None and low > high:
        field = "patient_age_min" if "patient_age_min" in fields else "patient_age_max"
        raise ValidationFailed(
            f"invalid body: {field}",
            [{"field": field, "message": f"the age range {low}-{high} is empty"}],
        )


def block_therapist(
    uow: UnitOfWork, therapist_id: int, reason: str, *, correlation_id: str | None = None
) -> Therapist:
    """Block a therapist (never contacted again until unblocked); emits therapist.blocked."""
    with uow:
        therapist = _load(uow, therapist_id, for_update=True)
        if therapist.status == TherapistStatus.BLOCKED:
            raise Conflict(
                f"therapist {therapist_id} is already blocked",
                {"blocked_at": therapist.blocked_at.isoformat() if therapist.blocked_at else None},
            )
        therapist.status = TherapistStatus.BLOCKED.value
        therapist.block_reason = reason
        therapist.blocked_at = utcnow()
        _touch(uow, therapist)
        changed = ["block_reason", "blocked_at", "status"]
        uow.emit(therapist_event(THERAPIST_BLOCKED, therapist, changed, correlation_id))
        uow.commit()
    return therapist


def unblock_therapist(
    uow: UnitOfWork, therapist_id: int, *, correlation_id: str | None = None
) -> Therapist:
    """Make a blocked therapist active again; emits therapist.unblocked."""
    with uow:
        therapist = _load(uow, therapist_id, for_update=True)
        if therapist.status != TherapistStatus.BLOCKED:
            raise Conflict(
                f"therapist {therapist_id} is not blocked (status '{therapist.status}')",
                {"status": therapist.status},
            )
        therapist.status = TherapistStatus.ACTIVE.value
        therapist.block_reason = None
        therapist.blocked_at = None
        _touch(uow, therapist)
        changed = ["block_reason", "blocked_at", "status"]
        uow.emit(therapist_event(THERAPIST_UNBLOCKED, therapist, changed, correlation_id))
        uow.commit()
    return therapist


def practice_members(uow: UnitOfWork, practice_key: str) -> list[Therapist]:
    """The therapists of one practice (NotFound when the key names none)."""
    with uow:
        members = list(
            uow.session.execute(
                select(Therapist)
                .where(Therapist.practice_key == practice_key)
                .order_by(Therapist.id)
            )
            .scalars()
            .all()
        )
    if not members:
        raise NotFound(f"practice {practice_key} has no therapists")
    return members


def _touch(uow: UnitOfWork, therapist: Therapist, practice_may_change: bool = False) -> None:
    """A new version of the record; the practice key is recomputed when the email changed."""
    therapist.version += 1
    therapist.updated_at = utcnow()
    uow.session.flush()
    if practice_may_change:
        uow.session.refresh(therapist, ["practice_key"])


def therapist_event(
    event_type: EventType,
    therapist: Therapist,
    changed: list[str],
    correlation_id: str | None = None,
) -> PendingEvent:
    """The event of `event_type` carrying the therapist's current state."""
    payload = TherapistEventPayload(
        therapist_id=therapist.id,
        version=therapist.version,
        status=TherapistStatus(therapist.status),
        gender=therapist.gender,  # type: ignore[arg-type]
        postal_code=therapist.postal_code,
        city=therapist.city,
        street=therapist.street,
        practice_key=therapist.practice_key,
        has_email=bool(therapist.email),
        statutory_seat=therapist.statutory_seat,
        therapy_methods=therapist.therapy_methods,
        languages=therapist.languages,
        phone_hours=therapist.phone_hours,
        working_hours=therapist.working_hours,
        potentially_available=therapist.potentially_available,
        informed_about_platform=therapist.informed_about_platform,
        preferred_diagnoses=therapist.preferred_diagnoses,
        patient_age_min=therapist.patient_age_min,
        patient_age_max=therapist.patient_age_max,
        preferred_patient_gender=therapist.preferred_patient_gender,  # type: ignore[arg-type]
        prefers_group_therapy=therapist.prefers_group_therapy,
        next_contactable_date=therapist.next_contactable_date,
        changed_fields=changed,
    )
    envelope = event_type.build(
        producer=PRODUCER,
        aggregate_id=therapist.id,
        payload=payload,
        correlation_id=correlation_id,
    )
    return PendingEvent(topic=event_type.topic, envelope=envelope)
