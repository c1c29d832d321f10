"""Answers to inquiries (business-rules.md §8) against a real PostgreSQL: exactly the inquiry's
patients, response types, each outcome's effect, first acceptance wins (also under 50
parallel acceptances), conflicts with replacement offers, withdrawals, cooling."""

from __future__ import annotations

import functools
import random
import threading
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any

import pytest
import sqlalchemy as sa

from matching_service.schemas import InquiryResponseIn
from matching_service.service import answers
from tests.answer_support import (
    BUNDLE_MAX_SIZE,
    Spot,
    answer_body,
    client,
    database,
    events,
    excluded,
    inquiry,
    inquiry_patient,
    one,
    put_answer,
    search_row,
    settings,
    spot,
)

__all__ = ["client", "database", "settings", "spot"]  # fixtures

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("clean_outboxes")]


def _inquiry_row(engine: sa.Engine, inquiry_id: int) -> Any:
    return one(
        engine,
        "SELECT status, answered_at, response_type, channel, notes, original_size, "
        "current_size FROM matching_service.inquiries WHERE id = :id",
        id=inquiry_id,
    )


# ---------------------------------------------------------------- the answer's shape


def test_an_answer_must_name_exactly_the_inquiry_patients(
    spot: Spot, client: Any, admin_headers: dict[str, str], admin_engine: sa.Engine
) -> None:
    therapist = spot.therapist()
    first, second, stranger = spot.search(), spot.search(), spot.search()
    inquiry_id = inquiry(admin_engine, therapist, [first, second])

    missing = put_answer(client, admin_headers, inquiry_id, {first: "rejected_capacity"})
    assert missing.status_code == 422
    (detail,) = missing.json["error"]["details"]
    assert detail["field"] == "patients"
    assert detail["missing_search_ids"] == [second] and detail["extra_search_ids"] == []

    extra = put_answer(
        client,
        admin_headers,
        inquiry_id,
        {first: "rejected_capacity", second: "rejected_capacity", stranger: "accepted"},
    )
    assert extra.status_code == 422
    assert extra.json["error"]["details"][0]["extra_search_ids"] == [stranger]
    assert _inquiry_row(admin_engine, inquiry_id).status == "sent"  # nothing changed


def test_withdrawn_patients_are_part_of_the_answer_and_keep_their_status(
    spot: Spot, client: Any, admin_headers: dict[str, str], admin_engine: sa.Engine
) -> None:
    therapist = spot.therapist()
    kept, cancelled = spot.search(), spot.search()
    inquiry_id = inquiry(admin_engine, therapist, [kept, cancelled])
    client.patch(
        f"/api/patient-searches/{cancelled}", json={"status": "cancelled"}, headers=admin_headers
    )

    without = put_answer(client, admin_headers, inquiry_id, {kept: "rejected_capacity"})
    assert without.status_code == 422
    assert without.json["error"]["details"][0]["missing_search_ids"] == [cancelled]

    answered = put_answer(
        client,
        admin_headers,
        inquiry_id,
        {kept: "rejected_capacity", cancelled: "rejected_other"},
    )
    assert answered.status_code == 200, answered.json
    statuses = {p["search_id"]: (p["status"], p["outcome"]) for p in answered.json["patients"]}
    assert statuses == {
        kept: ("answered", "rejected_capacity"),
        cancelled: ("withdrawn", "rejected_other"),
    }
    assert answered.json["original_size"] == 2 and answered.json["current_size"] == 1


def test_a_search_answered_twice_in_one_body_is_refused(
    spot: Spot, client: Any, admin_headers: dict[str, str], admin_engine: sa.Engine
) -> None:
    search = spot.search()
    inquiry_id = inquiry(admin_engine, spot.therapist(), [search])
    body = answer_body({search: "accepted"})
    body["patients"].append({"search_id": search, "outcome": "accepted"})
    response = client.put(f"/api/inquiries/{inquiry_id}/response", json=body, headers=admin_headers)
    assert response.status_code == 422
    assert search_row(admin_engine, search).status == "active"


def test_the_response_type_must_follow_from_the_outcomes(
    spot: Spot, client: Any, admin_headers: dict[str, str], admin_engine: sa.Engine
) -> None:
    first, second = spot.search(), spot.search()
    inquiry_id = inquiry(admin_engine, spot.therapist(), [first, second])
    body = answer_body({first: "accepted", second: "rejected_capacity"})
    assert body["response_type"] == "partial_acceptance"
    for wrong in ("full_acceptance", "full_rejection", "no_response"):
        response = client.put(
            f"/api/inquiries/{inquiry_id}/response",
            json={**body, "response_type": wrong},
            headers=admin_headers,
        )
        assert response.status_code == 422
        (detail,) = response.json["error"]["details"]
        assert detail["field"] == "response_type"
        assert "partial_acceptance" in detail["message"]
    assert search_row(admin_engine, first).status == "active"
    assert _inquiry_row(admin_engine, inquiry_id).status == "sent"


def test_an_unknown_inquiry_is_404(client: Any, admin_headers: dict[str, str]) -> None:
    response = put_answer(client, admin_headers, 2**31 - 2, {1: "accepted"})
    assert response.status_code == 404


# ---------------------------------------------------------------- outcomes


def test_unsuitable_and_no_show_exclude_the_therapist_other_rejections_do_not(
    spot: Spot, client: Any, admin_headers: dict[str, str], admin_engine: sa.Engine
) -> None:
    therapist = spot.therapist()
    outcomes = {
        spot.search(): "rejected_unsuitable",
        spot.search(): "no_show",
        spot.search(): "rejected_capacity",
        spot.search(): "rejected_other",
    }
    inquiry_id = inquiry(admin_engine, therapist, list(outcomes))
    response = put_answer(client, admin_headers, inquiry_id, outcomes)
    assert response.status_code == 200, response.json
    assert response.json["response_type"] == "full_rejection"
    assert response.json["conflicts"] == []
    for search_id, outcome in outcomes.items():
        expected = {therapist: outcome} if outcome in ("rejected_unsuitable", "no_show") else {}
        assert excluded(admin_engine, search_id) == expected
        assert search_row(admin_engine, search_id).status == "active"


@pytest.mark.parametrize("outcome", ["accepted", "in_trial_sessions"])
def test_the_first_acceptance_claims_the_search_and_withdraws_it_elsewhere(
    outcome: str,
    spot: Spot,
    client: Any,
    admin_headers: dict[str, str],
    admin_engine: sa.Engine,
) -> None:
    winner, sent_to, unsent_to = spot.therapist(), spot.therapist(), spot.therapist()
    patient, other = spot.search(), spot.search()
    answered = inquiry(admin_engine, winner, [patient, other])
    sent = inquiry(admin_engine, sent_to, [other, patient])
    unsent = inquiry(admin_engine, unsent_to, [patient], status="unsent")

    response = put_answer(
        client, admin_headers, answered, {patient: outcome, other: "rejected_capacity"}
    )
    assert response.status_code == 200, response.json
    body = response.json
    assert body["status"] == "answered" and body["response_type"] == "partial_acceptance"
    assert body["conflicts"] == [] and body["channel"] == "email"

    claimed = search_row(admin_engine, patient)
    assert (claimed.status, claimed.placed_therapist_id) == ("in_trial", winner)
    assert claimed.claimed_at is not None
    (event,) = events(admin_engine, "search.claimed", patient)
    assert (event["therapist_id"], event["inquiry_id"]) == (winner, answered)
    assert (event["status"], event["previous_status"]) == ("in_trial", "active")

    # withdrawn from both other open inquiries; the sent one's therapist is to be told
    assert inquiry_patient(admin_engine, sent, patient).status == "withdrawn"
    assert inquiry_patient(admin_engine, sent, patient).withdrawn_reason == "claimed_elsewhere"
    assert inquiry_patient(admin_engine, sent, other).status == "open"
    assert _inquiry_row(admin_engine, sent).current_size == 1
    assert _inquiry_row(admin_engine, unsent).current_size == 0
    (told,) = events(admin_engine, "inquiry.patient_withdrawn", sent)
    (untold,) = events(admin_engine, "inquiry.patient_withdrawn", unsent)
    assert told["inform_therapist"] is True and untold["inform_therapist"] is False
    assert (told["search_id"], told["reason"], told["current_size"]) == (
        patient,
        "claimed_elsewhere",
        1,
    )
    assert events(admin_engine, "inquiry.patient_withdrawn", answered) == []


def test_a_later_acceptance_is_a_conflict_with_replacement_offers(
    spot: Spot, client: Any, admin_headers: dict[str, str], admin_engine: sa.Engine
) -> None:
    first, late = spot.therapist(), spot.therapist()
    patient, neighbour = spot.search(), spot.search()
    spares = [spot.search() for _ in range(BUNDLE_MAX_SIZE + 1)]
    excluding = spares[0]
    client.post(
        f"/api/patient-searches/{excluding}/exclusions",
        json={"therapist_id": late, "reason": "knows the patient"},
        headers=admin_headers,
    )
    won = inquiry(admin_engine, first, [patient])
    lost = inquiry(admin_engine, late, [neighbour, patient])
    assert put_answer(client, admin_headers, won, {patient: "accepted"}).status_code == 200

    response = put_answer(
        client, admin_headers, lost, {neighbour: "rejected_capacity", patient: "accepted"}
    )
    assert response.status_code == 200, response.json
    (conflict,) = response.json["conflicts"]
    # eligible for the late therapist, not excluded, not in the inquiry, longest waiting
    # first, at most a bundle
    assert conflict == {"search_id": patient, "replacement_offers": spares[1:]}
    row = inquiry_patient(admin_engine, lost, patient)
    assert (row.status, row.outcome, row.conflict) == ("withdrawn", "accepted", True)
    assert row.replacement_offers == spares[1:]
    assert search_row(admin_engine, patient).placed_therapist_id == first
    (answered,) = events(admin_engine, "inquiry.answered", lost)
    conflicted = next(p for p in answered["patients"] if p["search_id"] == patient)
    assert conflicted["conflict"] is True and conflicted["replacement_offers"] == spares[1:]


def test_first_acceptance_wins_under_50_parallel_acceptances(
    spot: Spot,
    client: Any,
    admin_headers: dict[str, str],
    admin_engine: sa.Engine,
) -> None:
    patient = spot.search()
    spares = [spot.search() for _ in range(2)]
    therapists = [spot.therapist() for _ in range(50)]
    inquiries = {inquiry(admin_engine, t, [patient]): t for t in therapists}
    barrier = threading.Barrier(len(inquiries))
    results: dict[int, Any] = {}

    def accept(inquiry_id: int) -> None:
        barrier.wait()
        results[inquiry_id] = put_answer(client, admin_headers, inquiry_id, {patient: "accepted"})

    threads = [threading.Thread(target=accept, args=(i,)) for i in inquiries]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert all(r.status_code == 200 for r in results.values()), [
        r.json for r in results.values() if r.status_code != 200
    ]
    winners = [i for i, r in results.items() if not r.json["conflicts"]]
    assert len(winners) == 1
    (winner,) = winners
    claimed = search_row(admin_engine, patient)
    assert (claimed.status, claimed.placed_therapist_id) == ("in_trial", inquiries[winner])
    assert len(events(admin_engine, "search.claimed", patient)) == 1
    for inquiry_id, response in results.items():
        if inquiry_id != winner:
            (conflict,) = response.json["conflicts"]
            assert conflict == {"search_id": patient, "replacement_offers": spares}
    with admin_engine.connect() as connection:
        conflicts = connection.execute(
            sa.text(
                "SELECT count(*) FROM matching_service.inquiry_patients "
                "WHERE search_id = :s AND conflict"
            ),
            {"s": patient},
        ).scalar_one()
    assert conflicts == 49


# ---------------------------------------------------------------- cooling, repeats, closed


def test_an_answer_starts_the_practice_cooling_and_is_announced_without_notes(
    spot: Spot, client: Any, admin_headers: dict[str, str], admin_engine: sa.Engine
) -> None:
    therapist = spot.therapist()
    search = spot.search()
    inquiry_id = inquiry(admin_engine, therapist, [search])
    response = put_answer(
        client,
        admin_headers,
        inquiry_id,
        {search: "rejected_capacity"},
        channel="phone",
        notes="ruft im Frühjahr wieder an",
    )
    assert response.status_code == 200, response.json
    row = _inquiry_row(admin_engine, inquiry_id)
    assert (row.status, row.response_type, row.channel) == ("answered", "full_rejection", "phone")
    assert row.notes == "ruft im Frühjahr wieder an" and row.answered_at is not None
    period = one(
        admin_engine,
        "SELECT starts_on, until, therapist_ids FROM matching_service.cooling_periods "
        "WHERE inquiry_id = :id",
        id=inquiry_id,
    )
    assert (period.until - period.starts_on).days == 28 and period.therapist_ids == [therapist]
    practice = one(
        admin_engine,
        "SELECT practice_key FROM matching_service.inquiries WHERE id = :id",
        id=inquiry_id,
    ).practice_key
    (cooling,) = events(admin_engine, "cooling.started", practice)
    assert cooling["inquiry_id"] == inquiry_id
    (answered,) = events(admin_engine, "inquiry.answered", inquiry_id)
    assert "notes" not in answered and "Frühjahr" not in str(answered)
    assert answered["channel"] == "phone" and answered["response_type"] == "full_rejection"


def test_a_second_answer_is_409_unless_it_repeats_the_recorded_one(
    spot: Spot, client: Any, admin_headers: dict[str, str], admin_engine: sa.Engine
) -> None:
    first, second = spot.search(), spot.search()
    inquiry_id = inquiry(admin_engine, spot.therapist(), [first, second])
    outcomes = {first: "accepted", second: "no_show"}
    recorded = put_answer(client, admin_headers, inquiry_id, outcomes)
    assert recorded.status_code == 200

    again = put_answer(client, admin_headers, inquiry_id, outcomes)
    assert again.status_code == 200 and again.json == recorded.json
    assert len(events(admin_engine, "inquiry.answered", inquiry_id)) == 1
    assert len(events(admin_engine, "search.claimed", first)) == 1

    changed = put_answer(
        client, admin_headers, inquiry_id, {first: "rejected_other", second: "no_show"}
    )
    assert changed.status_code == 409
    assert changed.json["error"]["details"]["recorded"] == [
        {"search_id": first, "outcome": "accepted"}
    ]
    assert search_row(admin_engine, first).status == "in_trial"


def test_an_inquiry_closed_without_response_takes_no_answer(
    spot: Spot, client: Any, admin_headers: dict[str, str], admin_engine: sa.Engine
) -> None:
    search = spot.search()
    inquiry_id = inquiry(admin_engine, spot.therapist(), [search], status="closed")
    response = put_answer(client, admin_headers, inquiry_id, {search: "accepted"})
    assert response.status_code == 409
    assert "no_response" in response.json["error"]["message"]
    assert search_row(admin_engine, search).status == "active"


# ---------------------------------------------------------------- withdrawal on cancel


def test_cancelling_a_search_withdraws_it_from_every_open_inquiry(
    spot: Spot, client: Any, admin_headers: dict[str, str], admin_engine: sa.Engine
) -> None:
    search, other = spot.search(), spot.search()
    sent = inquiry(admin_engine, spot.therapist(), [search, other])
    unsent = inquiry(admin_engine, spot.therapist(), [other, search], status="unsent")
    done = inquiry(admin_engine, spot.therapist(), [search], status="closed")
    response = client.patch(
        f"/api/patient-searches/{search}", json={"status": "cancelled"}, headers=admin_headers
    )
    assert response.status_code == 200
    for inquiry_id, inform in ((sent, True), (unsent, False)):
        row = inquiry_patient(admin_engine, inquiry_id, search)
        assert (row.status, row.withdrawn_reason) == ("withdrawn", "search_cancelled")
        assert _inquiry_row(admin_engine, inquiry_id).current_size == 1
        (event,) = events(admin_engine, "inquiry.patient_withdrawn", inquiry_id)
        assert event["inform_therapist"] is inform and event["reason"] == "search_cancelled"
    assert inquiry_patient(admin_engine, done, search).status == "open"  # closed: untouched
    assert events(admin_engine, "inquiry.patient_withdrawn", done) == []


def test_answers_cancellations_and_placements_at_once_never_deadlock(
    spot: Spot, client: Any, admin_headers: dict[str, str], admin_engine: sa.Engine
) -> None:
    """Every inquiry holds every patient (in another order); each therapist accepts some and
    rejects the others while staff cancel two searches and place one: locks taken in one
    order make them wait for each other, and each patient is claimed at most once."""
    rng = random.Random(7)
    searches = [spot.search() for _ in range(6)]
    therapists = [spot.therapist() for _ in range(6)]
    inquiries = {}
    for therapist in therapists:
        order = rng.sample(searches, len(searches))
        inquiries[inquiry(admin_engine, therapist, order)] = order
    outcomes = ("accepted", "rejected_unsuitable", "rejected_capacity", "in_trial_sessions")
    calls: list[Callable[[], Any]] = [
        functools.partial(
            put_answer,
            client,
            admin_headers,
            inquiry_id,
            {s: rng.choice(outcomes) for s in order},
        )
        for inquiry_id, order in inquiries.items()
    ]
    calls += [
        functools.partial(
            client.patch,
            f"/api/patient-searches/{search}",
            json={"status": "cancelled"},
            headers=admin_headers,
        )
        for search in searches[:2]
    ]
    calls.append(
        functools.partial(
            client.post,
            f"/api/patient-searches/{searches[-1]}/placements",
            json={"therapist_id": spot.therapist()},
            headers=admin_headers,
        )
    )
    barrier = threading.Barrier(len(calls))
    statuses: list[int] = []

    def run(call: Callable[[], Any]) -> None:
        barrier.wait()
        statuses.append(call().status_code)

    threads = [threading.Thread(target=run, args=(call,)) for call in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(statuses) == len(calls)
    assert set(statuses) <= {200, 201, 409}, statuses
    assert statuses.count(200) >= len(inquiries)  # every answer was recorded
    for search in searches:
        assert len(events(admin_engine, "search.claimed", search)) <= 1
        with admin_engine.connect() as connection:
            still_open = connection.execute(
                sa.text(
                    "SELECT count(*) FROM matching_service.inquiry_patients p "
                    "JOIN matching_service.inquiries i ON i.id = p.inquiry_id "
                    "JOIN matching_service.patient_searches s ON s.id = p.search_id "
                    "WHERE p.search_id = :s AND p.status = 'open' "
                    "AND i.status IN ('unsent', 'sent') AND s.status <> 'active'"
                ),
                {"s": search},
            ).scalar_one()
        assert still_open == 0  # a claimed or cancelled patient is offered nowhere


def test_the_answer_and_its_cooling_date_from_the_moment_it_was_recorded(
    spot: Spot, database: Any, settings: Any, admin_engine: sa.Engine
) -> None:
    search = spot.search()
    inquiry_id = inquiry(admin_engine, spot.therapist(), [search])
    as_of = datetime(2027, 1, 5, 9, 30, tzinfo=UTC)
    body = InquiryResponseIn.model_validate(answer_body({search: "accepted"}, channel="phone"))
    answer = answers.record_response(
        database.unit_of_work(), inquiry_id, body, settings, as_of=as_of
    )
    assert answer.answered_at == as_of and answer.conflicts == []
    assert search_row(admin_engine, search).claimed_at == as_of
    period = one(
        admin_engine,
        "SELECT starts_on, until FROM matching_service.cooling_periods WHERE inquiry_id = :id",
        id=inquiry_id,
    )
    assert (period.starts_on, period.until) == (date(2027, 1, 5), date(2027, 2, 2))
