"""communication_service's emails: queued from matching's events, sent over real SMTP by
`send-emails` with contact data read from the real therapist and patient services; the
weekly limit per practice, retries, overlapping runs, notices and the staff views."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, time, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from communication_service.cli import main as cli_main
from communication_service.cli import sender_of
from communication_service.rules import BERLIN, next_working_day
from communication_service.service import emails
from communication_service.service.sending import send_due_emails
from communication_service.settings import CommunicationSettings
from matching_service import schemas as matching
from shared.db import Database
from shared.devstack import free_port
from shared.events import EventType
from tests.communication_support import (
    SmtpSink,
    feed,
    inquiry_created,
    monday,
    new_id,
    new_therapist,
    outbox_events,
    patient_summary,
    table_rows,
)
from tests.helpers import patient_body

pytestmark = pytest.mark.integration


def _send(database: Database, settings: CommunicationSettings, when: datetime) -> dict[str, int]:
    return dict(send_due_emails(database, sender_of(settings), as_of=when))


def _practice() -> str:
    return f"p{new_id()}"


def _inquiry_email(
    database: Database,
    settings: CommunicationSettings,
    therapist_id: int,
    practice_key: str,
    *patients: dict[str, Any],
) -> int:
    payload = inquiry_created(therapist_id, practice_key, *patients)
    feed(database, settings, matching.INQUIRY_CREATED, payload)
    return int(payload["inquiry_id"])


# ---------------------------------------------------------------- inquiry emails


def test_inquiry_email_is_queued_then_sent_with_german_text_html_headers_and_links(
    database: Database,
    settings: CommunicationSettings,
    sink: SmtpSink,
    therapist_client: Any,
    admin_headers: dict[str, str],
    admin_engine: sa.Engine,
) -> None:
    therapist = new_therapist(therapist_client, admin_headers, last_name="Größer")
    first, second = new_id(), new_id()
    inquiry_id = _inquiry_email(
        database,
        settings,
        therapist["id"],
        _practice(),
        patient_summary(first, 1),
        patient_summary(second, 2, symptoms=["<b>Übelkeit</b> & mehr"]),
    )
    [queued] = table_rows(admin_engine, "emails", inquiry_id=inquiry_id)
    assert queued["status"] == "queued" and queued["body_text"] is None
    assert sink.to(therapist["email"]) == []  # queued, not sent

    assert _send(database, settings, monday())["sent"] >= 1

    [message] = sink.to(therapist["email"])
    assert message["From"] == "Vermittlung <vermittlung@example.org>"
    assert message["Subject"] == (
        f"Anfrage {inquiry_id}: 2 Patientinnen und Patienten suchen einen Therapieplatz"
    )
    assert f"inquiry.{inquiry_id}" in message["Message-ID"]
    text = message.get_body(("plain",)).get_content()
    html = message.get_body(("html",)).get_content()
    assert text.startswith("Sehr geehrte Frau Dr. Größer,")
    assert "wir sind eine Vermittlungsstelle" in text  # not informed about the platform yet
    assert f"1. Referenz PS-{first}" in text and f"2. Referenz PS-{second}" in text
    assert f"https://match.example/answers/{second}-accepted" in text
    assert f'href="https://match.example/answers/{first}-rejected_capacity"' in html
    assert "030 9876543" in text and "Mit freundlichen Grüßen" in text
    # what a patient typed never becomes markup
    assert "&lt;b&gt;Übelkeit&lt;/b&gt; &amp; mehr" in html and "<b>Übelkeit" not in html
    assert "<b>Übelkeit</b> & mehr" in text

    [sent] = table_rows(admin_engine, "emails", inquiry_id=inquiry_id)
    assert sent["status"] == "sent" and sent["to_address"] == therapist["email"]
    assert sent["sent_at"] == monday() and sent["subject"] == message["Subject"]
    [event] = outbox_events(admin_engine, "email.sent", sent["id"])
    view = matching.EmailSentView.model_validate(event["payload"])
    assert (view.kind, view.inquiry_id, view.therapist_id) == (
        "inquiry",
        inquiry_id,
        therapist["id"],
    )


def test_therapist_informed_about_the_platform_gets_no_introduction(
    database: Database,
    settings: CommunicationSettings,
    sink: SmtpSink,
    therapist_client: Any,
    admin_headers: dict[str, str],
) -> None:
    therapist = new_therapist(
        therapist_client, admin_headers, informed_about_platform=True, salutation="Herr", title=None
    )
    _inquiry_email(database, settings, therapist["id"], _practice())
    _send(database, settings, monday())
    [message] = sink.to(therapist["email"])
    text = message.get_body(("plain",)).get_content()
    assert text.startswith(f"Sehr geehrter Herr {therapist['last_name']},")
    assert "Vermittlungsstelle" not in text
    assert "die folgende Person sucht einen Therapieplatz" in text


def test_a_redelivered_inquiry_created_queues_one_email(
    database: Database, settings: CommunicationSettings, admin_engine: sa.Engine
) -> None:
    payload = inquiry_created(new_id(), _practice())
    feed(database, settings, matching.INQUIRY_CREATED, payload)
    feed(database, settings, matching.INQUIRY_CREATED, payload)
    assert len(table_rows(admin_engine, "emails", inquiry_id=payload["inquiry_id"])) == 1


# ---------------------------------------------------------------- weekly limit


def test_one_inquiry_email_per_practice_per_week_the_rest_waits(
    database: Database,
    settings: CommunicationSettings,
    sink: SmtpSink,
    therapist_client: Any,
    admin_headers: dict[str, str],
    admin_engine: sa.Engine,
) -> None:
    practice = _practice()
    one = new_therapist(therapist_client, admin_headers)
    two = new_therapist(therapist_client, admin_headers)
    first = _inquiry_email(database, settings, one["id"], practice)
    second = _inquiry_email(database, settings, two["id"], practice)
    start = monday()

    _send(database, settings, start)
    [sent] = [
        e
        for e in table_rows(admin_engine, "emails", practice_key=practice)
        if e["status"] == "sent"
    ]
    assert sent["inquiry_id"] == first
    [waiting] = table_rows(admin_engine, "emails", inquiry_id=second)
    assert waiting["status"] == "queued"
    assert waiting["next_attempt_at"] == start + timedelta(days=7)

    _send(database, settings, start + timedelta(days=6, hours=23))
    assert table_rows(admin_engine, "emails", inquiry_id=second)[0]["status"] == "queued"
    assert sink.to(two["email"]) == []

    _send(database, settings, start + timedelta(days=7))
    assert table_rows(admin_engine, "emails", inquiry_id=second)[0]["status"] == "sent"
    assert len(sink.to(two["email"])) == 1


def test_conflict_notice_answers_the_therapist_and_ignores_the_weekly_limit(
    database: Database,
    settings: CommunicationSettings,
    sink: SmtpSink,
    therapist_client: Any,
    admin_headers: dict[str, str],
    admin_engine: sa.Engine,
) -> None:
    practice = _practice()
    therapist = new_therapist(therapist_client, admin_headers)
    claimed, offer_one, offer_two = new_id(), new_id(), new_id()
    inquiry_id = _inquiry_email(
        database, settings, therapist["id"], practice, patient_summary(claimed, 1)
    )
    _send(database, settings, monday())
    answered = {
        "inquiry_id": inquiry_id,
        "therapist_id": therapist["id"],
        "practice_key": practice,
        "response_type": "full_acceptance",
        "channel": "link",
        "answered_at": (monday() + timedelta(days=1)).isoformat(),
        "patients": [
            {
                "search_id": claimed,
                "patient_id": new_id(),
                "outcome": "accepted",
                "conflict": True,
                "replacement_offers": [offer_one, offer_two],
            }
        ],
    }
    feed(database, settings, matching.INQUIRY_ANSWERED, answered)

    _send(
        database, settings, monday() + timedelta(days=1, hours=1)
    )  # a day after the inquiry email

    [_, notice] = sink.to(therapist["email"])
    assert "inzwischen vermittelt" in notice["Subject"]
    text = notice.get_body(("plain",)).get_content()
    assert f"Referenz PS-{claimed} ist nicht mehr verfügbar" in text
    assert f"PS-{offer_one}, PS-{offer_two}" in text
    assert "antworten Sie einfach" in text
    [row] = table_rows(admin_engine, "emails", inquiry_id=inquiry_id, kind="conflict")
    assert row["status"] == "sent"


# ---------------------------------------------------------------- failures


def test_a_temporary_smtp_failure_is_retried_after_a_backoff(
    database: Database,
    settings: CommunicationSettings,
    sink: SmtpSink,
    therapist_client: Any,
    admin_headers: dict[str, str],
    admin_engine: sa.Engine,
) -> None:
    therapist = new_therapist(therapist_client, admin_headers)
    inquiry_id = _inquiry_email(database, settings, therapist["id"], _practice())
    start = monday()
    sink.refuse_next("451 4.3.0 try again later")

    assert _send(database, settings, start).get("retry") == 1
    [row] = table_rows(admin_engine, "emails", inquiry_id=inquiry_id)
    assert (row["status"], row["attempts"]) == ("queued", 1)
    assert row["last_error"] == "SMTPRecipientsRefused 451"
    assert row["next_attempt_at"] == start + timedelta(minutes=1)

    _send(database, settings, start + timedelta(seconds=30))
    assert table_rows(admin_engine, "emails", inquiry_id=inquiry_id)[0]["status"] == "queued"
    _send(database, settings, start + timedelta(minutes=1))
    [row] = table_rows(admin_engine, "emails", inquiry_id=inquiry_id)
    assert (row["status"], row["attempts"]) == ("sent", 2)
    assert len(sink.to(therapist["email"])) == 1


def test_an_unreachable_smtp_server_is_a_temporary_failure(
    database: Database,
    settings: CommunicationSettings,
    therapist_client: Any,
    admin_headers: dict[str, str],
    admin_engine: sa.Engine,
) -> None:
    therapist = new_therapist(therapist_client, admin_headers)
    inquiry_id = _inquiry_email(database, settings, therapist["id"], _practice())
    down = settings.model_copy(update={"smtp_port": free_port()})  # nobody listens there
    start = monday()

    send_due_emails(database, sender_of(down), as_of=start)
    [row] = table_rows(admin_engine, "emails", inquiry_id=inquiry_id)
    assert (row["status"], row["attempts"], row["last_error"]) == (
        "queued",
        1,
        "ConnectionRefusedError",
    )
    send_due_emails(database, sender_of(down), as_of=start + timedelta(minutes=1))
    [row] = table_rows(admin_engine, "emails", inquiry_id=inquiry_id)
    assert row["next_attempt_at"] == start + timedelta(minutes=3)  # waits 1, then 2 minutes

    _send(database, settings, start + timedelta(minutes=3))
    assert table_rows(admin_engine, "emails", inquiry_id=inquiry_id)[0]["status"] == "sent"


def test_a_refused_recipient_fails_for_good_with_email_failed(
    database: Database,
    settings: CommunicationSettings,
    sink: SmtpSink,
    therapist_client: Any,
    admin_headers: dict[str, str],
    admin_engine: sa.Engine,
) -> None:
    therapist = new_therapist(therapist_client, admin_headers)
    inquiry_id = _inquiry_email(database, settings, therapist["id"], _practice())
    sink.refuse_next("550 5.1.1 mailbox unknown")

    assert _send(database, settings, monday()).get("failed") == 1
    [row] = table_rows(admin_engine, "emails", inquiry_id=inquiry_id)
    assert (row["status"], row["last_error"]) == ("failed", "SMTPRecipientsRefused 550")
    [event] = outbox_events(admin_engine, "email.failed", row["id"])
    assert event["payload"]["inquiry_id"] == inquiry_id
    assert therapist["email"] not in str(event)  # the error class only, no address


def test_two_overlapping_send_runs_send_every_email_once(
    database: Database,
    settings: CommunicationSettings,
    sink: SmtpSink,
    therapist_client: Any,
    admin_headers: dict[str, str],
    admin_engine: sa.Engine,
) -> None:
    therapists = [new_therapist(therapist_client, admin_headers) for _ in range(6)]
    shared_practice = _practice()
    for index, therapist in enumerate(therapists):
        # the last two share a practice: only one of them may be written to this week
        practice = shared_practice if index >= 4 else _practice()
        _inquiry_email(database, settings, therapist["id"], practice)
    sink.delay = 0.2
    when = monday()
    barrier = threading.Barrier(2)
    reports: list[dict[str, int]] = []

    def run() -> None:
        barrier.wait()
        reports.append(_send(database, settings, when))

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    received = [len(sink.to(therapist["email"])) for therapist in therapists]
    assert received[:4] == [1, 1, 1, 1]
    assert sorted(received[4:]) == [0, 1]
    assert all(report.get("sent", 0) >= 1 for report in reports)  # both runs did work
    sent = [
        e for e in table_rows(admin_engine, "emails", practice_key=shared_practice) if e["sent_at"]
    ]
    assert len(sent) == 1


# ---------------------------------------------------------------- other messages


def test_a_therapist_without_email_gets_a_call_instead(
    database: Database,
    settings: CommunicationSettings,
    sink: SmtpSink,
    therapist_client: Any,
    admin_headers: dict[str, str],
    admin_engine: sa.Engine,
) -> None:
    therapist = new_therapist(
        therapist_client,
        admin_headers,
        email=None,
        phone_hours={d: ["09:00-10:00"] for d in ("mon", "tue", "wed", "thu", "fri")},
    )
    search_id = new_id()
    inquiry_id = _inquiry_email(
        database, settings, therapist["id"], _practice(), patient_summary(search_id, 1)
    )
    # sent on a Monday at 10:00 local: the first slot is the next working day, 09:00 local
    sent_at = monday(2) + timedelta(hours=1)
    assert _send(database, settings, sent_at).get("replaced_by_call") == 1
    assert (
        table_rows(admin_engine, "emails", inquiry_id=inquiry_id)[0]["status"] == "replaced_by_call"
    )
    with admin_engine.connect() as connection:
        [call] = connection.execute(
            sa.text("SELECT * FROM communication_service.phone_calls WHERE inquiry_id = :id"),
            {"id": inquiry_id},
        ).all()
    assert (call.purpose, call.status) == ("inquiry", "scheduled")
    day = next_working_day(sent_at.date())
    assert call.scheduled_at == datetime.combine(day, time(9), BERLIN).astimezone(UTC)
    assert call.patient_references == [f"PS-{search_id}"]


def test_withdrawal_notice_to_a_therapist_who_received_the_patient(
    database: Database,
    settings: CommunicationSettings,
    sink: SmtpSink,
    therapist_client: Any,
    admin_headers: dict[str, str],
) -> None:
    therapist = new_therapist(therapist_client, admin_headers)
    practice, search_id = _practice(), new_id()
    inquiry_id = _inquiry_email(
        database, settings, therapist["id"], practice, patient_summary(search_id, 1)
    )
    _send(database, settings, monday())
    withdrawn = {
        "inquiry_id": inquiry_id,
        "therapist_id": therapist["id"],
        "practice_key": practice,
        "search_id": search_id,
        "patient_id": new_id(),
        "reason": "claimed_elsewhere",
        "inform_therapist": True,
        "current_size": 0,
    }
    feed(database, settings, matching.INQUIRY_PATIENT_WITHDRAWN, withdrawn)
    _send(database, settings, monday() + timedelta(days=1))

    [_, notice] = sink.to(therapist["email"])
    assert (
        notice["Subject"]
        == f"Anfrage {inquiry_id}: Referenz PS-{search_id} ist nicht mehr verfügbar"
    )
    text = notice.get_body(("plain",)).get_content()
    assert "bei einer anderen Praxis einen Platz gefunden" in text


def test_a_patient_withdrawn_before_sending_leaves_the_queued_inquiry_email(
    database: Database,
    settings: CommunicationSettings,
    sink: SmtpSink,
    therapist_client: Any,
    admin_headers: dict[str, str],
    admin_engine: sa.Engine,
) -> None:
    therapist = new_therapist(therapist_client, admin_headers)
    practice, kept, gone = _practice(), new_id(), new_id()
    inquiry_id = _inquiry_email(
        database,
        settings,
        therapist["id"],
        practice,
        patient_summary(kept, 1),
        patient_summary(gone, 2),
    )
    withdrawn = {
        "inquiry_id": inquiry_id,
        "therapist_id": therapist["id"],
        "practice_key": practice,
        "search_id": gone,
        "patient_id": new_id(),
        "reason": "search_cancelled",
        "inform_therapist": False,
        "current_size": 1,
    }
    feed(database, settings, matching.INQUIRY_PATIENT_WITHDRAWN, withdrawn)
    _send(database, settings, monday())

    [message] = sink.to(therapist["email"])  # no withdrawal notice: they never saw the patient
    text = message.get_body(("plain",)).get_content()
    assert f"PS-{kept}" in text and f"PS-{gone}" not in text
    assert len(table_rows(admin_engine, "emails", inquiry_id=inquiry_id)) == 1


def _patient(client: Any, headers: dict[str, str], **overrides: Any) -> dict[str, Any]:
    response = client.post("/api/patients", json=patient_body(**overrides), headers=headers)
    assert response.status_code == 201, response.json
    return response.json


def _search_event(event: EventType, patient_id: int, search_id: int) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "search_id": search_id,
        "patient_id": patient_id,
        "status": "active" if event is matching.SEARCH_STARTED else "in_trial",
        "waiting_since": "2026-11-01T08:00:00+00:00",
        "contact_budget": 25,
    }
    if event is not matching.SEARCH_STARTED:
        payload.update(previous_status="active", therapist_id=new_id(), inquiry_id=new_id())
    return payload


def test_patients_who_consented_hear_when_the_search_starts_and_a_place_is_found(
    database: Database,
    settings: CommunicationSettings,
    sink: SmtpSink,
    patient_client: Any,
    admin_headers: dict[str, str],
    admin_engine: sa.Engine,
) -> None:
    consented = _patient(
        patient_client, admin_headers, salutation="Frau", consent_at="2026-11-01T08:00:00Z"
    )
    silent = _patient(patient_client, admin_headers)  # an email, but no consent
    search_id = new_id()
    for patient, search in ((consented, search_id), (silent, new_id())):
        for event in (matching.SEARCH_STARTED, matching.SEARCH_CLAIMED):
            feed(database, settings, event, _search_event(event, patient["id"], search))

    report = _send(database, settings, monday())

    assert report.get("cancelled", 0) >= 2
    started, found = sink.to(consented["email"])
    assert (
        started["Subject"] == f"Ihre Suche nach einem Therapieplatz hat begonnen (PS-{search_id})"
    )
    assert (
        started.get_body(("plain",))
        .get_content()
        .startswith(f"Sehr geehrte Frau {consented['last_name']},")
    )
    assert "einen Therapieplatz für Sie angeboten" in found.get_body(("plain",)).get_content()
    assert sink.to(silent["email"]) == []
    rows = table_rows(admin_engine, "emails", patient_id=silent["id"])
    assert {(row["status"], row["last_error"]) for row in rows} == {
        ("cancelled", "no_email_or_consent")
    }


def test_patients_hear_weekly_how_many_practices_were_asked_count_only(
    database: Database,
    settings: CommunicationSettings,
    sink: SmtpSink,
    patient_client: Any,
    therapist_client: Any,
    admin_headers: dict[str, str],
    admin_engine: sa.Engine,
) -> None:
    patient = _patient(patient_client, admin_headers, consent_at="2026-11-01T08:00:00Z")
    search_id = new_id()
    start = monday()
    for offset in (0, 1):
        practice_therapist = new_therapist(therapist_client, admin_headers)
        summary = patient_summary(search_id, 1, patient_id=patient["id"])
        _inquiry_email(database, settings, practice_therapist["id"], _practice(), summary)
        _send(database, settings, start + timedelta(days=offset))
    week_end = start + timedelta(days=4)

    assert emails.queue_weekly_updates(database.unit_of_work(), as_of=week_end) >= 1
    assert emails.queue_weekly_updates(database.unit_of_work(), as_of=week_end) == 0  # once
    [queued] = table_rows(admin_engine, "emails", patient_id=patient["id"])
    assert queued["kind"] == "inquiries_this_week" and queued["context"]["count"] == 2
    _send(database, settings, week_end)

    [update] = sink.to(patient["email"])
    assert update["Subject"] == f"Ihre Suche (PS-{search_id}): 2 Praxen in dieser Woche angefragt"
    text = update.get_body(("plain",)).get_content()
    assert "in dieser Woche haben wir 2 Praxen" in text
    assert "Beispiel" not in text.split("\n", 1)[1]  # no therapist named, the count only


# ---------------------------------------------------------------- staff views and CLI


def test_staff_list_emails_by_filters_and_read_one_with_its_content(
    database: Database,
    settings: CommunicationSettings,
    client: Any,
    therapist_client: Any,
    admin_headers: dict[str, str],
) -> None:
    therapist = new_therapist(therapist_client, admin_headers)
    inquiry_id = _inquiry_email(database, settings, therapist["id"], _practice())
    queued = client.get(
        f"/api/emails?therapist_id={therapist['id']}&status=queued", headers=admin_headers
    )
    assert queued.status_code == 200 and queued.json["total"] == 1
    _send(database, settings, monday())

    listed = client.get(
        f"/api/emails?inquiry_id={inquiry_id}&kind=inquiry&status=sent", headers=admin_headers
    )
    [item] = listed.json["items"]
    assert "body_text" not in item
    detail = client.get(f"/api/emails/{item['id']}", headers=admin_headers)
    assert detail.status_code == 200
    assert detail.json["to_address"] == therapist["email"]
    assert "Sehr geehrte Frau Dr." in detail.json["body_text"]
    today = datetime.now(UTC).date().isoformat()
    by_day = client.get(f"/api/emails?date={today}&inquiry_id={inquiry_id}", headers=admin_headers)
    assert by_day.json["total"] == 1
    assert client.get("/api/emails/2147483000", headers=admin_headers).status_code == 404
    bad = client.get("/api/emails?status=lost", headers=admin_headers)
    assert bad.status_code == 422 and "status" in str(bad.json)
    assert (
        client.post("/api/emails", json={"to": "x@example.org"}, headers=admin_headers).status_code
        == 405
    )


def test_send_emails_command_sends_as_of_the_given_moment(
    settings: CommunicationSettings,
    database: Database,
    sink: SmtpSink,
    therapist_client: Any,
    admin_headers: dict[str, str],
    admin_engine: sa.Engine,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    therapist = new_therapist(therapist_client, admin_headers)
    inquiry_id = _inquiry_email(database, settings, therapist["id"], _practice())
    for name in (
        "database_url",
        "service_token",
        "therapist_service_url",
        "patient_service_url",
        "smtp_port",
    ):
        value = getattr(settings, name)
        secret = getattr(value, "get_secret_value", None)
        monkeypatch.setenv(name.upper(), secret() if secret else str(value))

    when = monday(3)
    assert cli_main(["send-emails", "--as-of", when.replace(tzinfo=None).isoformat()]) == 0
    assert "sent" in capsys.readouterr().out
    [row] = table_rows(admin_engine, "emails", inquiry_id=inquiry_id)
    assert row["sent_at"] == when
    with pytest.raises(SystemExit) as refused:
        cli_main(["send-emails", "--as-of", "yesterday"])
    assert refused.value.code == 2
    assert "not an ISO date or date-time: 'yesterday'" in capsys.readouterr().err
