"""Tables every service has in its own schema: outbox, relay buckets, idempotency, tokens,
audit log."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import (
    BigInteger,
    Column,
    Identity,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID

from shared.db import UTCDateTime

# Outbox rows are spread over this many buckets by aggregate id; a relay holds a bucket's
# row lock while it publishes, so events of one aggregate are never published out of order
# even when several relays run at once.
RELAY_BUCKETS = 16


@dataclass(frozen=True)
class Infrastructure:
    """The infrastructure tables bound to one service's metadata."""

    outbox: Table
    relay_buckets: Table
    processed_events: Table
    api_tokens: Table
    audit_events: Table


# what an audit entry may record (`shared.audit`)
AUDIT_ACTIONS = (
    "read",
    "create",
    "update",
    "status_change",
    "export",
    "erase",
    "override",
    "import",
    "token_create",
    "token_revoke",
)


def define_infrastructure(metadata: MetaData) -> Infrastructure:
    """Declare the infrastructure tables in `metadata` (and so in its schema)."""
    outbox = Table(
        "outbox",
        metadata,
        Column("id", BigInteger, Identity(), primary_key=True),
        Column("event_id", UUID(as_uuid=True), nullable=False, unique=True),
        Column("event_type", String(100), nullable=False),
        Column("topic", String(200), nullable=False),
        Column("aggregate_id", String(100), nullable=False),
        Column("bucket", SmallInteger, nullable=False),
        Column("envelope", JSONB, nullable=False),
        Column("created_at", UTCDateTime, nullable=False, server_default=text("now()")),
        Column("published_at", UTCDateTime, nullable=True),
        Column("attempts", Integer, nullable=False, server_default=text("0")),
        Column("last_error", Text, nullable=True),
        Index(
            "ix_outbox_pending",
            "bucket",
            "id",
            postgresql_where=text("published_at IS NULL"),
        ),
        # published rows by publication time: the retention prune and the replay
        # (shared.retention)
        Index(
            "ix_outbox_published_at",
            "published_at",
            postgresql_where=text("published_at IS NOT NULL"),
        ),
    )
    relay_buckets = Table(
        "relay_buckets",
        metadata,
        Column("bucket", SmallInteger, primary_key=True, autoincrement=False),
    )
    processed_events = Table(
        "processed_events",
        metadata,
        Column("event_id", UUID(as_uuid=True), primary_key=True),
        Column("event_type", String(100), nullable=False),
        Column("processed_at", UTCDateTime, nullable=False, server_default=text("now()")),
    )
    api_tokens = Table(
        "api_tokens",
        metadata,
        Column("id", Integer, Identity(), primary_key=True),
        Column("name", String(100), nullable=False),
        Column("role", String(20), nullable=False),
        Column("token_hash", String(64), nullable=False, unique=True),
        Column("prefix", String(12), nullable=False),
        Column("created_at", UTCDateTime, nullable=False, server_default=text("now()")),
        Column("revoked_at", UTCDateTime, nullable=True),
    )
    audit_events = Table(
        "audit_events",
        metadata,
        Column("id", BigInteger, Identity(), primary_key=True),
        Column("occurred_at", UTCDateTime, nullable=False, server_default=text("now()")),
        Column("actor", String(100), nullable=False),
        Column("actor_role", String(20), nullable=False),
        Column("action", String(20), nullable=False),
        Column("entity_type", String(50), nullable=False),
        Column("entity_id", String(100), nullable=False),
        # names of the changed fields, never their values
        Column("fields", JSONB, nullable=False, server_default=text("'[]'::jsonb")),
        Column("request_id", String(64), nullable=True),
        Index("ix_audit_events_entity", "entity_type", "entity_id", "id"),
        Index("ix_audit_events_occurred_at", "occurred_at"),
    )
    return Infrastructure(outbox, relay_buckets, processed_events, api_tokens, audit_events)
