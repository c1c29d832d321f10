"""Each service's database login role, tried with its own connection: it reaches no other
service's schema, changes no table's shape and creates none (in its own schema, `public` or
a new one), cannot become another role, and its audit log is append-only. A statement that
runs is rolled back (a savepoint per statement), so nothing tried here stays.

What the grants intend (shared/migrations.py `grant_service_role`): DML on its own schema's
tables, read-only `api_tokens`, INSERT and SELECT on `audit_events`, nothing on
`alembic_version`, nothing on the other schemas. Temporary tables stay allowed: they are
private to the session and gone with it, and PostgreSQL grants them to every login of the
database unless the database's owner revokes that.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from sqlalchemy import pool

from shared.db import driver_url, role_url
from shared.migrations import grant_service_role
from shared.settings import SERVICES
from tests.reliability.conftest import Tally

pytestmark = pytest.mark.integration

DENIED = "42501"  # insufficient_privilege
RAN = "ran"


def _tables(admin: sa.Engine) -> dict[str, list[tuple[str, str]]]:
    """schema -> (table, its first column) of every service schema."""
    found: dict[str, list[tuple[str, str]]] = {schema: [] for schema in SERVICES}
    with admin.connect() as connection:
        rows = connection.execute(
            sa.text(
                "SELECT n.nspname, c.relname, (SELECT a.attname FROM pg_attribute a "
                "WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped "
                "ORDER BY a.attnum LIMIT 1) FROM pg_class c JOIN pg_namespace n "
                "ON n.oid = c.relnamespace WHERE n.nspname = ANY(:schemas) "
                "AND c.relkind IN ('r', 'p') ORDER BY 1, 2"
            ),
            {"schemas": list(SERVICES)},
        )
        for schema, table, column in rows:
            found[schema].append((table, column))
    return found


def _sequences(admin: sa.Engine) -> dict[str, list[str]]:
    with admin.connect() as connection:
        rows = connection.execute(
            sa.text(
                "SELECT sequence_schema, sequence_name FROM information_schema.sequences "
                "WHERE sequence_schema = ANY(:schemas)"
            ),
            {"schemas": list(SERVICES)},
        ).all()
    found: dict[str, list[str]] = {schema: [] for schema in SERVICES}
    for schema, name in rows:
        found[schema].append(name)
    return found


class RoleSession:
    """One transaction on a service role's own connection; each statement in a savepoint."""

    def __init__(self, connection: sa.Connection, tally: Tally) -> None:
        self.connection = connection
        self.tally = tally

    def attempt(self, statement: str) -> str:
        """`ran`, or the SQLSTATE the statement failed with; nothing it did stays."""
        self.tally.checked += 1
        savepoint = self.connection.begin_nested()
        try:
            self.connection.execute(sa.text(statement))
        except sa.exc.DBAPIError as exc:
            savepoint.rollback()
            return str(getattr(exc.orig, "pgcode", None) or exc.orig)
        savepoint.rollback()
        return RAN

    def granted_to_others(self, schema: str) -> list[str]:
        """What `GRANT ALL ON` three of its tables `TO PUBLIC` by this role gave the other
        service roles (rolled back)."""
        self.tally.checked += 1
        savepoint = self.connection.begin_nested()
        try:
            self.connection.execute(
                sa.text(
                    f"GRANT ALL ON {schema}.outbox, {schema}.audit_events, {schema}.api_tokens "
                    "TO PUBLIC"
                )
            )
            return list(
                self.connection.execute(
                    sa.text(
                        "SELECT r.rolname || ' on ' || c.relname FROM pg_class c "
                        "JOIN pg_namespace n ON n.oid = c.relnamespace, pg_roles r "
                        "WHERE n.nspname = :schema AND c.relkind = 'r' "
                        "AND r.rolname = ANY(:others) "
                        "AND has_table_privilege(r.rolname, c.oid, 'SELECT')"
                    ),
                    {"schema": schema, "others": [s for s in SERVICES if s != schema]},
                ).scalars()
            )
        finally:
            savepoint.rollback()


@pytest.fixture
def role_sessions(database_url: str, tally: Tally) -> Iterator[dict[str, RoleSession]]:
    """A transaction on each service role's own connection, rolled back at the end."""
    engines = {
        service: sa.create_engine(
            driver_url(role_url(database_url, service)), poolclass=pool.NullPool
        )
        for service in SERVICES
    }
    connections = {service: engine.connect() for service, engine in engines.items()}
    try:
        for connection in connections.values():
            connection.begin()
        yield {service: RoleSession(c, tally) for service, c in connections.items()}
    finally:
        for connection in connections.values():
            connection.rollback()
            connection.close()
        for engine in engines.values():
            engine.dispose()


def test_a_service_role_reaches_no_other_services_schema(
    role_sessions: dict[str, RoleSession], admin_engine: sa.Engine
) -> None:
    tables, sequences = _tables(admin_engine), _sequences(admin_engine)
    assert all(tables[schema] for schema in SERVICES)
    reached: list[str] = []
    for service, session in role_sessions.items():
        # the connection is the role's, and it reads its own schema (else every refusal
        # below could be a failed login)
        assert session.attempt(f"SELECT count(*) FROM {service}.outbox") == RAN, service
        for schema in SERVICES:
            if schema == service:
                continue
            for table, column in tables[schema]:
                name = f"{schema}.{table}"
                for statement in (
                    f"SELECT * FROM {name} LIMIT 1",
                    f"INSERT INTO {name} DEFAULT VALUES",
                    f"UPDATE {name} SET {column} = {column}",
                    f"DELETE FROM {name}",
                    f"TRUNCATE {name}",
                ):
                    if (outcome := session.attempt(statement)) != DENIED:
                        reached.append(f"{service}: {statement} -> {outcome}")
            for sequence in sequences[schema]:
                statement = f"SELECT nextval('{schema}.{sequence}')"
                if (outcome := session.attempt(statement)) != DENIED:
                    reached.append(f"{service}: {statement} -> {outcome}")
    assert reached == []


def test_a_service_role_creates_no_tables_and_changes_no_tables_shape(
    role_sessions: dict[str, RoleSession], admin_engine: sa.Engine
) -> None:
    tables = _tables(admin_engine)
    superuser = admin_engine.url.username
    allowed: list[str] = []
    for service, session in role_sessions.items():
        statements = [
            f"CREATE TABLE {service}.roles_probe (a int)",
            f"CREATE VIEW {service}.roles_probe AS SELECT 1 AS a",
            f"CREATE FUNCTION {service}.roles_probe() RETURNS int LANGUAGE sql AS 'SELECT 1'",
            "CREATE TABLE public.roles_probe (a int)",
            "CREATE FUNCTION public.roles_probe() RETURNS int LANGUAGE sql AS 'SELECT 1'",
            "CREATE SCHEMA roles_probe",
            f"ALTER TABLE {service}.outbox ADD COLUMN roles_probe int",
            f"DROP TABLE {service}.outbox",
            f"SELECT * FROM {service}.alembic_version",
            f"UPDATE {service}.alembic_version SET version_num = version_num",
        ]
        statements += [f"TRUNCATE {service}.{table}" for table, _ in tables[service]]
        statements += [f"SET ROLE {other}" for other in SERVICES if other != service]
        statements.append(f"SET ROLE {superuser}")
        for statement in statements:
            if (outcome := session.attempt(statement)) != DENIED:
                allowed.append(f"{service}: {statement} -> {outcome}")
        # it holds no grant option: GRANT runs (with a warning) and gives nobody anything
        shared = session.granted_to_others(service)
        if shared:
            allowed.append(f"{service}: GRANT gave {shared}")
    assert allowed == []


def test_the_audit_log_is_append_only_for_the_service_role(
    role_sessions: dict[str, RoleSession],
) -> None:
    for service, session in role_sessions.items():
        log = f"{service}.audit_events"
        assert (
            session.attempt(
                f"INSERT INTO {log} (actor, actor_role, action, entity_type, entity_id) "
                "VALUES ('roles-probe', 'admin', 'probe', 'probe', '1')"
            )
            == RAN
        ), service
        assert session.attempt(f"SELECT * FROM {log} ORDER BY id DESC LIMIT 1") == RAN, service
        for statement in (
            f"UPDATE {log} SET actor = 'someone else'",
            f"DELETE FROM {log}",
            f"TRUNCATE {log}",
            f"ALTER TABLE {log} DISABLE TRIGGER ALL",
        ):
            assert session.attempt(statement) == DENIED, f"{service}: {statement}"
        # tokens: read, never written (the admin CLI issues and revokes them)
        tokens = f"{service}.api_tokens"
        assert session.attempt(f"SELECT count(*) FROM {tokens}") == RAN, service
        for statement in (
            f"INSERT INTO {tokens} (name, role, token_hash, prefix) VALUES ('x', 'admin', "
            "'0000', '')",
            f"UPDATE {tokens} SET revoked_at = NULL",
            f"DELETE FROM {tokens}",
        ):
            assert session.attempt(statement) == DENIED, f"{service}: {statement}"


def test_the_grants_close_a_public_schema_open_to_everyone(admin_engine: sa.Engine) -> None:
    """PostgreSQL 14 and older let every role create in `public`, and a database restored or
    created from such a template still does: the grants take that back (after every upgrade),
    so no service role may plant a table or function there."""
    with admin_engine.connect() as connection:
        transaction = connection.begin()  # rolled back: other tests see public as it was
        try:
            connection.execute(sa.text("GRANT CREATE ON SCHEMA public TO PUBLIC"))
            opened = connection.execute(
                sa.text("SELECT has_schema_privilege('patient_service', 'public', 'CREATE')")
            ).scalar_one()
            grant_service_role(connection, "patient_service")
            closed = [
                service
                for service in SERVICES
                if connection.execute(
                    sa.text("SELECT has_schema_privilege(:role, 'public', 'CREATE')"),
                    {"role": service},
                ).scalar_one()
            ]
        finally:
            transaction.rollback()
    assert opened is True  # the probe did open it
    assert closed == []
