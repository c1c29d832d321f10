"""The list endpoints' queries use indexes on a realistically filled database.

A platform is loaded in bulk (benchmarks/api_data.py at 30 % of the benchmark's size:
30,000 patients, 12,000 therapists, their searches, inquiries, emails and calls), enough
rows for the planner to choose. Each list request runs through its service's real code;
every statement it sends is captured and explained (EXPLAIN (FORMAT JSON), same
parameters): no filter of a large table is evaluated by a sequential scan, and each large
table is read with a LIMIT (a page, or a count that stops at shared.db.COUNT_LIMIT), never
whole.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask

from benchmarks.api_data import Platform, Sizes, load_platform
from communication_service.app import create_app as communication_app
from communication_service.settings import CommunicationSettings
from matching_service.app import create_app as matching_app
from matching_service.settings import MatchingSettings
from patient_service.app import create_app as patient_app
from patient_service.settings import PatientSettings
from shared.auth import Role, issue_token
from shared.cli import token_stores
from shared.db import COUNT_LIMIT, driver_url, role_url
from shared.devstack import drop_database, ensure_database
from shared.migrations import upgrade_all
from shared.pgbouncer import PgBouncer
from shared.settings import SERVICES
from tests.conftest import ANSWER_LINK_SECRET, SERVICE_TOKEN
from therapist_service.app import create_app as therapist_app
from therapist_service.settings import TherapistSettings

pytestmark = pytest.mark.integration

SCALE = 0.3
# the tables that grow with the platform (small ones, such as api_tokens, may be scanned)
LARGE = {
    "patients",
    "therapists",
    "patient_projection",
    "therapist_projection",
    "patient_searches",
    "inquiries",
    "inquiry_patients",
    "emails",
    "phone_calls",
    "locations",
}


@pytest.fixture(scope="module")
def loaded(pg_admin_url: str, pgbouncer: PgBouncer | None) -> Iterator[tuple[str, str, Platform]]:
    """(superuser URL, URL the services use, what was loaded) of a filled database."""
    name = f"plans_{uuid.uuid4().hex[:10]}"
    url = ensure_database(pg_admin_url, name)
    try:
        upgrade_all(url)
        platform = load_platform(url, sizes=Sizes.scaled(SCALE), seed=7)
        service_url = pgbouncer.url_for(url) if pgbouncer is not None else url
        yield url, service_url, platform
    finally:
        drop_database(pg_admin_url, name)


@pytest.fixture(scope="module")
def token(loaded: tuple[str, str, Platform]) -> str:
    issued = issue_token(f"plans-{uuid.uuid4().hex[:6]}", Role.STAFF)
    with token_stores(loaded[0], SERVICES) as stores:
        for _, store in stores:
            store.store(issued)
    return issued.token


@pytest.fixture(scope="module")
def apps(loaded: tuple[str, str, Platform]) -> dict[str, Flask]:
    _, url, _ = loaded

    def settings(cls: Any, service: str) -> Any:
        values: dict[str, Any] = {
            "database_url": role_url(url, service),
            "kafka_bootstrap_servers": "127.0.0.1:9",  # nothing is published here
            "log_json": False,
            "log_level": "WARNING",
        }
        if "answer_link_secret" in cls.model_fields:
            values["answer_link_secret"] = ANSWER_LINK_SECRET
        if "service_token" in cls.model_fields:
            values["service_token"] = SERVICE_TOKEN
        if "therapist_service_url" in cls.model_fields:  # no contact data to fetch here
            values["therapist_service_url"] = "http://127.0.0.1:9"
            values["patient_service_url"] = "http://127.0.0.1:9"
        return cls(**values)

    return {
        "patient": patient_app(settings(PatientSettings, "patient_service")),
        "therapist": therapist_app(settings(TherapistSettings, "therapist_service")),
        "matching": matching_app(settings(MatchingSettings, "matching_service")),
        "communication": communication_app(
            settings(CommunicationSettings, "communication_service")
        ),
    }


def _statements(app: Flask, path: str, token: str) -> list[tuple[str, Any]]:
    """The SELECTs that the GET of `path` sends (pool pings and token checks aside)."""
    engine = app.extensions["database"].engine
    seen: list[tuple[str, Any]] = []

    def record(conn: Any, cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        text = statement.lstrip().upper()
        if text.startswith("SELECT") and "API_TOKENS" not in text and text != "SELECT 1":
            seen.append((statement, parameters))

    sa.event.listen(engine, "before_cursor_execute", record)
    try:
        response = app.test_client().get(path, headers={"Authorization": f"Bearer {token}"})
    finally:
        sa.event.remove(engine, "before_cursor_execute", record)
    assert response.status_code == 200, (path, response.get_data(as_text=True)[:500])
    return seen


def _nodes(
    plan: dict[str, Any], parent: dict[str, Any] | None = None
) -> Iterator[tuple[dict[str, Any], dict[str, Any] | None]]:
    """Every node of a plan with its parent."""
    yield plan, parent
    for child in plan.get("Plans", []):
        yield from _nodes(child, plan)


def _reads_whole_or_filters(node: dict[str, Any], parent: dict[str, Any] | None) -> bool:
    """A sequential scan that filters (an unindexed condition) or that nothing stops early:
    only a bare scan right under a LIMIT (the first rows of a count) reads a bounded part."""
    bounded = parent is not None and parent["Node Type"] == "Limit" and "Filter" not in node
    return node["Node Type"] == "Seq Scan" and not bounded


def _explain(url: str, statement: str, parameters: Any) -> dict[str, Any]:
    engine = sa.create_engine(driver_url(url))
    try:
        raw: Any = engine.raw_connection()
        try:
            with raw.cursor() as cursor:
                cursor.execute("EXPLAIN (FORMAT JSON) " + statement, parameters)
                return dict(cursor.fetchone()[0][0]["Plan"])
        finally:
            raw.close()
    finally:
        engine.dispose()


def _check(url: str, statements: list[tuple[str, Any]], path: str) -> set[str]:
    """Assert the plans of `statements`; returns the large tables read under a LIMIT."""
    assert statements, f"{path}: no query captured"
    limited: set[str] = set()
    for statement, parameters in statements:
        plan = _explain(url, statement, parameters)
        nodes = list(_nodes(plan))
        large = [(node, parent) for node, parent in nodes if node.get("Relation Name") in LARGE]
        seq = [
            node["Relation Name"] for node, parent in large if _reads_whole_or_filters(node, parent)
        ]
        assert not seq, f"{path}: sequential scan of {seq} in\n{statement}\n{plan}"
        if any(node["Node Type"] == "Limit" for node, _ in nodes):
            limited |= {node["Relation Name"] for node, _ in large}
    return limited


def _paths(platform: Platform) -> dict[str, list[tuple[str, str]]]:
    """(path, the large table the list pages through) per service."""
    code = platform.postal_codes[len(platform.postal_codes) // 2]
    prefix, region = code[:3], code[:2]  # a town's codes, a region's
    therapist = platform.therapist_ids[len(platform.therapist_ids) // 3]
    patient = platform.patient_ids[-1]
    inquiry = platform.inquiry_ids[len(platform.inquiry_ids) // 2]
    today = datetime.now(UTC).date()
    day = platform.call_days[1]
    stamp = (datetime.now(UTC) - timedelta(days=30)).isoformat().replace("+00:00", "Z")
    return {
        "patient": [
            ("/api/patients", "patients"),
            ("/api/patients?page=3&per_page=50", "patients"),
            ("/api/patients?sort=last_name", "patients"),
            ("/api/patients?sort=created_at", "patients"),
            ("/api/patients?status=searching", "patients"),
            ("/api/patients?status=registered&sort=-last_name", "patients"),
            (f"/api/patients?postal_code_prefix={prefix}", "patients"),
            (f"/api/patients?status=searching&postal_code_prefix={region}", "patients"),
            (f"/api/patients?created_from={stamp}", "patients"),
        ],
        "therapist": [
            ("/api/therapists", "therapists"),
            ("/api/therapists?status=active", "therapists"),
            (f"/api/therapists?postal_code_prefix={prefix}", "therapists"),
            ("/api/therapists?therapy_method=systemic", "therapists"),
            ("/api/therapists?potentially_available=true", "therapists"),
            ("/api/therapists?informed_about_platform=true", "therapists"),
        ],
        "matching": [
            ("/api/patient-searches", "patient_searches"),
            ("/api/patient-searches?status=active", "patient_searches"),
            (f"/api/patient-searches?postal_code_prefix={prefix}", "patient_searches"),
            (
                f"/api/patient-searches?status=active&postal_code_prefix={prefix}",
                "patient_searches",
            ),
            ("/api/patient-searches?status=active&waiting_longer_than_days=60", "patient_searches"),
            ("/api/patient-searches?waiting_longer_than_days=300", "patient_searches"),
            ("/api/inquiries", "inquiries"),
            (f"/api/inquiries?therapist_id={therapist}", "inquiries"),
            ("/api/inquiries?status=sent", "inquiries"),
            ("/api/inquiries?status=answered", "inquiries"),
            ("/api/inquiries?overdue=true", "inquiries"),
            (f"/api/inquiries?postal_code_prefix={prefix}", "inquiries"),
        ],
        "communication": [
            ("/api/emails", "emails"),
            (f"/api/emails?therapist_id={therapist}", "emails"),
            (f"/api/emails?patient_id={patient}", "emails"),
            (f"/api/emails?inquiry_id={inquiry}", "emails"),
            ("/api/emails?kind=inquiry&status=sent", "emails"),
            (f"/api/emails?date={today.isoformat()}", "emails"),
            (f"/api/phone-calls?date={day.isoformat()}", "phone_calls"),
        ],
    }


@pytest.mark.parametrize("service", ["patient", "therapist", "matching", "communication"])
def test_list_filters_use_indexes_and_read_a_page(
    service: str, loaded: tuple[str, str, Platform], apps: dict[str, Flask], token: str
) -> None:
    url, _, platform = loaded
    paths = _paths(platform)[service]
    if service == "patient" and _has_trigrams(url):
        # the free-text search has its trigram indexes only where the server has pg_trgm
        paths += [
            ("/api/patients?search=schmidt", "patients"),
            ("/api/patients?search=weber", "patients"),
        ]
    for path, table in paths:
        statements = _statements(apps[service], path, token)
        limited = _check(url, statements, path)
        if table != "phone_calls":  # one day's calls: a range on scheduled_at, all of them
            assert table in limited, f"{path}: {table} is not read under a LIMIT"


@pytest.mark.parametrize(
    "path",
    [
        "/api/patients?search=schmidt",
        "/api/patients?search=zzqx",  # matches nothing: without an index, every row is read
        "/api/therapists?q=schmidt",
        "/api/therapists?q=zzqx",
    ],
)
def test_name_searches_count_through_their_trigram_indexes(
    path: str, loaded: tuple[str, str, Platform], apps: dict[str, Flask], token: str
) -> None:
    """Where the server has pg_trgm, the free-text searches' counts read a trigram index
    (patient_0007, therapist_0008) instead of every row or a whole other index (a count
    has no LIMIT to stop a walk of the id index at a page)."""
    url, _, _ = loaded
    if not _has_trigrams(url):
        pytest.skip("this server has no pg_trgm: the searches read every row, by design")
    service = "patient" if path.startswith("/api/patients") else "therapist"
    statements = _statements(apps[service], path, token)
    _check(url, statements, path)
    counts = [(sql, params) for sql, params in statements if "count(" in sql.lower()]
    assert counts, f"{path}: no count captured"
    for statement, parameters in counts:
        plan = _explain(url, statement, parameters)
        indexes = {node.get("Index Name") for node, _ in _nodes(plan)} - {None}
        assert any(name.endswith("_trgm") for name in indexes), f"{path}: {indexes}\n{plan}"


def _has_trigrams(url: str) -> bool:
    engine = sa.create_engine(driver_url(url))
    try:
        with engine.connect() as connection:
            found = connection.execute(
                sa.text("SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm'")
            ).first()
    finally:
        engine.dispose()
    return found is not None


def test_list_totals_are_exact_up_to_the_count_limit(
    loaded: tuple[str, str, Platform], apps: dict[str, Flask], token: str
) -> None:
    url, _, platform = loaded
    client = apps["patient"].test_client()
    headers = {"Authorization": f"Bearer {token}"}
    everyone = client.get("/api/patients?per_page=5", headers=headers).json
    assert len(platform.patient_ids) > COUNT_LIMIT
    assert (everyone["total"], everyone["total_exact"]) == (COUNT_LIMIT, False)
    assert len(everyone["items"]) == 5
    prefix = platform.postal_codes[0][:3]
    some = client.get(f"/api/patients?postal_code_prefix={prefix}", headers=headers).json
    engine = sa.create_engine(driver_url(url))
    try:
        with engine.connect() as connection:
            expected = connection.execute(
                sa.text("SELECT count(*) FROM patient_service.patients WHERE postal_code LIKE :p"),
                {"p": f"{prefix}%"},
            ).scalar_one()
    finally:
        engine.dispose()
    assert 0 < expected < COUNT_LIMIT
    assert (some["total"], some["total_exact"]) == (expected, True)
