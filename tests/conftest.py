"""Session fixtures that start real servers: PostgreSQL (embedded unless TEST_DATABASE_URL)
and a Kafka-protocol broker (Tansu unless TEST_KAFKA_BOOTSTRAP_SERVERS)."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import settings as hypothesis_settings

from shared.cli import ensure_bootstrap_admin
from shared.db import driver_url, role_url
from shared.devstack import EmbeddedPostgres, TansuBroker, drop_database, ensure_database
from shared.migrations import upgrade_all
from shared.pgbouncer import PgBouncer
from shared.settings import SERVICES, ServiceSettings

ADMIN_TOKEN = "test-admin-token-0123456789-abcdefghijklmnop"  # BOOTSTRAP_ADMIN_TOKEN: >= 32
ANSWER_LINK_SECRET = "test-answer-link-secret-0123456789abcdef"
SERVICE_TOKEN = "test-service-token-0123456789-abcdefghijkl"  # what SERVICE_TOKEN holds

# CI runs each property test on the same examples (a gate must not depend on luck);
# local runs keep exploring new random examples.
hypothesis_settings.register_profile("ci", derandomize=True, database=None)
if os.environ.get("CI"):
    hypothesis_settings.load_profile("ci")


@pytest.fixture(scope="session")
def pg_admin_url() -> Iterator[str]:
    """Superuser URL of a PostgreSQL server for this test session.

    The embedded server's data lives in a directory of its own, not under pytest's numbered
    temporary directories: a second pytest session on the machine removes the older ones of
    those, and with them the data of a server still running.
    """
    external = os.environ.get("TEST_DATABASE_URL")
    if external:
        yield external
        return
    home = Path(tempfile.mkdtemp(prefix="placement-test-pg-"))
    server = EmbeddedPostgres(home / "data")
    try:
        url = server.start()
        yield url
    finally:
        server.stop()
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="session")
def pgbouncer(pg_admin_url: str) -> Iterator[PgBouncer | None]:
    """With TEST_PGBOUNCER=1: PgBouncer in transaction pooling mode in front of the server,
    through which the services (and the e2e stack) reach the test database."""
    if os.environ.get("TEST_PGBOUNCER") != "1":
        yield None
        return
    bouncer = PgBouncer(pg_admin_url).start()
    yield bouncer
    bouncer.stop()


@contextmanager
def migrated_database(
    pg_admin_url: str, pgbouncer: PgBouncer | None, prefix: str = "test"
) -> Iterator[str]:
    """A fresh database with every service schema migrated to head and the admin token stored
    (what `make run` / `shared.cli migrate` do); its URL as the services reach it (through
    PgBouncer when TEST_PGBOUNCER=1). Dropped afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    url = ensure_database(pg_admin_url, name)
    upgrade_all(url)
    ensure_bootstrap_admin(url, ADMIN_TOKEN)
    yield pgbouncer.url_for(url) if pgbouncer is not None else url
    drop_database(pg_admin_url, name)


@pytest.fixture(scope="session")
def database_url(pg_admin_url: str, pgbouncer: PgBouncer | None) -> Iterator[str]:
    """The test session's database (`migrated_database`)."""
    with migrated_database(pg_admin_url, pgbouncer) as url:
        yield url


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """Bootstrap servers of a Kafka-protocol broker for this session."""
    external = os.environ.get("TEST_KAFKA_BOOTSTRAP_SERVERS")
    if external:
        yield external
        return
    broker = TansuBroker()
    yield broker.start()
    broker.stop()


@pytest.fixture
def topic_prefix() -> str:
    """A topic prefix unique to one test, so tests never read each other's messages."""
    return f"t{uuid.uuid4().hex[:8]}."


@pytest.fixture
def admin_engine(database_url: str) -> Iterator[sa.Engine]:
    """Superuser engine on the test database (for set-up and assertions only)."""
    engine = sa.create_engine(driver_url(database_url))
    yield engine
    engine.dispose()


@pytest.fixture
def make_settings(database_url: str, kafka_bootstrap: str, topic_prefix: str) -> Callable[..., Any]:
    """Settings of a service connected as its own role to the test database and broker."""

    def make(cls: type[ServiceSettings], **overrides: Any) -> Any:
        service = cls.model_fields["service_name"].default
        values: dict[str, Any] = {
            "database_url": role_url(database_url, service),
            "kafka_bootstrap_servers": kafka_bootstrap,
            "kafka_topic_prefix": topic_prefix,
            "kafka_session_timeout_ms": 6000,
            "log_json": False,
            "relay_idle_seconds": 0.05,
        }
        if "answer_link_secret" in cls.model_fields:
            values["answer_link_secret"] = ANSWER_LINK_SECRET
        if "service_token" in cls.model_fields:
            values["service_token"] = SERVICE_TOKEN
        values.update(overrides)
        return cls(**values)

    return make


@pytest.fixture
def admin_headers() -> dict[str, str]:
    """Authorization header with the bootstrap admin token."""
    return {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def drain_outboxes(engine: sa.Engine) -> None:
    """Mark every pending outbox row published, so a test's relay sees only its own rows."""
    with engine.begin() as connection:
        for schema in SERVICES:
            connection.execute(
                sa.text(
                    f"UPDATE {schema}.outbox SET published_at = now() WHERE published_at IS NULL"
                )
            )


@pytest.fixture
def clean_outboxes(admin_engine: sa.Engine) -> None:
    """Start the test with no pending outbox rows left by other tests."""
    drain_outboxes(admin_engine)
