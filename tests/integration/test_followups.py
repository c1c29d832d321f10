"""After an inquiry is created: communication's reports mark it sent, the daily follow-up
job flags it due a follow-up call once and closes it unanswered (cooling starts), against a
real PostgreSQL."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from matching_service import cli
from matching_service.app import create_app as create_matching_app
from matching_service.models import INFRA as MATCHING_INFRA
from matching_service.schemas import EMAIL_SENT, PHONE_CALL_COMPLETED
from matching_service.service.followups import run_follow_ups
from matching_service.settings import MatchingSettings
from shared.db import role_url
from shared.runtime import ServiceRuntime
from tests.conftest import ANSWER_LINK_SECRET
from tests.inquiry_support import outbox_payloads
from tests.matching_support import MarketBuilder, handle, insert_inquiry, new_id

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("clean_outboxes")]

SENT = datetime(2031, 3, 2, 9, 0, tzinfo=UTC)  # far from other tests' inquiries


@pytest.fixture
def settings(make_settings: Any) -> MatchingSettings:
    return make_settings(MatchingSettings)


@pytest.fixture
def database(settings: MatchingSettings) -> Any:
    database = ServiceRuntime.build(settings, MATCHING_INFRA).database
    yield database
    database.dispose()


@pytest.fixture
def builder(
    settings: MatchingSettings, database: Any, admin_headers: dict[str, str]
) -> MarketBuilder:
    return MarketBuilder(database, create_matching_app(settings).test_client(), admin_headers)


def _inquiry(engine: sa.Engine, inquiry_id: int) -> Any:
    with engine.connect() as connection:
        return connection.execute(
            sa.text("SELECT * FROM matching_service.inquiries WHERE id = :id"), {"id": inquiry_id}
        ).one()


def _email_sent(inquiry_id: int, *, kind: str = "inquiry", sent_at: datetime = SENT) -> Any:
    payload = {
        "email_id": new_id(),
        "kind": kind,
        "inquiry_id": inquiry_id,
        "therapist_id": 1,
        "sent_at": sent_at.isoformat(),
    }
    return EMAIL_SENT.build(producer="communication_service", aggregate_id=1, payload=payload)


def _call_completed(inquiry_id: int, outcome: str) -> Any:
    payload = {
        "call_id": new_id(),
        "purpose": "inquiry",
        "inquiry_id": inquiry_id,
        "therapist_id": 1,
        "outcome": outcome,
        "completed_at": SENT.isoformat(),
    }
    return PHONE_CALL_COMPLETED.build(
        producer="communication_service", aggregate_id=1, payload=payload
    )


def _run(database: Any, settings: MatchingSettings, as_of: datetime) -> Any:
    return run_follow_ups(
        database.unit_of_work(),
        follow_up_after_days=settings.follow_up_after_days,
        close_after_days=settings.inquiry_close_after_days,
        cooling_period_days=settings.cooling_period_days,
        as_of=as_of,
    )


# ---------------------------------------------------------------- sent marking


def test_an_inquiry_email_sent_marks_the_inquiry_sent_once(
    builder: MarketBuilder, database: Any, admin_engine: sa.Engine
) -> None:
    therapist_id = builder.therapist()
    search = builder.search()
    inquiry_id = insert_inquiry(admin_engine, therapist_id, [search["id"]], status="unsent")
    handle(database, _email_sent(inquiry_id))
    handle(database, _email_sent(inquiry_id, sent_at=SENT + timedelta(days=1)))  # a repeat
    row = _inquiry(admin_engine, inquiry_id)
    assert (row.status, row.sent_at, row.sent_via) == ("sent", SENT, "email")
    (payload,) = outbox_payloads(admin_engine, "inquiry.sent", inquiry_id)
    assert payload["sent_via"] == "email" and payload["therapist_id"] == therapist_id
    assert payload["sent_at"].startswith("2031-03-02T09:00:00")


def test_other_emails_do_not_mark_an_inquiry_sent(
    builder: MarketBuilder, database: Any, admin_engine: sa.Engine
) -> None:
    therapist_id = builder.therapist()
    search = builder.search()
    inquiry_id = insert_inquiry(admin_engine, therapist_id, [search["id"]], status="unsent")
    handle(database, _email_sent(inquiry_id, kind="follow_up"))
    assert _inquiry(admin_engine, inquiry_id).status == "unsent"
    assert outbox_payloads(admin_engine, "inquiry.sent", inquiry_id) == []


def test_a_call_that_reached_a_therapist_without_email_marks_the_inquiry_sent(
    builder: MarketBuilder, database: Any, admin_engine: sa.Engine
) -> None:
    therapist_id = builder.therapist(has_email=False)
    search = builder.search()
    inquiry_id = insert_inquiry(admin_engine, therapist_id, [search["id"]], status="unsent")
    handle(database, _call_completed(inquiry_id, "not_reached"))
    assert _inquiry(admin_engine, inquiry_id).status == "unsent"
    handle(database, _call_completed(inquiry_id, "reached"))
    row = _inquiry(admin_engine, inquiry_id)
    assert (row.status, row.sent_via) == ("sent", "phone")
    (payload,) = outbox_payloads(admin_engine, "inquiry.sent", inquiry_id)
    assert payload["sent_via"] == "phone"


def test_a_report_for_an_answered_inquiry_changes_nothing(
    builder: MarketBuilder, database: Any, admin_engine: sa.Engine
) -> None:
    therapist_id = builder.therapist()
    search = builder.search()
    inquiry_id = insert_inquiry(admin_engine, therapist_id, [search["id"]], status="answered")
    handle(database, _email_sent(inquiry_id))
    handle(database, _email_sent(2147483000))  # no such inquiry
    assert _inquiry(admin_engine, inquiry_id).status == "answered"
    assert outbox_payloads(admin_engine, "inquiry.sent", inquiry_id) == []


# ---------------------------------------------------------------- follow-ups


def test_a_follow_up_is_due_once_after_seven_days_without_answer(
    builder: MarketBuilder, database: Any, settings: MatchingSettings, admin_engine: sa.Engine
) -> None:
    therapist_id = builder.therapist()
    first, second = builder.search(), builder.search()
    inquiry_id = insert_inquiry(
        admin_engine, therapist_id, [first["id"], second["id"]], sent_at=SENT
    )
    early = _run(database, settings, SENT + timedelta(days=6, hours=23))
    assert inquiry_id not in early.follow_ups_due
    due_at = SENT + timedelta(days=7)
    run = _run(database, settings, due_at)
    assert inquiry_id in run.follow_ups_due and inquiry_id not in run.closed
    again = _run(database, settings, due_at + timedelta(days=1))
    assert inquiry_id not in again.follow_ups_due
    assert _inquiry(admin_engine, inquiry_id).follow_up_due_at == due_at
    (payload,) = outbox_payloads(admin_engine, "inquiry.follow_up_due", inquiry_id)
    assert payload["search_ids"] == [first["id"], second["id"]]
    assert payload["therapist_id"] == therapist_id


def test_an_unanswered_inquiry_closes_after_21_days_and_its_practice_cools(
    builder: MarketBuilder,
    database: Any,
    settings: MatchingSettings,
    admin_engine: sa.Engine,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    therapist_id = builder.therapist()
    search = builder.search()
    inquiry_id = insert_inquiry(admin_engine, therapist_id, [search["id"]], sent_at=SENT)
    closing = SENT + timedelta(days=21)
    # the cron command, as it runs: settings from the environment
    monkeypatch.setenv("MATCHING_SERVICE_DATABASE_URL", role_url(database_url, "matching_service"))
    monkeypatch.setenv("ANSWER_LINK_SECRET", ANSWER_LINK_SECRET)
    assert cli.main(["follow-ups", "--as-of", closing.isoformat()]) == 0
    summary = capsys.readouterr().out
    assert summary.startswith("follow-ups as of 2031-03-23T09:00:00+00:00:")
    assert "inquiries closed without answer" in summary
    row = _inquiry(admin_engine, inquiry_id)
    assert (row.status, row.response_type, row.closed_at) == ("closed", "no_response", closing)
    (closed,) = outbox_payloads(admin_engine, "inquiry.closed", inquiry_id)
    assert closed["response_type"] == "no_response"
    # closed, not followed up in the same run
    assert outbox_payloads(admin_engine, "inquiry.follow_up_due", inquiry_id) == []
    (cooling,) = outbox_payloads(admin_engine, "cooling.started", row.practice_key)
    assert cooling["starts_on"] == "2031-03-23"
    assert cooling["until"] == str((closing + timedelta(days=28)).date())
    assert cooling["inquiry_id"] == inquiry_id
    # the second run changes nothing
    assert inquiry_id not in _run(database, settings, closing).closed
    assert len(outbox_payloads(admin_engine, "inquiry.closed", inquiry_id)) == 1
    assert len(outbox_payloads(admin_engine, "cooling.started", row.practice_key)) == 1


def test_an_answered_or_unsent_inquiry_is_neither_followed_up_nor_closed(
    builder: MarketBuilder, database: Any, settings: MatchingSettings, admin_engine: sa.Engine
) -> None:
    search = builder.search()
    answered = insert_inquiry(
        admin_engine, builder.therapist(), [search["id"]], status="answered", sent_at=SENT
    )
    unsent = insert_inquiry(admin_engine, builder.therapist(), [search["id"]], status="unsent")
    run = _run(database, settings, SENT + timedelta(days=40))
    assert {answered, unsent}.isdisjoint({*run.follow_ups_due, *run.closed})


def test_the_cli_rejects_a_bad_as_of(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["follow-ups", "--as-of", "tomorrow"])
    assert exited.value.code == 2
    assert "not an ISO date or date-time: 'tomorrow'" in capsys.readouterr().err


def test_two_runs_at_once_close_an_inquiry_once(
    builder: MarketBuilder, database: Any, settings: MatchingSettings, admin_engine: sa.Engine
) -> None:
    therapist_id = builder.therapist()
    search = builder.search()
    inquiry_id = insert_inquiry(admin_engine, therapist_id, [search["id"]], sent_at=SENT)
    closing = SENT + timedelta(days=22)
    start = threading.Barrier(2)
    runs: list[Any] = []

    def run() -> None:
        start.wait()
        runs.append(_run(database, settings, closing))

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(inquiry_id in done.closed for done in runs) == [False, True]
    assert len(outbox_payloads(admin_engine, "inquiry.closed", inquiry_id)) == 1
