"""Trial outcomes and manual placements of a search (business-rules.md §5, §8) against a real
PostgreSQL, and patient_service following the outcome through its handlers."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from matching_service.schemas import (
    SEARCH_CLAIMED,
    SEARCH_FAILED_TRIAL,
    SEARCH_STARTED,
    SEARCH_SUCCEEDED,
)
from shared.events import Envelope
from shared.runtime import ServiceRuntime
from tests.answer_support import (
    BUNDLE_MAX_SIZE,
    Spot,
    client,
    database,
    events,
    excluded,
    inquiry,
    inquiry_patient,
    put_answer,
    search_row,
    settings,
    spot,
)
from tests.helpers import patient_body

__all__ = ["client", "database", "settings", "spot"]  # fixtures

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("clean_outboxes")]


def _claimed(
    spot: Spot, client: Any, headers: dict[str, str], engine: sa.Engine
) -> tuple[int, int]:
    """A search in trial with a therapist (its acceptance recorded): (search, therapist)."""
    therapist, search = spot.therapist(), spot.search()
    inquiry_id = inquiry(engine, therapist, [search])
    assert put_answer(client, headers, inquiry_id, {search: "accepted"}).status_code == 200
    return search, therapist


def _trial(client: Any, headers: dict[str, str], search_id: int, outcome: str) -> Any:
    return client.post(
        f"/api/patient-searches/{search_id}/trial-outcome",
        json={"outcome": outcome},
        headers=headers,
    )


def _place(client: Any, headers: dict[str, str], search_id: int, therapist_id: int) -> Any:
    return client.post(
        f"/api/patient-searches/{search_id}/placements",
        json={"therapist_id": therapist_id},
        headers=headers,
    )


# ---------------------------------------------------------------- trial outcomes


def test_a_successful_trial_ends_the_search_and_withdraws_the_patient(
    spot: Spot, client: Any, admin_headers: dict[str, str], admin_engine: sa.Engine
) -> None:
    search, therapist = _claimed(spot, client, admin_headers, admin_engine)
    # an inquiry written while the trial ran still offers the patient
    late = inquiry(admin_engine, spot.therapist(), [search])
    response = _trial(client, admin_headers, search, "success")
    assert response.status_code == 200, response.json
    assert response.json["status"] == "successful"
    assert response.json["placed_therapist_id"] == therapist
    row = search_row(admin_engine, search)
    assert row.status == "successful" and row.ended_at is not None
    (event,) = events(admin_engine, "search.succeeded", search)
    assert (event["therapist_id"], event["previous_status"]) == (therapist, "in_trial")
    withdrawn = inquiry_patient(admin_engine, late, search)
    assert (withdrawn.status, withdrawn.withdrawn_reason) == ("withdrawn", "search_succeeded")

    again = _trial(client, admin_headers, search, "success")
    assert again.status_code == 409
    assert again.json["error"]["details"] == {"current": "successful", "required": "in_trial"}
    assert len(events(admin_engine, "search.succeeded", search)) == 1


def test_a_failed_trial_reopens_the_search_and_excludes_the_therapist(
    spot: Spot, client: Any, admin_headers: dict[str, str], admin_engine: sa.Engine
) -> None:
    search, therapist = _claimed(spot, client, admin_headers, admin_engine)
    response = _trial(client, admin_headers, search, "failure")
    assert response.status_code == 200, response.json
    assert response.json["status"] == "active" and response.json["placed_therapist_id"] is None
    assert [e["therapist_id"] for e in response.json["exclusions"]] == [therapist]
    row = search_row(admin_engine, search)
    assert (row.status, row.placed_therapist_id, row.claimed_at) == ("active", None, None)
    assert excluded(admin_engine, search) == {therapist: "trial_failed"}
    (event,) = events(admin_engine, "search.failed_trial", search)
    assert (event["therapist_id"], event["status"]) == (therapist, "active")
    # the excluded therapist cannot claim the patient again
    assert _place(client, admin_headers, search, therapist).status_code == 409


def test_a_trial_outcome_needs_a_search_in_trial(
    spot: Spot, client: Any, admin_headers: dict[str, str], admin_engine: sa.Engine
) -> None:
    search = spot.search()
    response = _trial(client, admin_headers, search, "success")
    assert response.status_code == 409
    assert "in trial" in response.json["error"]["message"]
    assert search_row(admin_engine, search).status == "active"
    assert _trial(client, admin_headers, 2**31 - 2, "failure").status_code == 404
    bad = client.post(
        f"/api/patient-searches/{search}/trial-outcome",
        json={"outcome": "maybe"},
        headers=admin_headers,
    )
    assert bad.status_code == 422


# ---------------------------------------------------------------- manual placements


def test_a_manual_placement_claims_the_search_and_withdraws_it(
    spot: Spot, client: Any, admin_headers: dict[str, str], admin_engine: sa.Engine
) -> None:
    search = spot.search()
    caller = spot.therapist()
    offered = inquiry(admin_engine, spot.therapist(), [search])
    own = inquiry(admin_engine, caller, [search], status="unsent")
    response = _place(client, admin_headers, search, caller)
    assert response.status_code == 201, response.json
    assert response.json["status"] == "in_trial" and response.json["placed_therapist_id"] == caller
    (event,) = events(admin_engine, "search.claimed", search)
    assert (event["therapist_id"], event["inquiry_id"]) == (caller, None)
    for inquiry_id in (offered, own):
        row = inquiry_patient(admin_engine, inquiry_id, search)
        assert (row.status, row.withdrawn_reason) == ("withdrawn", "claimed_elsewhere")


def test_a_manual_placement_of_a_claimed_search_is_409_with_replacement_offers(
    spot: Spot, client: Any, admin_headers: dict[str, str], admin_engine: sa.Engine
) -> None:
    search, first = _claimed(spot, client, admin_headers, admin_engine)
    spares = [spot.search() for _ in range(BUNDLE_MAX_SIZE + 1)]
    caller = spot.therapist()
    response = _place(client, admin_headers, search, caller)
    assert response.status_code == 409
    assert response.json["error"]["details"] == {
        "placed_therapist_id": first,
        "replacement_offers": spares[:BUNDLE_MAX_SIZE],
    }
    assert search_row(admin_engine, search).placed_therapist_id == first


def test_a_manual_placement_names_the_rule_it_breaks(
    spot: Spot, client: Any, admin_headers: dict[str, str], admin_engine: sa.Engine
) -> None:
    search, therapist = spot.search(), spot.therapist()
    unknown = _place(client, admin_headers, search, 2**31 - 2)
    assert unknown.status_code == 422
    assert unknown.json["error"]["details"][0]["field"] == "therapist_id"

    client.post(
        f"/api/patient-searches/{search}/exclusions",
        json={"therapist_id": therapist, "reason": "knows the patient"},
        headers=admin_headers,
    )
    refused = _place(client, admin_headers, search, therapist)
    assert refused.status_code == 409
    assert refused.json["error"]["details"]["rule"] == "excluded_therapist"

    paused = spot.search()
    client.patch(
        f"/api/patient-searches/{paused}", json={"status": "paused"}, headers=admin_headers
    )
    on_pause = _place(client, admin_headers, paused, spot.therapist())
    assert on_pause.status_code == 409
    assert on_pause.json["error"]["details"] == {"current": "paused", "required": "active"}

    blocked = spot.therapist(status="blocked")
    assert _place(client, admin_headers, spot.search(), blocked).status_code == 409
    assert _place(client, admin_headers, 2**31 - 2, therapist).status_code == 404
    assert search_row(admin_engine, search).status == "active"
    assert events(admin_engine, "search.claimed", search) == []


# ---------------------------------------------------------------- patient_service follows


@pytest.fixture
def patient_follows(
    make_settings: Any, admin_headers: dict[str, str]
) -> Iterator[tuple[Callable[[], int], Callable[..., None], Callable[[int], str]]]:
    """(register a patient -> id, deliver search events to patient_service, read a status)."""
    from patient_service.app import create_app as create_patient_app
    from patient_service.handlers import handlers as patient_handlers
    from patient_service.models import INFRA as PATIENT_INFRA
    from patient_service.settings import PatientSettings

    patient_settings = make_settings(PatientSettings)
    patients = create_patient_app(patient_settings).test_client()
    table = patient_handlers(patient_settings)
    database = ServiceRuntime.build(patient_settings, PATIENT_INFRA).database

    def register() -> int:
        return int(
            patients.post("/api/patients", json=patient_body(), headers=admin_headers).json["id"]
        )

    def deliver(*envelopes: Envelope) -> None:
        for envelope in envelopes:
            handler = table.get(envelope.event_type)
            if handler is None:
                continue  # not followed (as the consumer does)
            with database.unit_of_work() as uow:
                handler(uow, envelope)
                uow.commit()

    def status(patient_id: int) -> str:
        body = patients.get(f"/api/patients/{patient_id}", headers=admin_headers).json
        return str(body["status"])

    yield register, deliver, status
    database.dispose()


def _search_event(event: Any, search_id: int, patient_id: int, status: str) -> Envelope:
    payload: dict[str, Any] = {
        "search_id": search_id,
        "patient_id": patient_id,
        "status": status,
        "waiting_since": "2026-11-01T08:00:00Z",
        "contact_budget": 25,
    }
    if event is not SEARCH_STARTED:
        payload.update(previous_status="in_trial", therapist_id=7)
    return event.build(producer="matching_service", aggregate_id=search_id, payload=payload)


def test_the_patient_is_in_therapy_when_the_trial_succeeds(patient_follows: Any) -> None:
    register, deliver, status = patient_follows
    patient_id = register()
    deliver(_search_event(SEARCH_STARTED, 700, patient_id, "active"))
    deliver(_search_event(SEARCH_CLAIMED, 700, patient_id, "in_trial"))
    assert (
        status(patient_id) == "searching"
    )  # trial sessions: still searching (business-rules.md §2)
    deliver(_search_event(SEARCH_FAILED_TRIAL, 700, patient_id, "active"))
    assert status(patient_id) == "searching"
    deliver(_search_event(SEARCH_SUCCEEDED, 700, patient_id, "successful"))
    assert status(patient_id) == "in_therapy"
    deliver(_search_event(SEARCH_SUCCEEDED, 700, patient_id, "successful"))  # redelivered
    assert status(patient_id) == "in_therapy"


def test_an_older_search_succeeding_late_is_ignored(patient_follows: Any) -> None:
    register, deliver, status = patient_follows
    patient_id = register()
    deliver(
        _search_event(SEARCH_STARTED, 800, patient_id, "active"),
        _search_event(SEARCH_STARTED, 801, patient_id, "active"),
        _search_event(SEARCH_SUCCEEDED, 800, patient_id, "successful"),
    )
    assert status(patient_id) == "searching"
