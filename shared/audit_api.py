"""`GET /api/audit-events`: every service's audit log, for admins (`shared.audit`)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import flask_restful
from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from sqlalchemy import Table, select

from shared.audit import AuditAction
from shared.auth import Role
from shared.db import Database, count_upto
from shared.fields import QueryTimestamp
from shared.infrastructure import Infrastructure
from shared.web import Page, PageQuery, operation

Short = Annotated[str, StringConstraints(min_length=1, max_length=100)]


class AuditQuery(PageQuery):
    """Filters of `GET /api/audit-events`."""

    entity_type: Annotated[str, StringConstraints(min_length=1, max_length=50)] | None = None
    entity_id: Short | None = None
    actor: Short | None = None
    action: AuditAction | None = None
    occurred_from: QueryTimestamp | None = Field(default=None, description="inclusive")
    occurred_to: QueryTimestamp | None = Field(default=None, description="exclusive")


class AuditEventOut(BaseModel):
    """One audit entry."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    occurred_at: datetime
    actor: str
    actor_role: str
    action: str
    entity_type: str
    entity_id: str
    fields: list[str]
    request_id: str | None


def list_events(database: Database, table: Table, query: AuditQuery) -> Page:
    """A page of audit entries, newest first."""
    conditions = []
    for name in ("entity_type", "entity_id", "actor", "action"):
        value = getattr(query, name)
        if value is not None:
            conditions.append(table.c[name] == value)
    if query.occurred_from is not None:
        conditions.append(table.c.occurred_at >= query.occurred_from)
    if query.occurred_to is not None:
        conditions.append(table.c.occurred_at < query.occurred_to)
    with database.session() as session:
        total, exact = count_upto(session, select(table).where(*conditions))
        rows = session.execute(
            select(table)
            .where(*conditions)
            .order_by(table.c.id.desc())
            .offset((query.page - 1) * query.per_page)
            .limit(query.per_page)
        ).mappings()
        items = [AuditEventOut.model_validate(dict(row)) for row in rows]
    return Page(
        items=items, total=total, page=query.page, per_page=query.per_page, total_exact=exact
    )


class AuditEvents(flask_restful.Resource):
    """`/api/audit-events`: this service's audit log (admins)."""

    def __init__(self, database: Database, infra: Infrastructure) -> None:
        self.database = database
        self.infra = infra

    @operation(
        "Audit log of this service: who read or changed what",
        role=Role.ADMIN,
        query=AuditQuery,
        response=AuditEventOut,
        paginated=True,
    )
    def get(self, query: AuditQuery) -> Any:
        return list_events(self.database, self.infra.audit_events, query)
