"""Shared set-up of the answer, answer-link and placement tests: matching's app and database,
a market placed at a spot of its own (so replacement offers hold only the test's patients),
answers built with the response type their outcomes make, and the outbox read back."""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa

from matching_service.app import create_app as create_matching_app
from matching_service.models import INFRA as MATCHING_INFRA
from matching_service.placement.answers import response_type
from matching_service.placement.values import Outcome
from matching_service.settings import MatchingSettings
from shared.runtime import ServiceRuntime
from tests.matching_support import MarketBuilder, insert_inquiry

BUNDLE_MAX_SIZE = 3


@pytest.fixture
def settings(make_settings: Any) -> MatchingSettings:
    return make_settings(
        MatchingSettings, bundle_max_size=BUNDLE_MAX_SIZE, default_contact_budget=60
    )


@pytest.fixture
def database(settings: MatchingSettings) -> Iterator[Any]:
    database = ServiceRuntime.build(settings, MATCHING_INFRA).database
    yield database
    database.dispose()


@pytest.fixture
def client(settings: MatchingSettings) -> Any:
    return create_matching_app(settings).test_client()


@dataclass
class Spot:
    """Therapists and patients at one random place in Germany, far from other tests' ones."""

    builder: MarketBuilder
    lat: float
    lon: float

    def therapist(self, **changes: Any) -> int:
        return self.builder.therapist(lat=self.lat, lon=self.lon, **changes)

    def search(self, **changes: Any) -> int:
        return int(self.builder.search(lat=self.lat, lon=self.lon, **changes)["id"])


# places other tests use (tests/matching_support.CENTRE is Leipzig), and the spots handed out
# in this session: a new spot keeps its distance from all of them, so no other test's
# patient is within anyone's reach of it
_TAKEN: list[tuple[float, float]] = [(51.34, 12.37), (52.34, 12.37), (52.52, 13.40), (48.14, 11.58)]
_APART_KM = 60.0  # patients here reach 25 km; twice that and a margin


def _far_apart(lat: float, lon: float, others: list[tuple[float, float]]) -> bool:
    return all(
        math.dist((lat * 111.2, lon * 70.0), (other[0] * 111.2, other[1] * 70.0)) > _APART_KM
        for other in others
    )


def _searching(database: Any) -> list[tuple[float, float]]:
    """The places of patients with an active search already in the database (other test
    modules build markets of their own, wherever they like): such a patient near a spot
    would be offered as a replacement there. Rounded to a tenth of a degree."""
    with database.engine.connect() as connection:
        rows = connection.execute(
            sa.text(
                "SELECT DISTINCT round(l.lat::numeric, 1)::float, round(l.lon::numeric, 1)::float "
                "FROM matching_service.patient_searches s "
                "JOIN matching_service.locations l "
                "ON l.entity_type = 'patient' AND l.entity_id = s.patient_id "
                "WHERE s.status = 'active' AND l.resolved AND l.lat IS NOT NULL"
            )
        ).all()
    return [(float(lat), float(lon)) for lat, lon in rows]


@pytest.fixture
def spot(database: Any, client: Any, admin_headers: dict[str, str]) -> Spot:
    others = _TAKEN + _searching(database)
    for _ in range(10_000):
        lat, lon = random.uniform(47.5, 54.5), random.uniform(6.5, 14.5)
        if _far_apart(lat, lon, others):
            break
    else:
        pytest.fail("no free spot left in Germany for this session's tests")
    _TAKEN.append((lat, lon))
    return Spot(MarketBuilder(database, client, admin_headers), lat, lon)


def answer_body(outcomes: dict[int, str], channel: str = "email", **extra: Any) -> dict[str, Any]:
    """A PUT body whose response type follows from the outcomes (unless given)."""
    kind = response_type({sid: Outcome(o) for sid, o in outcomes.items()}).value
    return {
        "response_type": kind,
        "channel": channel,
        "patients": [{"search_id": s, "outcome": o} for s, o in outcomes.items()],
        **extra,
    }


def put_answer(
    client: Any, headers: dict[str, str], inquiry_id: int, outcomes: dict[int, str], **extra: Any
) -> Any:
    return client.put(
        f"/api/inquiries/{inquiry_id}/response",
        json=answer_body(outcomes, **extra),
        headers=headers,
    )


def inquiry(engine: sa.Engine, therapist_id: int, search_ids: list[int], **options: Any) -> int:
    """A sent inquiry (unless `status` says otherwise) written directly."""
    if options.get("status", "sent") == "sent":
        options.setdefault("sent_at", datetime.now(UTC))
    return insert_inquiry(engine, therapist_id, search_ids, **options)


def events(engine: sa.Engine, event_type: str, aggregate_id: int | str) -> list[dict[str, Any]]:
    """Payloads of matching's outbox rows of one type and aggregate, oldest first."""
    with engine.connect() as connection:
        return list(
            connection.execute(
                sa.text(
                    "SELECT envelope->'payload' FROM matching_service.outbox "
                    "WHERE event_type = :type AND aggregate_id = :id ORDER BY id"
                ),
                {"type": event_type, "id": str(aggregate_id)},
            ).scalars()
        )


def one(engine: sa.Engine, sql: str, **params: Any) -> Any:
    """The one row of a query on the matching schema (superuser engine)."""
    with engine.connect() as connection:
        return connection.execute(sa.text(sql), params).one()


def search_row(engine: sa.Engine, search_id: int) -> Any:
    return one(
        engine,
        "SELECT status, placed_therapist_id, claimed_at, ended_at "
        "FROM matching_service.patient_searches WHERE id = :id",
        id=search_id,
    )


def inquiry_patient(engine: sa.Engine, inquiry_id: int, search_id: int) -> Any:
    return one(
        engine,
        "SELECT status, outcome, conflict, replacement_offers, withdrawn_reason "
        "FROM matching_service.inquiry_patients WHERE inquiry_id = :i AND search_id = :s",
        i=inquiry_id,
        s=search_id,
    )


def excluded(engine: sa.Engine, search_id: int) -> dict[int, str]:
    with engine.connect() as connection:
        return dict(
            connection.execute(
                sa.text(
                    "SELECT therapist_id, reason FROM matching_service.search_exclusions "
                    "WHERE search_id = :s"
                ),
                {"s": search_id},
            ).all()
        )
