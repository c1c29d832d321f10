"""Who may be contacted, one therapist at a time, and staff ending a practice's cooling early
(business-rules.md §6, §7)."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import select, update

from matching_service.models import INFRA, CoolingPeriod, TherapistProjection
from matching_service.schemas import COOLING_OVERRIDDEN, CoolingOverriddenPayload
from matching_service.service.cooling import PRODUCER, practice_therapists
from matching_service.service.market import Contactability, contactability
from shared import audit
from shared.db import UnitOfWork, utcnow
from shared.errors import Conflict, NotFound
from shared.outbox import PendingEvent


def therapist_contactability(
    uow: UnitOfWork, therapist_id: int, today: date | None = None
) -> Contactability:
    """Whether a therapist known to matching may get an inquiry on `today` (default: the
    UTC date now), with every reason against it; NotFound for an unknown therapist."""
    with uow:
        return _contactability(uow, therapist_id, today or utcnow().date())


def _contactability(uow: UnitOfWork, therapist_id: int, today: date) -> Contactability:
    found = contactability(uow.session, today, [therapist_id]).get(therapist_id)
    if found is None:
        raise NotFound(f"therapist {therapist_id} is not known to matching")
    return found


def override_cooling(
    uow: UnitOfWork,
    therapist_id: int,
    reason: str,
    *,
    actor: str,
    as_of: datetime | None = None,
    correlation_id: str | None = None,
) -> Contactability:
    """End the cooling in force of the therapist's practice (one conditional UPDATE: of two
    concurrent overrides one wins, the other gets 409); emits cooling.overridden without the
    reason (kept on the cooling period with who overrode it). Returns the contactability now."""
    now = as_of or utcnow()
    today = now.date()
    with uow:
        practice_key = uow.session.execute(
            select(TherapistProjection.practice_key).where(
                TherapistProjection.therapist_id == therapist_id
            )
        ).scalar_one_or_none()
        if practice_key is None:
            raise NotFound(f"therapist {therapist_id} is not known to matching")
        ended = uow.session.execute(
            update(CoolingPeriod)
            .where(
                CoolingPeriod.practice_key == practice_key,
                CoolingPeriod.overridden_at.is_(None),
                CoolingPeriod.until > today,
            )
            .values(overridden_at=now, overridden_by=actor, override_reason=reason)
            .returning(CoolingPeriod.therapist_ids)
        ).all()
        if not ended:
            raise Conflict(
                f"practice {practice_key} of therapist {therapist_id} is not cooling on "
                f"{today}: only a cooling period in force can be overridden",
                {"practice_key": practice_key, "therapist_id": therapist_id, "as_of": str(today)},
            )
        held = _contactability(uow, therapist_id, today)
        therapist_ids = {therapist_id, *practice_therapists(uow, practice_key)}
        for row in ended:
            therapist_ids.update(row.therapist_ids)
        payload = CoolingOverriddenPayload(
            practice_key=practice_key,
            therapist_ids=sorted(therapist_ids),
            overridden_at=now,
            next_contactable_date=held.next_contactable_date,
        )
        uow.emit(
            PendingEvent.of(
                COOLING_OVERRIDDEN,
                producer=PRODUCER,
                aggregate_id=practice_key,
                payload=payload,
                correlation_id=correlation_id,
            )
        )
        audit.record(
            uow.session, INFRA.audit_events, "override", "therapist", therapist_id, ["cooling"]
        )
        uow.commit()
    return held
