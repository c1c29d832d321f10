"""The audit log: who read or changed what, written in the same transaction as the change.

Each service has an append-only `audit_events` table in its schema (the service role may
insert and read it, never update or delete). An entry names the actor (token name and role,
or a system actor outside HTTP), the action, the entity and the names of the changed fields
- never their values.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any, Literal

from flask import g, has_request_context
from sqlalchemy import (
    CTE,
    ColumnExpressionArgument,
    String,
    Table,
    bindparam,
    cast,
    insert,
    literal,
    select,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Session

from shared.db import UnitOfWork
from shared.infrastructure import AUDIT_ACTIONS

AuditAction = Literal[AUDIT_ACTIONS]  # type: ignore[valid-type]

# who acts outside an HTTP request (a consumer, a CLI command); set with `acting_as`
_system_actor: contextvars.ContextVar[tuple[str, str] | None] = contextvars.ContextVar(
    "audit_system_actor", default=None
)


# who acts in this process when nobody else is named (a worker: `service:<name>`)
_process_actor: list[str] = ["system"]


def set_process_actor(name: str) -> None:
    """Name the actor of entries this process writes outside requests (workers, commands)."""
    _process_actor[0] = name


@contextmanager
def acting_as(name: str, role: str = "system") -> Iterator[None]:
    """Record entries written inside the block as done by `name` (e.g. `service:matching`)."""
    token = _system_actor.set((name, role))
    try:
        yield
    finally:
        _system_actor.reset(token)


def actor() -> tuple[str, str, str | None]:
    """(name, role, request id) of whoever is acting now."""
    if has_request_context() and g.get("actor"):
        role = g.get("role")
        return str(g.actor), str(getattr(role, "value", role)), g.get("request_id")
    system = _system_actor.get()
    if system is not None:
        return system[0], system[1], None
    if has_request_context():
        return "anonymous", "none", g.get("request_id")
    return _process_actor[0], "system", None


def record(
    session: Session,
    table: Table,
    action: str,
    entity_type: str,
    entity_ids: object | Iterable[object],
    fields: Iterable[str] = (),
) -> None:
    """Add audit entries (one per entity id) to the session's transaction: the caller's
    commit writes them with the change."""
    entries = _entries(action, entity_type, entity_ids, fields)
    if entries:
        session.execute(insert(table), entries)


def record_on_commit(
    uow: UnitOfWork,
    table: Table,
    action: str,
    entity_type: str,
    entity_ids: object | Iterable[object],
    fields: Iterable[str] = (),
) -> None:
    """Like `record`, but the entries go in at the unit of work's commit, in the statement
    that writes its events (a round trip fewer); still in the change's transaction."""
    entries = _entries(action, entity_type, entity_ids, fields)
    if entries:
        uow.insert_on_commit(table, entries)


def _entries(
    action: str, entity_type: str, entity_ids: object | Iterable[object], fields: Iterable[str]
) -> list[dict[str, Any]]:
    """The rows of the entries (one per entity id), naming whoever is acting now."""
    if action not in AUDIT_ACTIONS:
        raise ValueError(f"unknown audit action: {action}")
    ids = (
        list(entity_ids) if isinstance(entity_ids, list | tuple | set | frozenset) else [entity_ids]
    )
    if not ids:
        return []
    name, role, request_id = actor()
    names = sorted(set(fields))
    return [
        {
            "actor": name[:100],
            "actor_role": role[:20],
            "action": action,
            "entity_type": entity_type,
            "entity_id": str(entity_id),
            "fields": names,
            "request_id": request_id,
        }
        for entity_id in ids
    ]


def recording(
    table: Table,
    action: str,
    entity_type: str,
    entity_id: ColumnExpressionArgument[Any],
    *conditions: ColumnExpressionArgument[bool],
    fields: Iterable[str] = (),
) -> CTE:
    """Audit entries for the rows `conditions` select (their `entity_id`), as a CTE to add to
    the statement that reads those rows (`Select.add_cte`): PostgreSQL runs an INSERT in a
    WITH whether or not the statement refers to it, so the read and its entries are one
    statement (nothing is read unrecorded, and no round trip or transaction is added).

    Who acts is a parameter of the statement (`acting()` gives it), so a statement can be
    built once and run for every caller."""
    if action not in AUDIT_ACTIONS:
        raise ValueError(f"unknown audit action: {action}")
    entries = select(
        bindparam("audit_actor", type_=String),
        bindparam("audit_actor_role", type_=String),
        literal(action, String),
        literal(entity_type, String),
        cast(entity_id, String),
        literal(sorted(set(fields)), JSONB),
        bindparam("audit_request_id", type_=String),
    ).where(*conditions)
    columns = ["actor", "actor_role", "action", "entity_type", "entity_id", "fields", "request_id"]
    return insert(table).from_select(columns, entries).cte(f"{table.name}_recorded")


def acting() -> dict[str, str | None]:
    """The parameters of a `recording` CTE: whoever is acting now."""
    name, role, request_id = actor()
    return {
        "audit_actor": name[:100],
        "audit_actor_role": role[:20],
        "audit_request_id": request_id,
    }


def entries_of(session: Session, table: Table, entity_type: str, entity_id: object) -> list[Any]:
    """Every entry about one entity, oldest first."""
    return list(
        session.execute(
            select(table)
            .where(table.c.entity_type == entity_type, table.c.entity_id == str(entity_id))
            .order_by(table.c.id)
        ).mappings()
    )
