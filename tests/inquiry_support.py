"""Helpers of the tests of inquiries after creation (sending, follow-ups, cooling, analytics,
contact log): rows written and events read directly through the superuser engine."""

from __future__ import annotations

import json
import uuid
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa

from shared.auth import Role, TokenStore, issue_token
from shared.db import Database, schema_metadata
from shared.infrastructure import define_infrastructure


def staff_headers(database_url: str) -> dict[str, str]:
    """A new staff token of matching_service (stored as `tokens create` does)."""
    database = Database(database_url, pool_size=1)
    issued = issue_token(f"staff-{uuid.uuid4().hex[:8]}", Role.STAFF)
    TokenStore(database, define_infrastructure(schema_metadata("matching_service"))).store(issued)
    database.dispose()
    return {"Authorization": f"Bearer {issued.token}"}


def outbox_payloads(
    engine: sa.Engine, event_type: str, aggregate_id: object
) -> list[dict[str, Any]]:
    """Payloads of matching's outbox rows of this type and aggregate, oldest first."""
    with engine.connect() as connection:
        return list(
            connection.execute(
                sa.text(
                    "SELECT envelope->'payload' FROM matching_service.outbox "
                    "WHERE event_type = :t AND aggregate_id = :a ORDER BY id"
                ),
                {"t": event_type, "a": str(aggregate_id)},
            ).scalars()
        )


def insert_cooling(
    engine: sa.Engine,
    practice_key: str,
    starts_on: date,
    until: date,
    *,
    created_at: datetime | None = None,
    overridden_at: datetime | None = None,
    therapist_ids: list[int] | None = None,
) -> int:
    """A cooling period of the practice written directly."""
    with engine.begin() as connection:
        return int(
            connection.execute(
                sa.text(
                    "INSERT INTO matching_service.cooling_periods (practice_key, therapist_ids, "
                    "starts_on, until, created_at, overridden_at) VALUES (:p, "
                    "CAST(:ids AS jsonb), :s, :u, COALESCE(:c, now()), :o) RETURNING id"
                ),
                {
                    "p": practice_key,
                    "ids": json.dumps(therapist_ids or []),
                    "s": starts_on,
                    "u": until,
                    "c": created_at,
                    "o": overridden_at,
                },
            ).scalar_one()
        )


def update_row(engine: sa.Engine, table: str, where: dict[str, Any], **values: Any) -> None:
    """Set columns of matching_service.<table> rows (dates a test moves into the past)."""
    assignments = ", ".join(f"{name} = :v_{name}" for name in values)
    conditions = " AND ".join(f"{name} = :w_{name}" for name in where)
    with engine.begin() as connection:
        connection.execute(
            sa.text(f"UPDATE matching_service.{table} SET {assignments} WHERE {conditions}"),
            {
                **{f"v_{name}": value for name, value in values.items()},
                **{f"w_{name}": value for name, value in where.items()},
            },
        )
