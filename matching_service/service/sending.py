"""An inquiry becomes `sent` when communication reports its email sent, or a call that
reached a therapist without email (business-rules.md §7)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from sqlalchemy import update

from matching_service.models import Inquiry
from matching_service.schemas import INQUIRY_SENT, InquirySentPayload
from matching_service.service.cooling import PRODUCER
from shared.db import UnitOfWork, utcnow
from shared.outbox import PendingEvent


def mark_inquiry_sent(
    uow: UnitOfWork,
    inquiry_id: int,
    *,
    sent_at: datetime,
    sent_via: Literal["email", "phone"],
    correlation_id: str | None = None,
) -> bool:
    """Mark an unsent inquiry sent and emit inquiry.sent (inside the caller's transaction);
    one conditional UPDATE, so a repeated or late report (already sent, answered, closed,
    unknown inquiry) changes nothing and returns False."""
    sent = uow.session.execute(
        update(Inquiry)
        .where(Inquiry.id == inquiry_id, Inquiry.status == "unsent")
        .values(status="sent", sent_at=sent_at, sent_via=sent_via, updated_at=utcnow())
        .returning(Inquiry.therapist_id, Inquiry.practice_key)
    ).first()
    if sent is None:
        return False
    payload = InquirySentPayload(
        inquiry_id=inquiry_id,
        therapist_id=sent.therapist_id,
        practice_key=sent.practice_key,
        sent_at=sent_at,
        sent_via=sent_via,
    )
    uow.emit(
        PendingEvent.of(
            INQUIRY_SENT,
            producer=PRODUCER,
            aggregate_id=inquiry_id,
            payload=payload,
            correlation_id=correlation_id,
        )
    )
    return True
