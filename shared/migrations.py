"""Alembic helpers: one version history per service schema, roles and grants, `upgrade_all`."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import sqlalchemy as sa
from alembic import command, context
from alembic.config import Config
from psycopg2 import sql
from psycopg2.extensions import encrypt_password
from sqlalchemy import MetaData, pool, text
from sqlalchemy.engine import Connection

from shared.db import driver_url
from shared.infrastructure import RELAY_BUCKETS
from shared.settings import SERVICES

ROOT = Path(__file__).resolve().parent.parent


def _quote(identifier: str) -> str:
    if not identifier.replace("_", "").isalnum():
        raise ValueError(f"unsafe SQL identifier: {identifier!r}")
    return f'"{identifier}"'


def migration_url() -> str:
    """The URL migrations run with: `MIGRATIONS_DATABASE_URL`, else `DATABASE_URL`."""
    url = os.environ.get("MIGRATIONS_DATABASE_URL") or os.environ.get("DATABASE_URL")
    if not url:
        raise SystemExit(
            "MIGRATIONS_DATABASE_URL (or DATABASE_URL) must name the database to migrate"
        )
    return url


def alembic_config(service: str, url: str | None = None) -> Config:
    """The Alembic configuration of one service's version history."""
    config = Config()
    config.set_main_option("script_location", str(ROOT / "migrations" / service))
    config.set_main_option("sqlalchemy.url", (url or migration_url()).replace("%", "%%"))
    config.attributes["service"] = service
    return config


def upgrade_all(
    url: str | None = None, revision: str = "head", services: Sequence[str] = SERVICES
) -> None:
    """Upgrade every (or the given) service schema, one history after the other."""
    for service in services:
        command.upgrade(alembic_config(service, url), revision)


def run_env(schema: str, metadata: MetaData) -> None:
    """Body of each service's `env.py` (online mode only: migrations need a database)."""
    url = context.config.get_main_option("sqlalchemy.url") or migration_url()
    engine = sa.create_engine(driver_url(url), poolclass=pool.NullPool)
    with engine.connect() as connection:
        connection.execute(text(f"CREATE SCHEMA IF NOT EXISTS {_quote(schema)}"))
        ensure_service_role(connection, schema)  # before the revisions: they may grant to it
        connection.commit()
        context.configure(
            connection=connection,
            target_metadata=metadata,
            version_table_schema=schema,
            include_schemas=True,
            include_name=lambda name, type_, _parent: type_ != "schema" or name == schema,
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()
            grant_service_role(connection, schema)


def ensure_service_role(connection: Connection, schema: str) -> None:
    """Create the service's login role (if missing); set `<SCHEMA>_DB_PASSWORD` when given."""
    role = _quote(schema)  # also validates `schema` before it is inlined below
    connection.execute(
        text(
            f"DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{schema}') "
            f"THEN CREATE ROLE {role} LOGIN; END IF; END $$"
        )
    )
    password = os.environ.get(f"{schema.upper()}_DB_PASSWORD")
    if password:
        set_role_password(connection, schema, password)


def set_role_password(connection: Connection, role: str, password: str) -> None:
    """`ALTER ROLE ... PASSWORD`, sending only the hash (as psql's \\password does).

    ALTER ROLE takes no bind parameters; the hash is quoted by psycopg2, and the statement
    goes straight to the driver, so neither SQLAlchemy's `:name` parsing nor its logging
    nor the server's statement log ever sees the password.
    """
    dbapi = connection.connection.dbapi_connection
    verifier = encrypt_password(password, role, scope=dbapi)
    statement = sql.SQL("ALTER ROLE {} PASSWORD {}").format(
        sql.Identifier(role), sql.Literal(verifier)
    )
    cursor = connection.connection.cursor()
    try:
        cursor.execute(statement)
    finally:
        cursor.close()


def grant_service_role(connection: Connection, schema: str) -> None:
    """Limit the service's login role to DML on its own schema (after every upgrade).

    Tables the role holds no privilege on yet (new ones) get SELECT, INSERT, UPDATE and
    DELETE; a table whose privileges a revision set itself keeps them (`api_tokens`: read
    only, see `make_tokens_read_only`).

    No role but the migrations' may create objects in `public`: PostgreSQL 14 and older (and
    databases made from their templates) let every role do that, so a service could plant a
    table or a function there that others' queries pick up.
    """
    role = _quote(schema)
    for statement in (
        "DO $$ BEGIN IF EXISTS (SELECT FROM pg_namespace WHERE nspname = 'public') "
        "THEN REVOKE CREATE ON SCHEMA public FROM PUBLIC; END IF; END $$",
        f"REVOKE ALL ON SCHEMA {role} FROM PUBLIC",
        f"GRANT USAGE ON SCHEMA {role} TO {role}",
        f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {role} TO {role}",
        f"REVOKE ALL ON {role}.alembic_version FROM {role}",
    ):
        connection.execute(text(statement))
    new_tables = connection.execute(
        text(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = :schema AND c.relkind IN ('r', 'p')"
            " AND c.relname <> 'alembic_version'"
            " AND NOT has_table_privilege(:role, c.oid, 'SELECT, INSERT, UPDATE, DELETE')"
        ),
        {"schema": schema, "role": schema},
    ).scalars()
    for table in list(new_tables):
        connection.execute(
            text(f"GRANT SELECT, INSERT, UPDATE, DELETE ON {role}.{_quote(table)} TO {role}")
        )


def make_tokens_read_only(schema: str) -> None:
    """Revision step: the service role may read `api_tokens`, never write it.

    Tokens are created and revoked by the admin CLI on the migrations connection, so a
    compromised service cannot mint tokens, un-revoke one or change a token's role.
    """
    from alembic import op as alembic_op

    role = _quote(schema)
    alembic_op.execute(f"REVOKE ALL ON {role}.api_tokens FROM {role}")
    alembic_op.execute(f"GRANT SELECT ON {role}.api_tokens TO {role}")


def make_tokens_writable(schema: str) -> None:
    """Downgrade step of `make_tokens_read_only`: the default DML grant again."""
    from alembic import op as alembic_op

    role = _quote(schema)
    alembic_op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON {role}.api_tokens TO {role}")


def create_audit_table(schema: str) -> None:
    """Revision step: the append-only audit log (`shared.audit`); the service role may
    insert and read it, never change or delete an entry."""
    from alembic import op as alembic_op

    from shared.db import UTCDateTime

    alembic_op.create_table(
        "audit_events",
        sa.Column("id", sa.BigInteger, sa.Identity()),
        sa.Column("occurred_at", UTCDateTime, nullable=False, server_default=sa.text("now()")),
        sa.Column("actor", sa.String(100), nullable=False),
        sa.Column("actor_role", sa.String(20), nullable=False),
        sa.Column("action", sa.String(20), nullable=False),
        sa.Column("entity_type", sa.String(50), nullable=False),
        sa.Column("entity_id", sa.String(100), nullable=False),
        sa.Column(
            "fields",
            sa.dialects.postgresql.JSONB,
            nullable=False,
            server_default=sa.text("'[]'::jsonb"),
        ),
        sa.Column("request_id", sa.String(64), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_audit_events"),
        schema=schema,
    )
    alembic_op.create_index(
        "ix_audit_events_entity",
        "audit_events",
        ["entity_type", "entity_id", "id"],
        schema=schema,
    )
    alembic_op.create_index(
        "ix_audit_events_occurred_at", "audit_events", ["occurred_at"], schema=schema
    )
    role = _quote(schema)
    alembic_op.execute(f"REVOKE ALL ON {role}.audit_events FROM {role}")
    alembic_op.execute(f"GRANT SELECT, INSERT ON {role}.audit_events TO {role}")


def create_outbox_published_index(schema: str) -> None:
    """Revision step: published outbox rows by publication time, for the retention prune
    and the replay (`shared.retention`).

    Built CONCURRENTLY (outside the revision's transaction): an outbox never pruned before
    may be large, and a plain CREATE INDEX would hold back every insert into it (every
    write of the API) until it is built. A build that failed half-way leaves an invalid
    index, dropped first when the revision runs again."""
    from alembic import op as alembic_op

    with alembic_op.get_context().autocommit_block():
        alembic_op.execute(
            f"DROP INDEX CONCURRENTLY IF EXISTS {_quote(schema)}.ix_outbox_published_at"
        )
        alembic_op.create_index(
            "ix_outbox_published_at",
            "outbox",
            ["published_at"],
            schema=schema,
            postgresql_where=sa.text("published_at IS NOT NULL"),
            postgresql_concurrently=True,
        )


def drop_outbox_published_index(schema: str) -> None:
    """Downgrade step of `create_outbox_published_index`."""
    from alembic import op as alembic_op

    alembic_op.drop_index("ix_outbox_published_at", table_name="outbox", schema=schema)


def drop_audit_table(schema: str) -> None:
    """Downgrade step of `create_audit_table`."""
    from alembic import op as alembic_op

    alembic_op.drop_table("audit_events", schema=schema)


def create_infrastructure_tables(schema: str) -> None:
    """First-revision step of every service: outbox, buckets, idempotency, tokens."""
    from alembic import op as alembic_op

    from shared.db import UTCDateTime

    alembic_op.create_table(
        "outbox",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("event_id", sa.dialects.postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("event_type", sa.String(100), nullable=False),
        sa.Column("topic", sa.String(200), nullable=False),
        sa.Column("aggregate_id", sa.String(100), nullable=False),
        sa.Column("bucket", sa.SmallInteger, nullable=False),
        sa.Column("envelope", sa.dialects.postgresql.JSONB, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False, server_default=sa.text("now()")),
        sa.Column("published_at", UTCDateTime, nullable=True),
        sa.Column("attempts", sa.Integer, nullable=False, server_default=sa.text("0")),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_outbox"),
        sa.UniqueConstraint("event_id", name="uq_outbox_event_id"),
        schema=schema,
    )
    alembic_op.create_index(
        "ix_outbox_pending",
        "outbox",
        ["bucket", "id"],
        schema=schema,
        postgresql_where=sa.text("published_at IS NULL"),
    )
    buckets = alembic_op.create_table(
        "relay_buckets",
        sa.Column("bucket", sa.SmallInteger, autoincrement=False),
        sa.PrimaryKeyConstraint("bucket", name="pk_relay_buckets"),
        schema=schema,
    )
    alembic_op.bulk_insert(buckets, [{"bucket": n} for n in range(RELAY_BUCKETS)])
    alembic_op.create_table(
        "processed_events",
        sa.Column("event_id", sa.dialects.postgresql.UUID(as_uuid=True)),
        sa.Column("event_type", sa.String(100), nullable=False),
        sa.Column("processed_at", UTCDateTime, nullable=False, server_default=sa.text("now()")),
        sa.PrimaryKeyConstraint("event_id", name="pk_processed_events"),
        schema=schema,
    )
    alembic_op.create_table(
        "api_tokens",
        sa.Column("id", sa.Integer, sa.Identity()),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("role", sa.String(20), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("prefix", sa.String(12), nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False, server_default=sa.text("now()")),
        sa.Column("revoked_at", UTCDateTime, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_api_tokens"),
        sa.UniqueConstraint("token_hash", name="uq_api_tokens_token_hash"),
        schema=schema,
    )


def trigram_schema() -> str | None:
    """Revision step: the schema of pg_trgm (quoted), the extension created if the server
    has it and we may (a trusted extension: the database's CREATE privilege is enough);
    None if not, and the revision then makes no trigram index (a search scans instead)."""
    from alembic import op as alembic_op

    bind = alembic_op.get_bind()
    available = bind.execute(
        sa.text("SELECT 1 FROM pg_available_extensions WHERE name = 'pg_trgm'")
    ).first()
    if available is None:
        return None
    savepoint = bind.begin_nested()
    try:
        bind.execute(sa.text("CREATE EXTENSION IF NOT EXISTS pg_trgm"))
    except sa.exc.DBAPIError:
        savepoint.rollback()  # not allowed to: the search scans, as without the extension
        return None
    savepoint.commit()
    schema = bind.execute(
        sa.text(
            "SELECT quote_ident(n.nspname) FROM pg_extension e "
            "JOIN pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'pg_trgm'"
        )
    ).scalar_one()
    return str(schema)
