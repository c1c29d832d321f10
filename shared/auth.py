"""Bearer tokens: roles, hashing, lookup, creation and revocation."""

from __future__ import annotations

import enum
import hashlib
import secrets
from dataclasses import dataclass

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.postgresql.psycopg2 import PGDialect_psycopg2

from shared import audit
from shared.db import Database, utcnow
from shared.infrastructure import Infrastructure

TOKEN_PREFIX = "pp_"  # generated tokens start with it (and are named by their first 8 chars)


class Role(enum.StrEnum):
    """What a token may do; `admin` may do everything `staff` may; `service` (one service
    reading another's data: `SERVICE_TOKEN`) may only read what staff may read.

    An endpoint that requires `service` (e.g. a service's part of a patient's data export)
    is for admins and the service token (GET only), never for staff."""

    STAFF = "staff"
    ADMIN = "admin"
    SERVICE = "service"

    def allows(self, required: Role, method: str = "GET") -> bool:
        """Whether this role satisfies an endpoint that requires `required`, for `method`."""
        if self is Role.SERVICE:
            return required in (Role.STAFF, Role.SERVICE) and method in READ_METHODS
        return self is Role.ADMIN or required is Role.STAFF


READ_METHODS = frozenset({"GET", "HEAD"})


def hash_token(token: str) -> str:
    """SHA-256 of a token; tokens are 256-bit random, so a fast hash is enough to store them."""
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class IssuedToken:
    """A newly created token: shown once, stored only as its hash."""

    name: str
    role: Role
    token: str


BOOTSTRAP_ADMIN_NAME = "bootstrap-admin"
SERVICE_TOKEN_NAME = "service"


@dataclass(frozen=True)
class Caller:
    """Who is calling: the token's name (the actor in records) and its role."""

    name: str
    role: Role


class TokenStore:
    """The `api_tokens` table of one service.

    A service's own database role may only read it; `store`, `ensure` and `revoke` need
    the admin connection (`python -m shared.cli tokens ...`).
    """

    def __init__(self, database: Database, infra: Infrastructure) -> None:
        self._db = database
        self._table = infra.api_tokens
        self._audit = infra.audit_events
        # every request asks: the statement is compiled once, here, and sent as it is (building
        # and compiling it per request cost more CPU than the round trip)
        self._check = str(
            select(self._table.c.name, self._table.c.role)
            .where(
                self._table.c.token_hash == bindparam("token_hash"),
                self._table.c.revoked_at.is_(None),
            )
            .compile(dialect=PGDialect_psycopg2())
        )

    def role_for(self, token: str) -> Role | None:
        """The role of a valid, unrevoked token, else None."""
        caller = self.caller_for(token)
        return caller.role if caller else None

    def caller_for(self, token: str) -> Caller | None:
        """The name and role of a valid, unrevoked token, else None."""
        # every request asks: one statement outside a transaction (a revocation counts at
        # once, nothing is cached)
        with self._db.autocommit() as connection:
            row = connection.exec_driver_sql(self._check, {"token_hash": hash_token(token)}).first()
        return Caller(row.name, Role(row.role)) if row else None

    def store(self, issued: IssuedToken) -> None:
        """Persist the hash of an issued token."""
        with self._db.session() as session, session.begin():
            session.execute(insert(self._table).values(_row(issued)))
            audit.record(session, self._audit, "token_create", "api_token", issued.name, ["role"])

    def ensure(self, issued: IssuedToken) -> bool:
        """Store `issued` unless its hash is known (revoked stays revoked); True if stored.

        A newly stored token replaces (revokes) the earlier tokens of its name: changing
        `BOOTSTRAP_ADMIN_TOKEN` retires the previous value.
        """
        table = self._table
        with self._db.session() as session, session.begin():
            stored = session.execute(
                pg_insert(table)
                .values(_row(issued))
                .on_conflict_do_nothing(index_elements=[table.c.token_hash])
                .returning(table.c.id)
            ).scalar_one_or_none()
            if stored is not None:
                audit.record(session, self._audit, "token_create", "api_token", issued.name)
                session.execute(
                    update(table)
                    .where(
                        table.c.name == issued.name,
                        table.c.id != stored,
                        table.c.revoked_at.is_(None),
                    )
                    .values(revoked_at=utcnow())
                )
        return stored is not None

    def revoke(self, name_or_prefix: str) -> list[str]:
        """Revoke the tokens with this name or prefix; returns the names of those revoked."""
        if not name_or_prefix.strip():
            return []  # the empty prefix of chosen tokens names nothing
        table = self._table
        with self._db.session() as session, session.begin():
            names = session.execute(
                update(table)
                .where(
                    (table.c.name == name_or_prefix) | (table.c.prefix == name_or_prefix),
                    table.c.revoked_at.is_(None),
                )
                .values(revoked_at=utcnow())
                .returning(table.c.name)
            ).scalars()
            revoked = sorted(names)
            audit.record(session, self._audit, "token_revoke", "api_token", revoked)
        return revoked


def bootstrap_admin_token(token: str) -> IssuedToken:
    """The configured `BOOTSTRAP_ADMIN_TOKEN` as a named, revocable admin token."""
    return IssuedToken(name=BOOTSTRAP_ADMIN_NAME, role=Role.ADMIN, token=token)


def service_token(token: str) -> IssuedToken:
    """The configured `SERVICE_TOKEN` as a named, revocable read-only token of the services."""
    return IssuedToken(name=SERVICE_TOKEN_NAME, role=Role.SERVICE, token=token)


def _row(issued: IssuedToken) -> dict[str, str]:
    """The stored form of a token: its hash, and a prefix to name it by only when the token
    is one we generated (a chosen one, such as the bootstrap token, keeps all its secret)."""
    generated = issued.token.startswith(TOKEN_PREFIX)
    return {
        "name": issued.name,
        "role": issued.role.value,
        "token_hash": hash_token(issued.token),
        "prefix": issued.token[:8] if generated else "",
    }


def issue_token(name: str, role: Role) -> IssuedToken:
    """A new random token (not yet stored)."""
    return IssuedToken(name=name, role=role, token=f"{TOKEN_PREFIX}{secrets.token_urlsafe(32)}")
