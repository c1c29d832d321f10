"""matching_service's search API: list, detail, staff status changes, contact budget and
exclusions, against a real PostgreSQL (and a real broker for the patient following a
cancelled search)."""

from __future__ import annotations

import random
import threading
import uuid
from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa

from matching_service.app import create_app as create_matching_app
from matching_service.handlers import HANDLERS
from matching_service.models import INFRA as MATCHING_INFRA
from matching_service.schemas import SEARCH_TOPIC, THERAPIST_EVENTS
from matching_service.settings import MatchingSettings
from shared.events import Envelope
from shared.runtime import ServiceRuntime, relay_forever
from tests.helpers import background, location_resolved, patient_body, wait_until
from tests.integration.test_event_flow import _patient_event

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("clean_outboxes")]


@pytest.fixture
def settings(make_settings: Any) -> MatchingSettings:
    return make_settings(MatchingSettings, default_contact_budget=10)


@pytest.fixture
def database(settings: MatchingSettings) -> Any:
    database = ServiceRuntime.build(settings, MATCHING_INFRA).database
    yield database
    database.dispose()


@pytest.fixture
def matching(settings: MatchingSettings) -> Any:
    return create_matching_app(settings).test_client()


def _handle(database: Any, envelope: Envelope) -> None:
    with database.unit_of_work() as uow:
        HANDLERS[envelope.event_type](uow, envelope)
        uow.commit()


def _new_id() -> int:
    return 1_000_000 + uuid.uuid4().int % 1_000_000_000


@pytest.fixture
def start(database: Any, matching: Any, admin_headers: dict[str, str]) -> Callable[..., Any]:
    """Start a search for a new patient known to matching; returns the search as shown."""

    def start(postal_code: str = "10115", patient_id: int | None = None) -> dict[str, Any]:
        patient_id = patient_id or _new_id()
        _handle(database, _patient_event(patient_id, 1, postal_code=postal_code))
        _handle(database, location_resolved("patient", patient_id, postal_code=postal_code))
        response = matching.post(
            "/api/patient-searches", json={"patient_id": patient_id}, headers=admin_headers
        )
        assert response.status_code == 201, response.json
        return response.json

    return start


def _therapist(database: Any) -> int:
    therapist_id = _new_id()
    payload = {
        "therapist_id": therapist_id,
        "version": 1,
        "status": "active",
        "gender": "female",
        "postal_code": "04109",
        "practice_key": f"p{therapist_id}",
        "has_email": True,
        "therapy_methods": ["behavioural"],
    }
    _handle(
        database,
        THERAPIST_EVENTS[0].build(
            producer="therapist_service", aggregate_id=therapist_id, payload=payload
        ),
    )
    return therapist_id


def _unused_postal_code(matching: Any, headers: dict[str, str]) -> str:
    """A PLZ no search has yet, so a filter on it sees only this test's searches."""
    while True:
        postal_code = f"{random.randint(90_000, 99_999)}"
        listed = matching.get(
            f"/api/patient-searches?postal_code_prefix={postal_code}", headers=headers
        )
        if listed.json["total"] == 0:
            return postal_code


def _set_waiting_since(engine: sa.Engine, search_id: int, days_ago: int) -> None:
    with engine.begin() as connection:
        connection.execute(
            sa.text(
                "UPDATE matching_service.patient_searches "
                "SET waiting_since = now() - make_interval(days => :days) WHERE id = :id"
            ),
            {"days": days_ago, "id": search_id},
        )


def _events(engine: sa.Engine, search_id: int) -> list[dict[str, Any]]:
    """The search events of one search (other aggregates, e.g. inquiries, share ids)."""
    with engine.connect() as connection:
        return list(
            connection.execute(
                sa.text(
                    "SELECT envelope FROM matching_service.outbox "
                    "WHERE aggregate_id = :id AND event_type LIKE 'search.%' ORDER BY id"
                ),
                {"id": str(search_id)},
            ).scalars()
        )


def _patch(matching: Any, headers: dict[str, str], search_id: int, **body: Any) -> Any:
    return matching.patch(f"/api/patient-searches/{search_id}", json=body, headers=headers)


# ---------------------------------------------------------------- list and detail


def test_list_filters_by_plz_prefix_status_and_waiting_time_longest_waiting_first(
    start: Callable[..., Any],
    matching: Any,
    admin_headers: dict[str, str],
    admin_engine: sa.Engine,
) -> None:
    postal_code = _unused_postal_code(matching, admin_headers)
    searches = [start(postal_code) for _ in range(3)]
    for search, days in zip(searches, (5, 40, 60), strict=True):
        _set_waiting_since(admin_engine, search["id"], days)
    _patch(matching, admin_headers, searches[2]["id"], status="paused")

    def listed(query: str) -> Any:
        url = f"/api/patient-searches?postal_code_prefix={postal_code}&{query}"
        response = matching.get(url, headers=admin_headers)
        assert response.status_code == 200, response.json
        return response.json

    def ids(page: dict[str, Any]) -> list[int]:
        return [item["id"] for item in page["items"]]

    oldest, middle, newest = (searches[i]["id"] for i in (2, 1, 0))
    every = listed("")
    assert (ids(every), every["total"]) == ([oldest, middle, newest], 3)
    assert ids(listed("status=active")) == [middle, newest]
    assert ids(listed("status=paused")) == [oldest]
    assert ids(listed("waiting_longer_than_days=30")) == [oldest, middle]
    assert listed("waiting_longer_than_days=30&status=active")["total"] == 1
    second_page = listed("per_page=2&page=2")
    assert second_page["total"] == 3
    assert ids(second_page) == [newest]
    assert (second_page["page"], second_page["per_page"]) == (2, 2)


def test_list_rejects_a_bad_filter_with_422(matching: Any, admin_headers: dict[str, str]) -> None:
    for query in (
        "status=waiting",
        "postal_code_prefix=1a",
        "postal_code_prefix=\u0661\u0660",  # Arabic-Indic digits are not a PLZ
        "waiting_longer_than_days=-1",
    ):
        response = matching.get(f"/api/patient-searches?{query}", headers=admin_headers)
        assert response.status_code == 422, query


def test_detail_shows_budget_left_no_placement_exclusions_and_no_inquiries_yet(
    start: Callable[..., Any], matching: Any, admin_headers: dict[str, str]
) -> None:
    search = start()
    detail = matching.get(f"/api/patient-searches/{search['id']}", headers=admin_headers)
    assert detail.status_code == 200
    body = detail.json
    assert body["status"] == "active"
    assert body["waiting_since"] == search["waiting_since"]
    assert (body["contact_budget"], body["contacts_used"], body["contact_budget_left"]) == (
        10,
        0,
        10,
    )
    assert body["placed_therapist_id"] is None
    assert body["exclusions"] == []
    assert body["inquiries"] == []


def test_unknown_search_is_404_everywhere(matching: Any, admin_headers: dict[str, str]) -> None:
    missing = 2**31 - 7
    base = f"/api/patient-searches/{missing}"
    assert matching.get(base, headers=admin_headers).status_code == 404
    assert _patch(matching, admin_headers, missing, status="paused").status_code == 404
    granted = matching.post(f"{base}/contact-requests", json={"count": 1}, headers=admin_headers)
    assert granted.status_code == 404
    excluded = matching.post(
        f"{base}/exclusions", json={"therapist_id": 1, "reason": "x"}, headers=admin_headers
    )
    assert excluded.status_code == 404


# ---------------------------------------------------------------- status changes


@pytest.mark.parametrize(
    ("path", "event_types"),
    [
        (["paused"], ["search.paused"]),
        (["cancelled"], ["search.cancelled"]),
        (["paused", "active"], ["search.paused", "search.resumed"]),
        (["paused", "cancelled"], ["search.paused", "search.cancelled"]),
    ],
)
def test_staff_pause_resume_and_cancel_along_the_spec_with_one_event_each(
    path: list[str],
    event_types: list[str],
    start: Callable[..., Any],
    matching: Any,
    admin_headers: dict[str, str],
    admin_engine: sa.Engine,
) -> None:
    search = start()
    for status in path:
        changed = _patch(matching, admin_headers, search["id"], status=status, reason="Urlaub")
        assert changed.status_code == 200, changed.json
        assert changed.json["status"] == status
        assert changed.json["status_reason"] == "Urlaub"
    events = _events(admin_engine, search["id"])
    assert [e["event_type"] for e in events] == ["search.started", *event_types]
    previous = ["active", *path[:-1]]
    for event, status, before in zip(events[1:], path, previous, strict=True):
        assert event["payload"]["status"] == status
        assert event["payload"]["previous_status"] == before
        assert event["payload"]["patient_id"] == search["patient_id"]
        assert "Urlaub" not in str(event)  # staff text stays in the database


@pytest.mark.parametrize(
    ("path", "refused", "allowed"),
    [
        ([], "active", ["cancelled", "paused"]),
        (["paused"], "paused", ["active", "cancelled"]),
        (["cancelled"], "active", []),
        (["cancelled"], "paused", []),
        (["cancelled"], "cancelled", []),
        (["paused", "cancelled"], "active", []),
    ],
)
def test_refused_status_change_is_409_listing_the_allowed_ones(
    path: list[str],
    refused: str,
    allowed: list[str],
    start: Callable[..., Any],
    matching: Any,
    admin_headers: dict[str, str],
    admin_engine: sa.Engine,
) -> None:
    search = start()
    for status in path:
        assert _patch(matching, admin_headers, search["id"], status=status).status_code == 200
    before = len(_events(admin_engine, search["id"]))
    response = _patch(matching, admin_headers, search["id"], status=refused)
    assert response.status_code == 409
    assert response.json["error"]["code"] == "invalid_transition"
    assert response.json["error"]["details"]["allowed"] == allowed
    assert len(_events(admin_engine, search["id"])) == before


@pytest.mark.parametrize("status", ["in_trial", "successful", "waiting"])
def test_statuses_staff_cannot_set_by_patch_are_422(
    status: str, start: Callable[..., Any], matching: Any, admin_headers: dict[str, str]
) -> None:
    search = start()
    response = _patch(matching, admin_headers, search["id"], status=status)
    assert response.status_code == 422
    assert response.json["error"]["details"][0]["field"] == "status"


def test_in_trial_search_is_not_a_staff_patch_target(
    start: Callable[..., Any],
    matching: Any,
    admin_headers: dict[str, str],
    admin_engine: sa.Engine,
) -> None:
    search = start()
    with admin_engine.begin() as connection:  # claims come with answers (a later slice)
        connection.execute(
            sa.text(
                "UPDATE matching_service.patient_searches SET status = 'in_trial', "
                "placed_therapist_id = 1 WHERE id = :id"
            ),
            {"id": search["id"]},
        )
    response = _patch(matching, admin_headers, search["id"], status="cancelled")
    assert response.status_code == 409
    assert response.json["error"]["details"]["allowed"] == []


def _at_once(calls: list[Callable[[], Any]]) -> list[Any]:
    """Run the calls in real threads released together; their results in order."""
    barrier = threading.Barrier(len(calls))
    results: list[Any] = [None] * len(calls)

    def run(index: int) -> None:
        barrier.wait()
        results[index] = calls[index]()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results


@pytest.mark.parametrize("targets", [("paused", "paused"), ("paused", "cancelled")])
def test_of_two_concurrent_changes_from_the_same_status_exactly_one_wins(
    targets: tuple[str, str],
    start: Callable[..., Any],
    settings: MatchingSettings,
    admin_headers: dict[str, str],
    admin_engine: sa.Engine,
) -> None:
    search = start()
    app = create_matching_app(settings)
    results = _at_once(
        [
            lambda target=target: _patch(
                app.test_client(), admin_headers, search["id"], status=target
            )
            for target in targets
        ]
    )
    codes = sorted(r.status_code for r in results)
    if targets == ("paused", "paused"):
        assert codes == [200, 409]
    else:  # pause then cancel is allowed too; never both from `active`
        assert codes in ([200, 200], [200, 409])
    events = _events(admin_engine, search["id"])[1:]
    assert len(events) == codes.count(200)
    assert events[0]["payload"]["previous_status"] == "active"
    if len(events) == 2:
        assert [e["event_type"] for e in events] == ["search.paused", "search.cancelled"]
        assert events[1]["payload"]["previous_status"] == "paused"


# ---------------------------------------------------------------- contact budget


def test_contact_grants_add_up_even_when_concurrent(
    start: Callable[..., Any], settings: MatchingSettings, admin_headers: dict[str, str]
) -> None:
    search = start()
    app = create_matching_app(settings)
    url = f"/api/patient-searches/{search['id']}/contact-requests"
    counts = [1, 2, 3, 4, 5, 25]
    results = _at_once(
        [
            lambda count=count: app.test_client().post(
                url, json={"count": count}, headers=admin_headers
            )
            for count in counts
        ]
    )
    assert [r.status_code for r in results] == [200] * len(counts)
    detail = app.test_client().get(f"/api/patient-searches/{search['id']}", headers=admin_headers)
    assert detail.json["contact_budget"] == 10 + sum(counts)
    assert detail.json["contact_budget_left"] == 10 + sum(counts)


@pytest.mark.parametrize("count", [0, 101, -3])
def test_contact_grant_outside_1_to_100_is_422(
    count: int, start: Callable[..., Any], matching: Any, admin_headers: dict[str, str]
) -> None:
    search = start()
    response = matching.post(
        f"/api/patient-searches/{search['id']}/contact-requests",
        json={"count": count},
        headers=admin_headers,
    )
    assert response.status_code == 422


def test_paused_search_gets_contacts_but_a_cancelled_one_is_409(
    start: Callable[..., Any], matching: Any, admin_headers: dict[str, str]
) -> None:
    search = start()
    url = f"/api/patient-searches/{search['id']}/contact-requests"
    _patch(matching, admin_headers, search["id"], status="paused")
    assert matching.post(url, json={"count": 5}, headers=admin_headers).json["contact_budget"] == 15
    _patch(matching, admin_headers, search["id"], status="cancelled")
    refused = matching.post(url, json={"count": 5}, headers=admin_headers)
    assert refused.status_code == 409
    assert refused.json["error"]["details"]["current"] == "cancelled"


# ---------------------------------------------------------------- exclusions


def test_exclusion_is_listed_and_a_second_one_is_409(
    start: Callable[..., Any], database: Any, matching: Any, admin_headers: dict[str, str]
) -> None:
    search = start()
    therapist_id = _therapist(database)
    url = f"/api/patient-searches/{search['id']}/exclusions"
    body = {"therapist_id": therapist_id, "reason": "Patientin kennt ihn privat"}
    created = matching.post(url, json=body, headers=admin_headers)
    assert created.status_code == 201, created.json
    assert created.json["therapist_id"] == therapist_id
    again = matching.post(url, json={**body, "reason": "anders"}, headers=admin_headers)
    assert again.status_code == 409
    assert again.json["error"]["details"]["therapist_id"] == therapist_id
    detail = matching.get(f"/api/patient-searches/{search['id']}", headers=admin_headers).json
    assert [(e["therapist_id"], e["reason"]) for e in detail["exclusions"]] == [
        (therapist_id, "Patientin kennt ihn privat")
    ]


def test_concurrent_exclusions_of_the_same_therapist_store_one(
    start: Callable[..., Any],
    database: Any,
    settings: MatchingSettings,
    admin_headers: dict[str, str],
) -> None:
    search = start()
    therapist_id = _therapist(database)
    app = create_matching_app(settings)
    url = f"/api/patient-searches/{search['id']}/exclusions"
    body = {"therapist_id": therapist_id, "reason": "doppelt"}
    results = _at_once([lambda: app.test_client().post(url, json=body, headers=admin_headers)] * 3)
    assert sorted(r.status_code for r in results) == [201, 409, 409]


def test_exclusion_of_a_therapist_unknown_to_matching_is_422(
    start: Callable[..., Any], matching: Any, admin_headers: dict[str, str]
) -> None:
    search = start()
    response = matching.post(
        f"/api/patient-searches/{search['id']}/exclusions",
        json={"therapist_id": 2**31 - 1, "reason": "unbekannt"},
        headers=admin_headers,
    )
    assert response.status_code == 422
    assert response.json["error"]["details"][0]["field"] == "therapist_id"


def test_exclusion_needs_a_reason(
    start: Callable[..., Any], database: Any, matching: Any, admin_headers: dict[str, str]
) -> None:
    search = start()
    response = matching.post(
        f"/api/patient-searches/{search['id']}/exclusions",
        json={"therapist_id": _therapist(database), "reason": ""},
        headers=admin_headers,
    )
    assert response.status_code == 422


# ---------------------------------------------------------------- the patient follows


def test_patient_follows_a_cancelled_search_through_the_broker(
    make_settings: Any,
    settings: MatchingSettings,
    database: Any,
    matching: Any,
    admin_headers: dict[str, str],
    admin_engine: sa.Engine,
) -> None:
    from patient_service.app import create_app as create_patient_app
    from patient_service.handlers import SUBSCRIPTIONS as PATIENT_SUBSCRIPTIONS
    from patient_service.handlers import handlers as patient_handlers
    from patient_service.models import INFRA as PATIENT_INFRA
    from patient_service.settings import PatientSettings

    patient_settings = make_settings(PatientSettings)
    patients = create_patient_app(patient_settings).test_client()
    patient = patients.post("/api/patients", json=patient_body(), headers=admin_headers).json
    _handle(database, _patient_event(patient["id"], 1))
    _handle(database, location_resolved("patient", patient["id"]))
    search = matching.post(
        "/api/patient-searches", json={"patient_id": patient["id"]}, headers=admin_headers
    ).json

    def current() -> dict[str, Any]:
        return patients.get(f"/api/patients/{patient['id']}", headers=admin_headers).json

    relay = ServiceRuntime.build(settings, MATCHING_INFRA).relay([SEARCH_TOPIC])
    consumer = ServiceRuntime.build(patient_settings, PATIENT_INFRA).consumer(
        PATIENT_SUBSCRIPTIONS, patient_handlers(patient_settings)
    )
    with (
        background(lambda stop: relay_forever(relay, stop, idle_s=0.05)),
        background(consumer.run),
    ):
        wait_until(lambda: current()["status"] == "searching", timeout=60)
        cancelled = _patch(matching, admin_headers, search["id"], status="cancelled", reason="x")
        assert cancelled.status_code == 200
        wait_until(lambda: current()["status"] == "search_cancelled", timeout=60)
    assert current()["version"] == 3  # searching, then search_cancelled; nothing else
    with admin_engine.connect() as connection:
        emitted = (
            connection.execute(
                sa.text(
                    "SELECT envelope->'payload'->>'status' FROM patient_service.outbox "
                    "WHERE aggregate_id = :id AND event_type = 'patient.updated' ORDER BY id"
                ),
                {"id": str(patient["id"])},
            )
            .scalars()
            .all()
        )
    assert emitted == ["searching", "search_cancelled"]  # matching learns the new status too


def _search_event(name: str, search_id: int, patient_id: int) -> Envelope:
    """A search event of matching (`search.started` or a status change) for a patient."""
    from matching_service.schemas import SEARCH_CANCELLED, SEARCH_STARTED

    payload: dict[str, Any] = {
        "search_id": search_id,
        "patient_id": patient_id,
        "status": "active",
        "waiting_since": "2026-11-23T10:00:00Z",
        "contact_budget": 25,
    }
    if name == "cancelled":
        payload.update(status="cancelled", previous_status="active")
    event = SEARCH_CANCELLED if name == "cancelled" else SEARCH_STARTED
    return event.build(producer="matching_service", aggregate_id=search_id, payload=payload)


@pytest.fixture
def patient_follows(make_settings: Any, admin_headers: dict[str, str]) -> Any:
    """(register a patient -> id, deliver search events to patient_service, read a patient)."""
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

    def deliver(*events: Envelope) -> None:
        for event in events:
            with database.unit_of_work() as uow:
                table[event.event_type](uow, event)
                uow.commit()

    def read(patient_id: int) -> tuple[str, int]:
        body = patients.get(f"/api/patients/{patient_id}", headers=admin_headers).json
        return body["status"], body["version"]

    yield register, deliver, read
    database.dispose()


def test_search_cancelled_leaves_unknown_and_not_searching_patients_alone(
    patient_follows: Any,
) -> None:
    register, deliver, read = patient_follows
    registered = register()
    deliver(_search_event("cancelled", 88, registered), _search_event("cancelled", 88, 2**31 - 1))
    assert read(registered) == ("registered", 1)


def test_older_search_cancelled_late_does_not_stop_the_patients_newer_search(
    patient_follows: Any,
) -> None:
    """Events of two searches travel on different partitions: the first search's cancellation
    may arrive after the second search started."""
    register, deliver, read = patient_follows
    patient_id = register()
    deliver(
        _search_event("started", 500, patient_id),
        _search_event("started", 501, patient_id),
        _search_event("cancelled", 500, patient_id),
        _search_event("started", 500, patient_id),  # a late duplicate of the older one, too
    )
    assert read(patient_id) == ("searching", 2)
    deliver(_search_event("cancelled", 501, patient_id))
    assert read(patient_id) == ("search_cancelled", 3)
