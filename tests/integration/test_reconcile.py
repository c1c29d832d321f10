"""Reconciliation: projections equal to their sources report nothing (exit 0); a missing,
stale or extra id is named per projection (exit 1), in text and JSON, and --service keeps
the projections of one service. Each test has a database of its own (reconciliation reads
whole schemas), fed by the real use cases and handlers."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
import sqlalchemy as sa

from geocoding_service.handlers import handlers as geo_handlers
from geocoding_service.models import INFRA as GEO_INFRA
from geocoding_service.settings import GeocodingSettings
from matching_service.handlers import HANDLERS as MATCHING_HANDLERS
from patient_service.app import create_app as create_patient_app
from patient_service.settings import PatientSettings
from shared.cli import main
from shared.consumer import Handler
from shared.db import Database, driver_url, role_url
from shared.events import Envelope
from shared.outbox import OutboxWriter
from shared.pgbouncer import PgBouncer
from shared.reconcile import PROJECTIONS, reconcile
from tests.conftest import ADMIN_TOKEN, SERVICE_TOKEN, migrated_database
from tests.helpers import patient_body
from tests.integration.test_therapist_api import therapist_body
from tests.matching_support import insert_inquiry
from therapist_service.app import create_app as create_therapist_app
from therapist_service.settings import TherapistSettings

pytestmark = pytest.mark.integration

PATIENTS = "matching_service.patient_projection"
GEO = "geocoding_service.entity_locations"
LOCATIONS = "matching_service.locations"
SEARCHES = "patient_service.patients.search_id+status"
THERAPISTS = "matching_service.therapist_projection"
COOLING = "therapist_service.therapists.next_contactable_date"
EMAILS = "communication_service.emails(inquiry)"
SENT = "matching_service.inquiries.sent_at"


@pytest.fixture
def own_url(pg_admin_url: str, pgbouncer: PgBouncer | None) -> Iterator[str]:
    with migrated_database(pg_admin_url, pgbouncer, "rec") as url:
        yield url


@pytest.fixture
def engine(own_url: str) -> Iterator[sa.Engine]:
    engine = sa.create_engine(driver_url(own_url))
    yield engine
    engine.dispose()


def _deliver(
    engine: sa.Engine, source: str, database: Database, handlers: Mapping[str, Handler]
) -> int:
    """Hand every event in `source`'s outbox to `handlers` (what the consumer does), in order."""
    with engine.connect() as connection:
        rows = (
            connection.execute(sa.text(f"SELECT envelope FROM {source}.outbox ORDER BY id"))
            .scalars()
            .all()
        )
    handled = 0
    for raw in rows:
        envelope = Envelope.model_validate(raw)
        handler = handlers.get(envelope.event_type)
        if handler is None:
            continue
        with database.unit_of_work() as uow:
            handler(uow, envelope)
            uow.commit()
        handled += 1
    return handled


def _follow(own_url: str, engine: sa.Engine) -> None:
    """Geocoding and matching handle every patient and therapist event, matching every
    location event (what their consumers do; handling one again changes nothing)."""
    geo_settings = GeocodingSettings(
        database_url=role_url(own_url, "geocoding_service"), log_json=False
    )
    geocoding = Database(geo_settings.database_url, outbox=OutboxWriter(GEO_INFRA), pool_size=1)
    matching = Database(role_url(own_url, "matching_service"), pool_size=1)
    try:
        for source in ("patient_service", "therapist_service"):
            _deliver(engine, source, geocoding, geo_handlers(geo_settings))
            _deliver(engine, source, matching, MATCHING_HANDLERS)
        _deliver(engine, "geocoding_service", matching, MATCHING_HANDLERS)
    finally:
        geocoding.dispose()
        matching.dispose()


@pytest.fixture
def therapist(own_url: str, engine: sa.Engine) -> int:
    """A therapist registered through the API, followed by geocoding and matching."""
    settings = TherapistSettings(
        database_url=role_url(own_url, "therapist_service"), log_json=False
    )
    client = create_therapist_app(settings).test_client()
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    response = client.post("/api/therapists", json=therapist_body(), headers=headers)
    assert response.status_code == 201, response.json
    _follow(own_url, engine)
    return int(response.json["id"])


@pytest.fixture
def patients(own_url: str, engine: sa.Engine) -> list[int]:
    """Three patients registered through the API and followed by geocoding and matching."""
    settings = PatientSettings(
        database_url=role_url(own_url, "patient_service"),
        log_json=False,
        service_token=SERVICE_TOKEN,
    )
    client = create_patient_app(settings).test_client()
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    ids = []
    for _ in range(3):
        response = client.post("/api/patients", json=patient_body(), headers=headers)
        assert response.status_code == 201, response.json
        ids.append(response.json["id"])
    _follow(own_url, engine)
    return ids


def _run(engine: sa.Engine, sql: str, **params: Any) -> None:
    with engine.begin() as connection:
        connection.execute(sa.text(sql), params)


def test_equal_projections_report_nothing_and_exit_0(
    own_url: str,
    patients: list[int],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    report = reconcile(own_url)
    assert report.ok, report.lines()
    assert [diff.projection for diff in report.diffs] == [p.name for p in PROJECTIONS]
    assert report.diff(PATIENTS).checked == 3
    assert report.diff(GEO).checked == 3
    assert report.diff(LOCATIONS).checked == 3

    monkeypatch.setenv("MIGRATIONS_DATABASE_URL", own_url)
    assert main(["reconcile"]) == 0
    out = capsys.readouterr().out
    assert f"{PATIENTS} <- patient_service.patients: ok (3 ids;" in out
    assert "DIFFERS" not in out


def test_missing_stale_and_extra_ids_are_named_per_projection(
    own_url: str,
    engine: sa.Engine,
    patients: list[int],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    first, second, third = patients
    # matching lost the first patient, holds an old version of the second, and one the
    # patient service never had
    _run(engine, "DELETE FROM matching_service.patient_projection WHERE patient_id = :id", id=first)
    _run(
        engine,
        "UPDATE matching_service.patient_projection SET version = version - 1 "
        "WHERE patient_id = :id",
        id=second,
    )
    with engine.begin() as connection:
        for sql in (
            "CREATE TEMP TABLE copied ON COMMIT DROP AS "
            "SELECT * FROM matching_service.patient_projection WHERE patient_id = :id",
            "UPDATE copied SET patient_id = :new",
            "INSERT INTO matching_service.patient_projection SELECT * FROM copied",
        ):
            connection.execute(sa.text(sql), {"id": third, "new": third + 1000})
    # geocoding lost the third patient's location; matching still holds it
    _run(
        engine,
        "DELETE FROM geocoding_service.entity_locations WHERE entity_type = 'patient' "
        "AND entity_id = :id",
        id=third,
    )
    # matching started a search the patient service never heard of
    _run(
        engine,
        "INSERT INTO matching_service.patient_searches (patient_id, status, waiting_since, "
        "contact_budget) VALUES (:id, 'active', now(), 25)",
        id=second,
    )

    report = reconcile(own_url)
    assert not report.ok
    patients_diff = report.diff(PATIENTS)
    assert (patients_diff.missing, patients_diff.stale, patients_diff.extra) == (
        [str(first)],
        [str(second)],
        [str(third + 1000)],
    )
    assert report.diff(GEO).missing == [f"patient:{third}"]
    assert report.diff(LOCATIONS).extra == [f"patient:{third}"]
    assert report.diff(SEARCHES).missing == [str(second)]
    untouched = [
        d for d in report.diffs if d.projection not in {PATIENTS, GEO, LOCATIONS, SEARCHES}
    ]
    assert all(diff.ok for diff in untouched)

    monkeypatch.setenv("MIGRATIONS_DATABASE_URL", own_url)
    assert main(["reconcile"]) == 1
    out = capsys.readouterr().out
    assert (
        f"{PATIENTS} <- patient_service.patients: DIFFERS (4 ids; 1 missing, 1 stale, 1 extra)"
        in out
    )
    assert f"  missing: {first}" in out
    assert f"  extra: {third + 1000}" in out

    assert main(["reconcile", "--json"]) == 1
    document = json.loads(capsys.readouterr().out)
    assert document["ok"] is False
    by_name = {entry["projection"]: entry for entry in document["projections"]}
    assert by_name[PATIENTS]["stale"] == [str(second)]
    assert by_name[SEARCHES]["missing"] == [str(second)]

    # one service's projections: communication's are equal, so exit 0
    assert main(["reconcile", "--service", "communication_service", "--json"]) == 0
    names = [entry["projection"] for entry in json.loads(capsys.readouterr().out)["projections"]]
    assert names == [p.name for p in PROJECTIONS if "communication_service" in p.services]


def test_followed_search_status_behind_matching_is_stale(
    own_url: str, engine: sa.Engine, patients: list[int]
) -> None:
    patient = patients[0]
    with engine.begin() as connection:
        search = connection.execute(
            sa.text(
                "INSERT INTO matching_service.patient_searches (patient_id, status, waiting_since, "
                "contact_budget) VALUES (:id, 'active', now(), 25) RETURNING id"
            ),
            {"id": patient},
        ).scalar_one()
    # the patient service follows the search but missed that it started
    _run(
        engine,
        "UPDATE patient_service.patients SET search_id = :s WHERE id = :id",
        s=search,
        id=patient,
    )
    assert reconcile(own_url).diff(SEARCHES).stale == [str(patient)]
    _run(
        engine,
        "UPDATE patient_service.patients SET status = 'searching' WHERE id = :id",
        id=patient,
    )
    assert reconcile(own_url).diff(SEARCHES).ok
    # matching cancelled it; the patient service still says searching
    _run(
        engine,
        "UPDATE matching_service.patient_searches SET status = 'cancelled' WHERE id = :s",
        s=search,
    )
    assert reconcile(own_url).diff(SEARCHES).stale == [str(patient)]
    # a search id matching does not know
    _run(engine, "UPDATE patient_service.patients SET search_id = NULL WHERE id = :id", id=patient)
    _run(
        engine,
        "UPDATE patient_service.patients SET search_id = 999999 WHERE id = :id",
        id=patients[1],
    )
    diff = reconcile(own_url).diff(SEARCHES)
    assert (diff.missing, diff.extra) == ([str(patient)], [str(patients[1])])


def test_unknown_service_or_projection_is_refused(own_url: str) -> None:
    with pytest.raises(ValueError, match="unknown service"):
        reconcile(own_url, services=("billing_service",))
    with pytest.raises(ValueError, match="unknown projection"):
        reconcile(own_url, projections=("billing_service.invoices",))
    assert [d.projection for d in reconcile(own_url, projections=(PATIENTS,)).diffs] == [PATIENTS]


def test_a_service_login_cannot_reconcile(
    own_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("MIGRATIONS_DATABASE_URL", raising=False)
    monkeypatch.setenv("DATABASE_URL", role_url(own_url, "communication_service"))
    assert main(["reconcile"]) == 2
    assert "use the admin login (MIGRATIONS_DATABASE_URL)" in capsys.readouterr().err


def test_therapist_cooling_and_inquiry_projections(
    own_url: str, engine: sa.Engine, patients: list[int], therapist: int
) -> None:
    report = reconcile(own_url)
    assert report.ok, report.lines()
    assert report.diff(THERAPISTS).checked == 1
    assert report.diff(GEO).checked == 4  # three patients, one therapist

    # a therapist change matching and geocoding never heard of
    bump = "UPDATE therapist_service.therapists SET version = version + :d WHERE id = :id"
    _run(engine, bump, d=1, id=therapist)
    report = reconcile(own_url)
    assert report.diff(THERAPISTS).stale == [str(therapist)]
    assert report.diff(GEO).stale == [f"therapist:{therapist}"]
    _run(engine, bump, d=-1, id=therapist)

    # business-rules.md §7: matching's cooling period, the therapist service never told
    with engine.begin() as connection:
        practice_key = connection.execute(
            sa.text(
                "SELECT practice_key FROM matching_service.therapist_projection "
                "WHERE therapist_id = :id"
            ),
            {"id": therapist},
        ).scalar_one()
        period = connection.execute(
            sa.text(
                "INSERT INTO matching_service.cooling_periods (practice_key, therapist_ids, "
                "starts_on, until) VALUES (:p, CAST(:ids AS jsonb), current_date, "
                "current_date + 28) RETURNING id"
            ),
            {"p": practice_key, "ids": json.dumps([therapist])},
        ).scalar_one()
    assert reconcile(own_url).diff(COOLING).missing == [str(therapist)]
    held = (
        "UPDATE therapist_service.therapists SET next_contactable_date = current_date + :days "
        "WHERE id = :id"
    )
    _run(engine, held, days=28, id=therapist)
    assert reconcile(own_url).diff(COOLING).ok
    _run(engine, held, days=10, id=therapist)
    assert reconcile(own_url).diff(COOLING).stale == [str(therapist)]
    # overridden in matching, still cooling in the therapist service
    _run(
        engine,
        "UPDATE matching_service.cooling_periods SET overridden_at = now() WHERE id = :id",
        id=period,
    )
    assert reconcile(own_url).diff(COOLING).extra == [str(therapist)]
    # a date that has passed means contactable, like none
    _run(engine, held, days=-1, id=therapist)
    assert reconcile(own_url).diff(COOLING).ok

    # an inquiry communication never queued an email for
    with engine.begin() as connection:
        search = connection.execute(
            sa.text(
                "INSERT INTO matching_service.patient_searches (patient_id, status, "
                "waiting_since, contact_budget, contacts_used) "
                "VALUES (:id, 'active', now(), 25, 1) RETURNING id"
            ),
            {"id": patients[0]},
        ).scalar_one()
    inquiry = insert_inquiry(engine, therapist, [search], status="unsent")
    assert reconcile(own_url).diff(EMAILS).missing == [str(inquiry)]
    # queued, then sent; matching missed email.sent
    _run(
        engine,
        "INSERT INTO communication_service.emails (kind, send_key, therapist_id, inquiry_id, "
        "practice_key, status, context, sent_at) VALUES ('inquiry', :key, :t, :i, :p, 'sent', "
        "'{}'::jsonb, now())",
        key=f"inquiry:{inquiry}",
        t=therapist,
        i=inquiry,
        p=practice_key,
    )
    report = reconcile(own_url)
    assert report.diff(EMAILS).ok
    assert report.diff(SENT).stale == [str(inquiry)]
    _run(
        engine,
        "UPDATE matching_service.inquiries SET status = 'sent', sent_at = now(), "
        "sent_via = 'email' WHERE id = :id",
        id=inquiry,
    )
    assert reconcile(own_url).diff(SENT).ok
    # an email of an inquiry matching does not have
    _run(
        engine,
        "INSERT INTO communication_service.emails (kind, send_key, therapist_id, inquiry_id, "
        "context) VALUES ('inquiry', 'inquiry:424242', :t, 424242, '{}'::jsonb)",
        t=therapist,
    )
    assert reconcile(own_url).diff(EMAILS).extra == ["424242"]
