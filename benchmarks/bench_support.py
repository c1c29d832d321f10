"""The PostgreSQL (and broker) set-up the benchmark scripts share.

Server: BENCH_DATABASE_URL, else TEST_DATABASE_URL (a superuser URL: the server the tests
use serves the benchmarks too), else an embedded PostgreSQL started for the run and stopped
after it. Each run works in a fresh database on that server, migrated and always dropped,
so a benchmark neither sees another's rows nor leaves its own behind.

    with postgres_admin_url(workdir / "pg") as admin_url, fresh_database(admin_url) as url:
        ...

Broker, for the scripts that need one: BENCH_KAFKA_BOOTSTRAP_SERVERS, else a Tansu broker
started for the run and stopped after it (`kafka_broker`).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from shared.devstack import EmbeddedPostgres, TansuBroker, drop_database, ensure_database
from shared.migrations import upgrade_all
from shared.settings import SERVICES

ADMIN_URL_VARIABLES = ("BENCH_DATABASE_URL", "TEST_DATABASE_URL")


@contextmanager
def postgres_admin_url(datadir: Path) -> Iterator[str]:
    """A superuser URL: the environment's, else an embedded server's with its data in `datadir`."""
    for variable in ADMIN_URL_VARIABLES:
        if os.environ.get(variable):
            yield os.environ[variable]
            return
    server = EmbeddedPostgres(datadir)
    try:
        yield server.start()
    finally:
        server.stop()


@contextmanager
def fresh_database(
    admin_url: str, services: Sequence[str] = SERVICES, name: str | None = None
) -> Iterator[str]:
    """Database `name` (default `bench_<random>`) created, `services` migrated; always dropped."""
    name = name or f"bench_{uuid.uuid4().hex[:8]}"
    url = ensure_database(admin_url, name)
    try:
        upgrade_all(url, services=services)
        yield url
    finally:
        drop_database(admin_url, name)


@contextmanager
def kafka_broker() -> Iterator[tuple[str, int | None]]:
    """(bootstrap servers, the broker's pid when started here): BENCH_KAFKA_BOOTSTRAP_SERVERS,
    else a Tansu broker of its own, stopped afterwards."""
    bootstrap = os.environ.get("BENCH_KAFKA_BOOTSTRAP_SERVERS")
    if bootstrap:
        yield bootstrap, None
        return
    broker = TansuBroker()
    try:
        bootstrap = broker.start()
        yield bootstrap, broker.pid
    finally:
        broker.stop()
