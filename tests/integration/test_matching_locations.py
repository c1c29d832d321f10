"""Matching fails closed on locations: it keeps geocoding's location events, refuses to
start a search for a patient without a resolved location (saying why), and lists who a
bundle run must leave out for want of one. The chain test runs patient_service, geocoding
and matching against a real broker."""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from geocoding_service.handlers import SUBSCRIPTIONS, handlers
from geocoding_service.models import INFRA
from geocoding_service.schemas import TOPIC
from geocoding_service.settings import GeocodingSettings
from matching_service import service as matching_service
from matching_service.app import create_app as create_matching_app
from matching_service.handlers import HANDLERS as MATCHING_HANDLERS
from matching_service.handlers import SUBSCRIPTIONS as MATCHING_SUBSCRIPTIONS
from matching_service.models import INFRA as MATCHING_INFRA
from matching_service.schemas import THERAPIST_EVENTS as THERAPIST_EVENTS_MATCHING
from matching_service.settings import MatchingSettings
from patient_service.app import create_app as create_patient_app
from patient_service.models import INFRA as PATIENT_INFRA
from patient_service.schemas import PATIENT_TOPIC
from patient_service.settings import PatientSettings
from shared.events import Envelope
from shared.runtime import ServiceRuntime, relay_forever
from tests.helpers import background, patient_body, wait_until
from tests.integration.test_geocoding import HEADERS, LEIPZIG, _drain, _geocoding, _handle
from tests.unit.test_geocoding_rules import tsv_line

pytestmark = pytest.mark.integration


def test_unknown_plz_leaves_the_patient_unresolved_and_matching_refuses_its_search(
    geo_settings_for: Callable[..., Any],
    plz_tsv: Path,
    geo_engine: sa.Engine,
    tmp_path: Path,
) -> None:
    """patient_service -> Kafka -> geocoding -> Kafka -> matching, all real; then the missing
    postal code is imported and the same chain lets the search start."""
    _drain(geo_engine)
    patient_settings = geo_settings_for(PatientSettings)
    geo_settings = geo_settings_for(GeocodingSettings)
    matching_settings = geo_settings_for(MatchingSettings)
    patients = create_patient_app(patient_settings).test_client()
    matching = create_matching_app(matching_settings).test_client()
    geocoding = _geocoding(geo_settings_for, plz_tsv)
    geo_runtime = ServiceRuntime.build(geo_settings, INFRA)
    loops = [
        lambda stop: relay_forever(
            ServiceRuntime.build(patient_settings, PATIENT_INFRA).relay([PATIENT_TOPIC]),
            stop,
            idle_s=0.05,
        ),
        lambda stop: relay_forever(geo_runtime.relay([TOPIC]), stop, idle_s=0.05),
        geo_runtime.consumer(SUBSCRIPTIONS, handlers(geo_settings)).run,
        ServiceRuntime.build(matching_settings, MATCHING_INFRA)
        .consumer(MATCHING_SUBSCRIPTIONS, MATCHING_HANDLERS)
        .run,
    ]
    with background(loops[0]), background(loops[1]), background(loops[2]), background(loops[3]):
        created = patients.post(
            "/api/patients", json=patient_body(postal_code="99992"), headers=HEADERS
        )
        assert created.status_code == 201
        patient_id = created.json["id"]

        def start() -> Any:
            return matching.post(
                "/api/patient-searches", json={"patient_id": patient_id}, headers=HEADERS
            )

        def refused_for_its_location() -> Any:
            response = start()
            details = response.json["error"].get("details") or {}
            return response if details.get("location_reason") == "unknown_postal_code" else None

        refused = wait_until(refused_for_its_location, timeout=60)
        assert refused.status_code == 422
        assert refused.json["error"]["details"]["unmet_criteria"] == ["location_unresolved"]
        more = tmp_path / "more.txt"
        more.write_text(tsv_line("99992", "Neudorf", "Sachsen", 50.9, 12.9) + "\n")
        report = geocoding.post(
            "/api/admin/plz-imports", json={"source": str(more)}, headers=HEADERS
        )
        assert report.json["locations_resolved"] >= 1
        started = wait_until(
            lambda: (response := start()).status_code == 201 and response, timeout=60
        )
    assert started.json["patient_id"] == patient_id


def _location(
    entity_type: str,
    entity_id: int,
    version: int,
    *,
    postal_code: str | None = None,
    located_at: str = "04109",
) -> Envelope:
    """A location event as geocoding publishes it (resolved at `located_at` unless
    `postal_code` is unknown)."""
    from geocoding_service.schemas import LOCATION_RESOLVED, LOCATION_UNRESOLVED

    common = {
        "entity_type": entity_type,
        "entity_id": entity_id,
        "version": version,
        "entity_version": version,
        "postal_code": postal_code or located_at,
    }
    if postal_code is None:
        event, payload = (
            LOCATION_RESOLVED,
            {
                **common,
                "lat": LEIPZIG[0],
                "lon": LEIPZIG[1],
                "precision": "plz",
                "source": "plz_centroid",
            },
        )
    else:
        event, payload = LOCATION_UNRESOLVED, {**common, "reason": "unknown_postal_code"}
    return event.build(
        producer="geocoding_service", aggregate_id=f"{entity_type}-{entity_id}", payload=payload
    )


def test_matching_lists_who_lacks_a_resolved_location_and_keeps_the_newest(
    geo_settings_for: Callable[..., Any],
) -> None:
    from tests.integration.test_event_flow import _patient_event as full_patient_event
    from tests.integration.test_therapist_api import therapist_body

    settings = geo_settings_for(MatchingSettings)
    database = ServiceRuntime.build(settings, MATCHING_INFRA).database
    matching = create_matching_app(settings).test_client()
    base = random.randint(100_000, 2_000_000)
    moved, never_located = base, base + 1
    located_therapist, unlocated_therapist, blocked_therapist = base, base + 1, base + 2
    for patient_id in (moved, never_located):
        _handle(database, MATCHING_HANDLERS, full_patient_event(patient_id, 1))
    _handle(database, MATCHING_HANDLERS, _location("patient", moved, 1, located_at="10115"))
    started = matching.post("/api/patient-searches", json={"patient_id": moved}, headers=HEADERS)
    assert started.status_code == 201
    refused = matching.post(
        "/api/patient-searches", json={"patient_id": never_located}, headers=HEADERS
    )
    assert refused.status_code == 422
    assert refused.json["error"]["details"] == {
        "patient_id": never_located,
        "unmet_criteria": ["location_unresolved"],
        "location_reason": "not_resolved_yet",
    }
    # the patient moves to a PLZ geocoding cannot place; an older event arrives late
    _handle(database, MATCHING_HANDLERS, _location("patient", moved, 3, postal_code="99991"))
    _handle(database, MATCHING_HANDLERS, _location("patient", moved, 2, located_at="10115"))
    for therapist_id, status in (
        (located_therapist, "active"),
        (unlocated_therapist, "active"),
        (blocked_therapist, "blocked"),
    ):
        body = {**therapist_body(), "therapist_id": therapist_id, "version": 1, "status": status}
        body.update(gender="female", practice_key=f"t{therapist_id}", has_email=False)
        event = next(e for e in THERAPIST_EVENTS_MATCHING if e.name == "therapist.created")
        _handle(
            database,
            MATCHING_HANDLERS,
            event.build(producer="therapist_service", aggregate_id=therapist_id, payload=body),
        )
    _handle(database, MATCHING_HANDLERS, _location("therapist", located_therapist, 1))
    unlocated = {
        (u.entity_type, u.entity_id): u.reason
        for u in matching_service.unlocated_entities(database.unit_of_work())
    }
    database.dispose()
    assert unlocated[("patient", moved)] == "unknown_postal_code"
    assert ("patient", never_located) not in unlocated  # no active search to bundle
    assert unlocated[("therapist", unlocated_therapist)] == "not_resolved_yet"
    assert ("therapist", located_therapist) not in unlocated
    assert ("therapist", blocked_therapist) not in unlocated  # never contacted anyway


def test_location_of_an_old_postal_code_counts_as_not_resolved_yet(
    geo_settings_for: Callable[..., Any],
) -> None:
    from tests.integration.test_event_flow import _patient_event as full_patient_event

    settings = geo_settings_for(MatchingSettings)
    database = ServiceRuntime.build(settings, MATCHING_INFRA).database
    matching = create_matching_app(settings).test_client()
    searching, starting = random.randint(100_000, 2_000_000), random.randint(2_000_001, 3_000_000)

    def start(patient_id: int) -> Any:
        return matching.post(
            "/api/patient-searches", json={"patient_id": patient_id}, headers=HEADERS
        )

    def unlocated() -> dict[tuple[str, int], str]:
        return {
            (u.entity_type, u.entity_id): u.reason
            for u in matching_service.unlocated_entities(database.unit_of_work())
        }

    for patient_id in (searching, starting):
        _handle(database, MATCHING_HANDLERS, full_patient_event(patient_id, 1))  # 10115
        _handle(
            database, MATCHING_HANDLERS, _location("patient", patient_id, 1, located_at="10115")
        )
    assert start(searching).status_code == 201
    # both move to 04109; geocoding's location events for the new address are on their way
    for patient_id in (searching, starting):
        _handle(database, MATCHING_HANDLERS, full_patient_event(patient_id, 2, postal_code="04109"))
    refused = start(starting)
    assert refused.status_code == 422
    assert refused.json["error"]["details"] == {
        "patient_id": starting,
        "unmet_criteria": ["location_unresolved"],
        "location_reason": "not_resolved_yet",
    }
    assert unlocated()[("patient", searching)] == "not_resolved_yet"
    for patient_id in (searching, starting):
        _handle(
            database, MATCHING_HANDLERS, _location("patient", patient_id, 2, located_at="04109")
        )
    assert start(starting).status_code == 201
    assert ("patient", searching) not in unlocated()
    database.dispose()
