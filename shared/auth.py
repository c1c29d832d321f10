"""Bearer tokens: roles, hashing, lookup, creation and revocation."""

from __future__ import annotations

import enum
import hashlib
import hmac
import secrets
from dataclasses import dataclass

from sqlalchemy import insert, select, update

from shared.db import Database, utcnow
from shared.infrastructure import Infrastructure


class Role(enum.StrEnum):
    """What a token may do; `admin` may do everything `staff` may."""

    STAFF = "staff"
    ADMIN = "admin"

    def allows(self, required: Role) -> bool:
        """Whether this role satisfies an endpoint that requires `required`."""
        return self is Role.ADMIN or required is Role.STAFF


def hash_token(token: str) -> str:
    """SHA-256 of a token; tokens are 256-bit random, so a fast hash is enough to store them."""
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class IssuedToken:
    """A newly created token: shown once, stored only as its hash."""

    name: str
    role: Role
    token: str


class TokenStore:
    """The `api_tokens` table of one service."""

    def __init__(
        self, database: Database, infra: Infrastructure, bootstrap_admin: str | None
    ) -> None:
        self._db = database
        self._table = infra.api_tokens
        self._bootstrap_admin = bootstrap_admin

    def role_for(self, token: str) -> Role | None:
        """The role of a valid, unrevoked token, else None."""
        if self._bootstrap_admin and hmac.compare_digest(
            token.encode(), self._bootstrap_admin.encode()
        ):
            return Role.ADMIN
        with self._db.session() as session:
            role = session.execute(
                select(self._table.c.role).where(
                    self._table.c.token_hash == hash_token(token),
                    self._table.c.revoked_at.is_(None),
                )
            ).scalar_one_or_none()
        return Role(role) if role else None

    def store(self, issued: IssuedToken) -> None:
        """Persist the hash of an issued token."""
        with self._db.session() as session, session.begin():
            session.execute(
                insert(self._table).values(
                    name=issued.name,
                    role=issued.role.value,
                    token_hash=hash_token(issued.token),
                    prefix=issued.token[:8],
                )
            )

    def revoke(self, name_or_prefix: str) -> int:
        """Revoke the tokens with this name or prefix; returns how many."""
        table = self._table
        with self._db.session() as session, session.begin():
            result = session.execute(
                update(table)
                .where(
                    (table.c.name == name_or_prefix) | (table.c.prefix == name_or_prefix),
                    table.c.revoked_at.is_(None),
                )
                .values(revoked_at=utcnow())
            )
        return int(result.rowcount)  # type: ignore[attr-defined]  # a CursorResult for UPDATE


def issue_token(name: str, role: Role) -> IssuedToken:
    """A new random token (not yet stored)."""
    return IssuedToken(name=name, role=role, token=f"pp_{secrets.token_urlsafe(32)}")
