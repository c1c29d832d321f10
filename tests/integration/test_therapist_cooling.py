"""therapist_service follows matching's cooling periods: next_contactable_date of every
therapist of the practice, idempotent and safe against a late, older cooling.started,
against a real PostgreSQL."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from matching_service.schemas import COOLING_OVERRIDDEN, COOLING_STARTED
from shared.events import Envelope
from shared.runtime import ServiceRuntime
from tests.integration.test_therapist_api import _create, _outbox, therapist_body
from therapist_service.app import create_app
from therapist_service.handlers import HANDLERS, SUBSCRIPTIONS
from therapist_service.models import INFRA
from therapist_service.settings import TherapistSettings

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("clean_outboxes")]

T0 = datetime(2031, 6, 1, 8, 0, tzinfo=UTC)


@pytest.fixture
def client(make_settings: Any) -> Any:
    return create_app(make_settings(TherapistSettings)).test_client()


@pytest.fixture
def database(make_settings: Any) -> Any:
    database = ServiceRuntime.build(make_settings(TherapistSettings), INFRA).database
    yield database
    database.dispose()


def _handle(database: Any, envelope: Envelope) -> None:
    with database.unit_of_work() as uow:
        HANDLERS[envelope.event_type](uow, envelope)
        uow.commit()


def _started(therapist_ids: list[int], until: date, occurred_at: datetime) -> Envelope:
    payload = {
        "practice_key": "p0123456789abcdef",
        "therapist_ids": therapist_ids,
        "starts_on": str(until - timedelta(days=28)),
        "until": str(until),
        "inquiry_id": 1,
    }
    envelope = COOLING_STARTED.build(
        producer="matching_service", aggregate_id="p0123456789abcdef", payload=payload
    )
    return envelope.model_copy(update={"occurred_at": occurred_at})


def _overridden(therapist_ids: list[int], occurred_at: datetime) -> Envelope:
    payload = {
        "practice_key": "p0123456789abcdef",
        "therapist_ids": therapist_ids,
        "overridden_at": occurred_at.isoformat(),
        "next_contactable_date": None,
    }
    envelope = COOLING_OVERRIDDEN.build(
        producer="matching_service", aggregate_id="p0123456789abcdef", payload=payload
    )
    return envelope.model_copy(update={"occurred_at": occurred_at})


def _held(client: Any, headers: dict[str, str], therapist_id: int) -> dict[str, Any]:
    return dict(client.get(f"/api/therapists/{therapist_id}", headers=headers).json)


def _updates(engine: sa.Engine, therapist_id: int) -> list[dict[str, Any]]:
    return [
        row for row in _outbox(engine, therapist_id) if row["event_type"] == "therapist.updated"
    ]


def test_the_worker_follows_the_cooling_topic() -> None:
    assert SUBSCRIPTIONS == ("cooling-events",)
    assert set(HANDLERS) == {"cooling.started", "cooling.overridden"}


def test_cooling_started_sets_the_date_of_every_therapist_of_the_practice_once(
    client: Any, database: Any, admin_headers: dict[str, str], admin_engine: sa.Engine
) -> None:
    email = therapist_body()["email"]
    first = _create(client, admin_headers, email=email)
    second = _create(client, admin_headers, email=email.upper())
    until = date(2031, 6, 29)
    started = _started([first["id"], second["id"], 2147483000], until, T0)
    _handle(database, started)
    _handle(database, started)  # delivered again
    for therapist in (first, second):
        held = _held(client, admin_headers, therapist["id"])
        assert held["next_contactable_date"] == "2031-06-29"
        assert held["version"] == therapist["version"] + 1
        (update,) = _updates(admin_engine, therapist["id"])
        assert update["payload"]["changed_fields"] == ["next_contactable_date"]
        assert update["payload"]["next_contactable_date"] == "2031-06-29"


def test_the_latest_end_of_the_periods_in_force_wins(
    client: Any, database: Any, admin_headers: dict[str, str]
) -> None:
    therapist = _create(client, admin_headers)
    _handle(database, _started([therapist["id"]], date(2031, 7, 10), T0))
    # a newer event with an earlier end (a shorter period configured meanwhile)
    _handle(database, _started([therapist["id"]], date(2031, 7, 1), T0 + timedelta(days=2)))
    assert _held(client, admin_headers, therapist["id"])["next_contactable_date"] == "2031-07-10"


def test_an_override_ends_the_cooling_and_an_older_start_does_not_reopen_it(
    client: Any, database: Any, admin_headers: dict[str, str], admin_engine: sa.Engine
) -> None:
    therapist = _create(client, admin_headers)
    _handle(database, _started([therapist["id"]], date(2031, 6, 29), T0))
    _handle(database, _overridden([therapist["id"]], T0 + timedelta(days=3)))
    assert _held(client, admin_headers, therapist["id"])["next_contactable_date"] is None
    # a start from before the override, arriving late (a replayed dead letter)
    _handle(database, _started([therapist["id"]], date(2031, 6, 30), T0 + timedelta(days=1)))
    held = _held(client, admin_headers, therapist["id"])
    assert held["next_contactable_date"] is None
    assert held["version"] == therapist["version"] + 2
    assert len(_updates(admin_engine, therapist["id"])) == 2
    # a cooling started after the override holds again
    _handle(database, _started([therapist["id"]], date(2031, 8, 1), T0 + timedelta(days=5)))
    assert _held(client, admin_headers, therapist["id"])["next_contactable_date"] == "2031-08-01"
