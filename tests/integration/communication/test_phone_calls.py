"""Phone work: follow-up calls booked in the therapist's phone hours (working days, German
holidays, the horizon), never two calls of one therapist in one slot, rescheduling after a
call that did not reach the therapist, cancelling when the inquiry is answered, and the
day's call list."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from communication_service.app import create_app
from communication_service.contacts import ContactDirectory, directory_of
from communication_service.models import PhoneCall
from communication_service.rules import BERLIN, next_working_day
from communication_service.schemas import CallOutcome, InquiryFollowUpDueView
from communication_service.service import calls
from communication_service.settings import CommunicationSettings
from matching_service import schemas as matching
from shared.db import Database
from shared.devstack import free_port
from tests.communication_support import feed, new_id, new_therapist, outbox_events, table_rows

pytestmark = pytest.mark.integration

SLOT = 5
HORIZON = 14


def local(day: str, clock: str) -> datetime:
    """A local (Europe/Berlin) wall-clock time as a UTC instant."""
    return datetime.combine(date.fromisoformat(day), time.fromisoformat(clock), BERLIN).astimezone(
        UTC
    )


@pytest.fixture
def directory(settings: CommunicationSettings) -> ContactDirectory:
    return directory_of(settings)


def _due(therapist_id: int, *search_ids: int) -> InquiryFollowUpDueView:
    return InquiryFollowUpDueView(
        inquiry_id=new_id(),
        therapist_id=therapist_id,
        due_since=datetime.now(UTC),
        search_ids=list(search_ids) or [new_id()],
    )


def _follow_up(
    database: Database,
    directory: ContactDirectory,
    due: InquiryFollowUpDueView,
    as_of: datetime,
    horizon_days: int = HORIZON,
) -> PhoneCall | None:
    with database.unit_of_work() as uow:
        call = calls.schedule_follow_up(
            uow, due, directory, slot_minutes=SLOT, horizon_days=horizon_days, as_of=as_of
        )
        uow.commit()
    return call


def _therapist_with_hours(client: Any, headers: dict[str, str], hours: dict[str, Any]) -> int:
    return int(new_therapist(client, headers, phone_hours=hours)["id"])


# ---------------------------------------------------------------- booking slots


def test_follow_up_takes_the_earliest_free_slot_from_the_next_working_day(
    database: Database,
    directory: ContactDirectory,
    therapist_client: Any,
    admin_headers: dict[str, str],
    admin_engine: sa.Engine,
) -> None:
    therapist_id = _therapist_with_hours(
        therapist_client,
        admin_headers,
        {"wed": ["08:00-09:00"], "thu": ["12:00-12:10"]},
    )
    # Wednesday 2027-03-10 (its own phone hours are not used: from the next working day on)
    as_of = local("2027-03-10", "07:00")
    booked = [_follow_up(database, directory, _due(therapist_id), as_of) for _ in range(3)]

    assert [call.scheduled_at for call in booked if call] == [
        local("2027-03-11", "12:00"),
        local("2027-03-11", "12:05"),
        # Thursday is full (two slots): the next phone hours are Wednesday's
        local("2027-03-17", "08:00"),
    ]
    first = booked[0]
    assert first is not None
    assert (first.purpose, first.status, first.attempt) == ("follow_up", "scheduled", 1)
    [event] = outbox_events(admin_engine, "phone_call.scheduled", first.id)
    assert event["payload"]["scheduled_at"].startswith("2027-03-11T11:00")


def test_a_repeated_follow_up_of_one_inquiry_keeps_its_one_call(
    database: Database,
    directory: ContactDirectory,
    therapist_client: Any,
    admin_headers: dict[str, str],
) -> None:
    therapist_id = _therapist_with_hours(therapist_client, admin_headers, {"thu": ["12:00-13:00"]})
    due = _due(therapist_id)
    first = _follow_up(database, directory, due, local("2027-03-10", "07:00"))
    again = _follow_up(database, directory, due, local("2027-03-10", "07:00"))
    assert first is not None and again is not None and again.id == first.id


def test_holidays_are_skipped_and_no_call_is_booked_beyond_the_horizon(
    database: Database,
    directory: ContactDirectory,
    therapist_client: Any,
    admin_headers: dict[str, str],
    admin_engine: sa.Engine,
) -> None:
    therapist_id = _therapist_with_hours(therapist_client, admin_headers, {"fri": ["09:00-10:00"]})
    # Wednesday 2026-12-23: Friday 25 December and Friday 1 January are public holidays,
    # Friday 8 January is 16 days on
    as_of = local("2026-12-23", "10:00")
    due = _due(therapist_id)

    assert _follow_up(database, directory, due, as_of) is None
    [failed] = outbox_events(admin_engine, "phone_call.failed", due.inquiry_id)
    assert failed["payload"]["reason"] == "no_phone_hours_in_horizon"
    assert table_rows(admin_engine, "phone_calls", inquiry_id=due.inquiry_id) == []

    # the horizon's last day still counts
    call = _follow_up(database, directory, due, as_of, horizon_days=16)
    assert call is not None and call.scheduled_at == local("2027-01-08", "09:00")


def test_a_therapist_without_phone_hours_gets_no_call_and_it_is_reported(
    database: Database,
    directory: ContactDirectory,
    therapist_client: Any,
    admin_headers: dict[str, str],
    admin_engine: sa.Engine,
) -> None:
    therapist_id = _therapist_with_hours(therapist_client, admin_headers, {})
    due = _due(therapist_id)
    assert _follow_up(database, directory, due, local("2027-03-10", "07:00")) is None
    assert len(outbox_events(admin_engine, "phone_call.failed", due.inquiry_id)) == 1


def test_the_database_refuses_two_scheduled_calls_of_one_therapist_in_one_slot(
    admin_engine: sa.Engine,
) -> None:
    therapist_id, slot = new_id(), local("2027-03-11", "12:00")
    insert = sa.text(
        "INSERT INTO communication_service.phone_calls "
        "(therapist_id, inquiry_id, purpose, scheduled_at, patient_references) "
        "VALUES (:therapist, :inquiry, 'follow_up', :slot, '[]')"
    )
    with admin_engine.begin() as connection:
        connection.execute(insert, {"therapist": therapist_id, "inquiry": new_id(), "slot": slot})
    with (
        pytest.raises(sa.exc.IntegrityError, match="uq_phone_calls_therapist_slot"),
        admin_engine.begin() as connection,
    ):
        connection.execute(insert, {"therapist": therapist_id, "inquiry": new_id(), "slot": slot})


# ---------------------------------------------------------------- outcomes


def _outcome(
    database: Database,
    directory: ContactDirectory,
    call_id: int,
    outcome: str,
    as_of: datetime,
) -> calls.CallOutcomeOut:
    return calls.record_outcome(
        database.unit_of_work(),
        call_id,
        CallOutcome.model_validate({"outcome": outcome}),
        directory,
        slot_minutes=SLOT,
        horizon_days=HORIZON,
        max_attempts=3,
        as_of=as_of,
    )


def test_a_call_that_did_not_reach_the_therapist_is_booked_again_up_to_three_attempts(
    database: Database,
    directory: ContactDirectory,
    therapist_client: Any,
    admin_headers: dict[str, str],
    admin_engine: sa.Engine,
) -> None:
    therapist_id = _therapist_with_hours(
        therapist_client, admin_headers, {"wed": ["08:00-08:05"], "thu": ["12:00-12:10"]}
    )
    due = _due(therapist_id)
    first = _follow_up(database, directory, due, local("2027-03-10", "07:00"))
    assert first is not None

    second = _outcome(database, directory, first.id, "not_reached", local("2027-03-11", "12:02"))
    assert second.call.status == "not_reached" and second.next_call is not None
    assert (second.next_call.attempt, second.next_call.scheduled_at) == (
        2,
        local("2027-03-11", "12:05"),
    )
    third = _outcome(
        database, directory, second.next_call.id, "not_reached", local("2027-03-11", "12:07")
    )
    assert third.next_call is not None
    assert (third.next_call.attempt, third.next_call.scheduled_at) == (
        3,
        local("2027-03-17", "08:00"),
    )
    last = _outcome(
        database, directory, third.next_call.id, "not_reached", local("2027-03-17", "08:03")
    )
    assert last.next_call is None
    [failed] = outbox_events(admin_engine, "phone_call.failed", due.inquiry_id)
    assert failed["payload"]["reason"] == "attempts_exhausted"
    assert failed["payload"]["attempts"] == 3
    completed = [
        event
        for call in table_rows(admin_engine, "phone_calls", inquiry_id=due.inquiry_id)
        for event in outbox_events(admin_engine, "phone_call.completed", call["id"])
    ]
    assert [event["payload"]["outcome"] for event in completed] == ["not_reached"] * 3


def test_staff_record_a_reached_call_once(
    database: Database,
    directory: ContactDirectory,
    client: Any,
    therapist_client: Any,
    admin_headers: dict[str, str],
    admin_engine: sa.Engine,
) -> None:
    therapist_id = _therapist_with_hours(therapist_client, admin_headers, {"thu": ["12:00-13:00"]})
    call = _follow_up(database, directory, _due(therapist_id), local("2027-03-10", "07:00"))
    assert call is not None

    notes = "Rückruf: Frau Dr. nimmt PS-1 im Mai"
    response = client.patch(
        f"/api/phone-calls/{call.id}",
        json={"outcome": "reached", "notes": notes},
        headers=admin_headers,
    )
    assert response.status_code == 200, response.json
    assert response.json["call"]["status"] == "reached"
    assert response.json["call"]["notes"] == notes and response.json["next_call"] is None
    [event] = outbox_events(admin_engine, "phone_call.completed", call.id)
    view = matching.PhoneCallCompletedView.model_validate(event["payload"])
    assert (view.purpose, view.outcome, view.inquiry_id) == (
        "follow_up",
        "reached",
        call.inquiry_id,
    )

    again = client.patch(
        f"/api/phone-calls/{call.id}", json={"outcome": "reached"}, headers=admin_headers
    )
    assert again.status_code == 409
    assert again.json["error"]["details"]["allowed_statuses"] == ["scheduled"]
    unknown = client.patch(
        "/api/phone-calls/2147483000", json={"outcome": "reached"}, headers=admin_headers
    )
    assert unknown.status_code == 404
    bad = client.patch(
        f"/api/phone-calls/{call.id}", json={"outcome": "maybe"}, headers=admin_headers
    )
    assert bad.status_code == 422 and "outcome" in str(bad.json)


def test_an_answered_inquiry_cancels_its_open_calls(
    database: Database,
    directory: ContactDirectory,
    settings: CommunicationSettings,
    therapist_client: Any,
    admin_headers: dict[str, str],
    admin_engine: sa.Engine,
) -> None:
    therapist_id = _therapist_with_hours(therapist_client, admin_headers, {"thu": ["12:00-13:00"]})
    due = _due(therapist_id)
    call = _follow_up(database, directory, due, local("2027-03-10", "07:00"))
    assert call is not None
    answered = {
        "inquiry_id": due.inquiry_id,
        "therapist_id": therapist_id,
        "practice_key": f"p{therapist_id}",
        "response_type": "full_rejection",
        "channel": "phone",
        "answered_at": "2027-03-10T09:00:00+00:00",
        "patients": [
            {"search_id": due.search_ids[0], "patient_id": new_id(), "outcome": "rejected_capacity"}
        ],
    }
    feed(database, settings, matching.INQUIRY_ANSWERED, answered)

    [row] = table_rows(admin_engine, "phone_calls", inquiry_id=due.inquiry_id)
    assert row["status"] == "cancelled"
    [event] = outbox_events(admin_engine, "phone_call.cancelled", call.id)
    assert event["payload"]["reason"] == "answered"


def test_follow_up_due_books_a_call_on_the_next_working_day(
    database: Database,
    settings: CommunicationSettings,
    therapist_client: Any,
    admin_headers: dict[str, str],
    admin_engine: sa.Engine,
) -> None:
    weekdays = ("mon", "tue", "wed", "thu", "fri")
    therapist_id = _therapist_with_hours(
        therapist_client, admin_headers, {day: ["09:00-10:00"] for day in weekdays}
    )
    inquiry_id, search_id = new_id(), new_id()
    due = {
        "inquiry_id": inquiry_id,
        "therapist_id": therapist_id,
        "practice_key": f"p{therapist_id}",
        "sent_at": "2026-11-01T08:00:00+00:00",
        "due_since": "2026-11-08T08:00:00+00:00",
        "search_ids": [search_id],
    }
    feed(database, settings, matching.INQUIRY_FOLLOW_UP_DUE, due)

    [call] = table_rows(admin_engine, "phone_calls", inquiry_id=inquiry_id)
    day = next_working_day(datetime.now(BERLIN).date())
    assert call["scheduled_at"] == datetime.combine(day, time(9), BERLIN).astimezone(UTC)
    assert call["patient_references"] == [f"PS-{search_id}"]


def test_a_follow_up_due_in_the_future_is_booked_from_that_day(
    database: Database,
    settings: CommunicationSettings,
    therapist_client: Any,
    admin_headers: dict[str, str],
    admin_engine: sa.Engine,
) -> None:
    """A follow-up run with a future --as-of (operators, tests) books from its day on."""
    weekdays = ("mon", "tue", "wed", "thu", "fri")
    therapist_id = _therapist_with_hours(
        therapist_client, admin_headers, {day: ["09:00-10:00"] for day in weekdays}
    )
    inquiry_id = new_id()
    due_since = datetime.now(UTC) + timedelta(days=10)
    feed(
        database,
        settings,
        matching.INQUIRY_FOLLOW_UP_DUE,
        {
            "inquiry_id": inquiry_id,
            "therapist_id": therapist_id,
            "practice_key": f"p{therapist_id}",
            "sent_at": (due_since - timedelta(days=7)).isoformat(),
            "due_since": due_since.isoformat(),
            "search_ids": [new_id()],
        },
    )
    [call] = table_rows(admin_engine, "phone_calls", inquiry_id=inquiry_id)
    day = next_working_day(due_since.astimezone(BERLIN).date())
    assert call["scheduled_at"] == datetime.combine(day, time(9), BERLIN).astimezone(UTC)


# ---------------------------------------------------------------- the call list


def test_the_call_list_of_a_day_names_whom_to_call_in_slot_order(
    database: Database,
    directory: ContactDirectory,
    client: Any,
    therapist_client: Any,
    admin_headers: dict[str, str],
) -> None:
    therapist = new_therapist(
        therapist_client, admin_headers, phone="0341 555 0101", phone_hours={"fri": ["07:00-07:10"]}
    )
    references = [new_id(), new_id()]
    booked = [
        _follow_up(
            database, directory, _due(therapist["id"], *references), local("2027-04-07", "07:00")
        )
        for _ in range(3)
    ]  # Friday 9 April: 07:00 and 07:05; the third goes to Friday 16 April

    response = client.get("/api/phone-calls?date=2027-04-09", headers=admin_headers)
    assert response.status_code == 200, response.json
    mine = [item for item in response.json["calls"] if item["therapist_id"] == therapist["id"]]
    assert [item["id"] for item in mine] == [call.id for call in booked[:2] if call]
    assert mine[0]["scheduled_at"].startswith("2027-04-09T05:00")  # 07:00 summer time
    assert mine[0]["therapist_phone"] == "0341 555 0101"
    assert therapist["last_name"] in mine[0]["therapist_name"]
    assert mine[0]["patient_references"] == [f"PS-{ref}" for ref in references]

    later = client.get("/api/phone-calls?date=2027-04-16", headers=admin_headers)
    assert [
        item["id"] for item in later.json["calls"] if item["therapist_id"] == therapist["id"]
    ] == [booked[2].id if booked[2] else None]
    missing = client.get("/api/phone-calls", headers=admin_headers)
    assert missing.status_code == 422 and "date" in str(missing.json)


def test_withdrawn_patients_leave_the_call_and_the_last_one_cancels_it(
    database: Database,
    directory: ContactDirectory,
    settings: CommunicationSettings,
    therapist_client: Any,
    admin_headers: dict[str, str],
    admin_engine: sa.Engine,
) -> None:
    therapist_id = _therapist_with_hours(therapist_client, admin_headers, {"thu": ["12:00-13:00"]})
    kept, gone = new_id(), new_id()
    due = _due(therapist_id, kept, gone)
    call = _follow_up(database, directory, due, local("2027-03-10", "07:00"))
    assert call is not None

    def withdraw(search_id: int, current_size: int) -> None:
        payload = {
            "inquiry_id": due.inquiry_id,
            "therapist_id": therapist_id,
            "practice_key": f"p{therapist_id}",
            "search_id": search_id,
            "patient_id": new_id(),
            "reason": "claimed_elsewhere",
            "inform_therapist": True,
            "current_size": current_size,
        }
        feed(database, settings, matching.INQUIRY_PATIENT_WITHDRAWN, payload)

    withdraw(gone, 1)
    [row] = table_rows(admin_engine, "phone_calls", inquiry_id=due.inquiry_id)
    assert (row["status"], row["patient_references"]) == ("scheduled", [f"PS-{kept}"])
    withdraw(kept, 0)
    [row] = table_rows(admin_engine, "phone_calls", inquiry_id=due.inquiry_id)
    assert row["status"] == "cancelled"
    [event] = outbox_events(admin_engine, "phone_call.cancelled", call.id)
    assert event["payload"]["reason"] == "withdrawn"


def test_an_outcome_is_not_recorded_while_therapist_service_cannot_answer(
    database: Database,
    directory: ContactDirectory,
    settings: CommunicationSettings,
    therapist_client: Any,
    admin_headers: dict[str, str],
    admin_engine: sa.Engine,
) -> None:
    therapist_id = _therapist_with_hours(therapist_client, admin_headers, {"thu": ["12:00-13:00"]})
    call = _follow_up(database, directory, _due(therapist_id), local("2027-03-10", "07:00"))
    assert call is not None
    unreachable = settings.model_copy(
        update={"therapist_service_url": f"http://127.0.0.1:{free_port()}"}
    )
    client = create_app(unreachable).test_client()

    response = client.patch(
        f"/api/phone-calls/{call.id}", json={"outcome": "not_reached"}, headers=admin_headers
    )
    assert response.status_code == 503
    assert "nothing was recorded" in response.json["error"]["message"]
    [row] = table_rows(admin_engine, "phone_calls", id=call.id)
    assert row["status"] == "scheduled"
