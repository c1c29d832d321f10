"""Fixtures of the geocoding tests (test_geocoding.py, test_matching_locations.py): a
database of their own, so the postal codes they import never meet other tests."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from shared.cli import ensure_bootstrap_admin
from shared.db import driver_url, role_url
from shared.devstack import drop_database, ensure_database
from shared.migrations import upgrade_all
from shared.pgbouncer import PgBouncer
from tests.conftest import ADMIN_TOKEN
from tests.unit.test_geocoding_rules import TSV, tsv_line


@pytest.fixture(scope="module")
def geo_database(pg_admin_url: str, pgbouncer: PgBouncer | None) -> Iterator[str]:
    """A database per test module: migrated, with the admin token stored (reached through
    PgBouncer when the session runs one)."""
    name = f"geo_{uuid.uuid4().hex[:10]}"
    url = ensure_database(pg_admin_url, name)
    upgrade_all(url)
    ensure_bootstrap_admin(url, ADMIN_TOKEN)
    yield pgbouncer.url_for(url) if pgbouncer is not None else url
    drop_database(pg_admin_url, name)


@pytest.fixture
def geo_engine(geo_database: str) -> Iterator[sa.Engine]:
    """Superuser engine on that database (assertions only)."""
    engine = sa.create_engine(driver_url(geo_database))
    yield engine
    engine.dispose()


@pytest.fixture
def geo_settings_for(make_settings: Any, geo_database: str) -> Callable[..., Any]:
    """Settings of a service connected as its own role to that database."""

    def make(cls: type[Any], **overrides: Any) -> Any:
        service_name = cls.model_fields["service_name"].default
        return make_settings(cls, database_url=role_url(geo_database, service_name), **overrides)

    return make


@pytest.fixture(scope="module")
def plz_tsv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """GeoNames' tab-separated format: 04109 (one place), 01945 (three places), an AT row."""
    path = tmp_path_factory.mktemp("plz") / "DE.txt"
    path.write_text(TSV + "\n" + tsv_line("10115", "Berlin", "Berlin", 52.5323, 13.3846) + "\n")
    return path
