"""Migrations build an empty database and agree with the models; roles are confined."""

from __future__ import annotations

import base64
import hashlib
import hmac
import importlib
import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from shared.db import driver_url, role_url
from shared.devstack import drop_database, ensure_database
from shared.migrations import ensure_service_role, upgrade_all
from shared.settings import SERVICES

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def fresh_database(pg_admin_url: str) -> Iterator[str]:
    name = f"migr_{uuid.uuid4().hex[:10]}"
    url = ensure_database(pg_admin_url, name)
    upgrade_all(url)
    yield url
    drop_database(pg_admin_url, name)


def test_upgrade_head_on_empty_database_creates_every_schema(fresh_database: str) -> None:
    engine = sa.create_engine(driver_url(fresh_database))
    with engine.connect() as connection:
        schemas = set(connection.execute(sa.text("SELECT nspname FROM pg_namespace")).scalars())
        versions = {
            service: connection.execute(
                sa.text(f"SELECT version_num FROM {service}.alembic_version")
            ).scalar_one()
            for service in SERVICES
        }
    engine.dispose()
    assert set(SERVICES) <= schemas
    assert all(versions.values())


def test_upgrade_is_idempotent(fresh_database: str) -> None:
    upgrade_all(fresh_database)  # a second run changes nothing and does not fail


@pytest.mark.parametrize("service", SERVICES)
def test_models_match_migrations(fresh_database: str, service: str) -> None:
    models = importlib.import_module(f"{service}.models")
    engine = sa.create_engine(driver_url(fresh_database))
    with engine.connect() as connection:
        context = MigrationContext.configure(
            connection,
            opts={
                "include_schemas": True,
                "include_name": lambda name, type_, _: type_ != "schema" or name == service,
                "compare_type": True,
                "version_table_schema": service,
                # indexes made only where the server has an extension (e.g. pg_trgm)
                "include_object": lambda _obj, name, type_, reflected, _compare_to: (
                    not (
                        type_ == "index"
                        and reflected
                        and name in getattr(models, "TRIGRAM_INDEXES", ())
                    )
                ),
            },
        )
        differences = compare_metadata(context, models.Base.metadata)
    engine.dispose()
    assert differences == []


def test_service_role_cannot_touch_another_schema_or_change_its_own(fresh_database: str) -> None:
    engine = sa.create_engine(driver_url(role_url(fresh_database, "matching_service")))
    with engine.connect() as connection:
        connection.execute(sa.text("SELECT count(*) FROM matching_service.patient_searches"))
        with pytest.raises(sa.exc.ProgrammingError, match="permission denied"):
            connection.execute(sa.text("SELECT count(*) FROM patient_service.patients"))
        connection.rollback()
        with pytest.raises(sa.exc.ProgrammingError, match="must be owner"):
            connection.execute(sa.text("DROP TABLE matching_service.patient_searches"))
        connection.rollback()
    engine.dispose()


def test_service_role_reads_tokens_but_cannot_create_change_or_delete_them(
    fresh_database: str,
) -> None:
    upgrade_all(fresh_database)  # the grant step after every upgrade keeps the table read only
    denied = [
        "INSERT INTO {schema}.api_tokens (name, role, token_hash, prefix)"
        " VALUES ('forged', 'admin', repeat('0', 64), 'forged')",
        "UPDATE {schema}.api_tokens SET revoked_at = NULL",
        "UPDATE {schema}.api_tokens SET role = 'admin'",
        "DELETE FROM {schema}.api_tokens",
    ]
    for service in SERVICES:
        engine = sa.create_engine(driver_url(role_url(fresh_database, service)))
        with engine.connect() as connection:
            connection.execute(sa.text(f"SELECT count(*) FROM {service}.api_tokens"))
            for statement in denied:
                with pytest.raises(sa.exc.ProgrammingError, match="permission denied"):
                    connection.execute(sa.text(statement.format(schema=service)))
                connection.rollback()
            # the other tables of its schema stay writable
            connection.execute(sa.text(f"DELETE FROM {service}.processed_events WHERE false"))
            connection.rollback()
        engine.dispose()


def test_role_password_with_url_special_characters_is_set_and_usable(
    fresh_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    role = f"pwtest_{uuid.uuid4().hex[:8]}"
    password = "p:a@s/s%w#rd x'y"
    monkeypatch.setenv(f"{role.upper()}_DB_PASSWORD", password)
    admin = sa.create_engine(driver_url(fresh_database))
    try:
        with admin.begin() as connection:
            ensure_service_role(connection, role)  # what every migration run does first
        url = role_url(fresh_database, role, password)
        assert sa.engine.make_url(url).password == password
        engine = sa.create_engine(driver_url(url))
        with engine.connect() as connection:
            assert connection.execute(sa.text("SELECT current_user")).scalar_one() == role
        engine.dispose()
        with admin.connect() as connection:
            verifier = connection.execute(
                sa.text("SELECT rolpassword FROM pg_authid WHERE rolname = :role"), {"role": role}
            ).scalar_one()
        # the test server trusts local logins, so check the stored SCRAM secret itself
        assert _scram_secret_matches(verifier, password)
        assert not _scram_secret_matches(verifier, "p:a@s/s%w#rd x''y")
    finally:
        with admin.begin() as connection:
            connection.execute(sa.text(f'DROP ROLE IF EXISTS "{role}"'))
        admin.dispose()


def _scram_secret_matches(secret: str, password: str) -> bool:
    """Whether a PostgreSQL SCRAM secret (`SCRAM-SHA-256$<iter>:<salt>$<StoredKey>:<ServerKey>`)
    was made from `password`."""
    method, parameters, keys = secret.split("$")
    iterations, salt = parameters.split(":")
    stored_key = keys.split(":")[0]
    salted = hashlib.pbkdf2_hmac(
        "sha256", password.encode(), base64.b64decode(salt), int(iterations)
    )
    client_key = hmac.new(salted, b"Client Key", "sha256").digest()
    expected = base64.b64decode(stored_key)
    return method == "SCRAM-SHA-256" and hmac.compare_digest(
        hashlib.sha256(client_key).digest(), expected
    )
