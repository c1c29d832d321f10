"""Answer links for the hostile-input tests: signed URLs, and what an answer would have
changed in matching's schema (read back as the superuser), to show that nothing was."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import sqlalchemy as sa

from matching_service.placement.links import sign_link
from tests.conftest import ANSWER_LINK_SECRET


def link_token(
    inquiry_id: int,
    search_id: int,
    outcome: str = "accepted",
    *,
    days: float = 7,
    secret: str = ANSWER_LINK_SECRET,
) -> str:
    """The token of an answer link valid for `days` more days (negative: expired)."""
    expires = datetime.now(UTC) + timedelta(days=days)
    return sign_link(secret, inquiry_id, search_id, outcome, expires)


def link_url(token: str) -> str:
    """The page of a token, percent-encoded as a mail client would send it."""
    return "/answers/" + quote(token, safe="/")


def recorded_state(engine: sa.Engine, inquiry_id: int) -> dict[str, Any]:
    """Everything an answer link's POST writes: the inquiry and its patients, their searches,
    cooling periods, matching's outbox and audit log (counts of the whole schema: an answer
    recorded under another inquiry shows too)."""
    with engine.connect() as connection:

        def rows(sql: str) -> list[tuple[Any, ...]]:
            return [tuple(row) for row in connection.execute(sa.text(sql), {"i": inquiry_id})]

        return {
            "inquiry": rows(
                "SELECT status, answered_at, response_type, channel "
                "FROM matching_service.inquiries WHERE id = :i"
            ),
            "patients": rows(
                "SELECT search_id, status, outcome, outcome_at "
                "FROM matching_service.inquiry_patients WHERE inquiry_id = :i ORDER BY search_id"
            ),
            "searches": rows(
                "SELECT s.id, s.status, s.placed_therapist_id FROM matching_service."
                "patient_searches s JOIN matching_service.inquiry_patients p "
                "ON p.search_id = s.id WHERE p.inquiry_id = :i ORDER BY s.id"
            ),
            "answered_inquiries": rows(
                "SELECT count(*) FROM matching_service.inquiries WHERE answered_at IS NOT NULL"
            ),
            "outcomes": rows(
                "SELECT count(*) FROM matching_service.inquiry_patients WHERE outcome IS NOT NULL"
            ),
            "coolings": rows("SELECT count(*) FROM matching_service.cooling_periods"),
            "outbox": rows("SELECT count(*), max(id) FROM matching_service.outbox"),
            "audit": rows("SELECT count(*), max(id) FROM matching_service.audit_events"),
        }
