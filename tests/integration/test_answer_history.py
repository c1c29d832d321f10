"""Answer histories read from the inquiries for the bundler, against a real PostgreSQL."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from matching_service.app import create_app as create_matching_app
from matching_service.bundling.model import HistoryEntry
from matching_service.models import INFRA as MATCHING_INFRA
from matching_service.service import market
from matching_service.service.history import answer_histories
from matching_service.settings import MatchingSettings
from shared.runtime import ServiceRuntime
from tests.matching_support import MarketBuilder, insert_inquiry

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("clean_outboxes")]

TODAY = date(2026, 11, 30)


@pytest.fixture
def database(make_settings: Any) -> Any:
    database = ServiceRuntime.build(make_settings(MatchingSettings), MATCHING_INFRA).database
    yield database
    database.dispose()


@pytest.fixture
def builder(make_settings: Any, database: Any, admin_headers: dict[str, str]) -> MarketBuilder:
    client = create_matching_app(make_settings(MatchingSettings)).test_client()
    return MarketBuilder(database, client, admin_headers)


def _at(days_before: int, hour: int = 10) -> datetime:
    return datetime.combine(TODAY - timedelta(days=days_before), datetime.min.time(), UTC).replace(
        hour=hour
    )


def _answer(
    engine: sa.Engine,
    inquiry_id: int,
    answered_at: datetime | None,
    outcomes: dict[int, str],
    *,
    status: str = "answered",
    response_type: str | None = "answered",
) -> None:
    with engine.begin() as connection:
        connection.execute(
            sa.text(
                "UPDATE matching_service.inquiries SET status = :s, answered_at = :a, "
                "response_type = :r WHERE id = :i"
            ),
            {"s": status, "a": answered_at, "r": response_type, "i": inquiry_id},
        )
        for search_id, outcome in outcomes.items():
            connection.execute(
                sa.text(
                    "UPDATE matching_service.inquiry_patients SET status = 'answered', "
                    "outcome = :o WHERE inquiry_id = :i AND search_id = :s"
                ),
                {"o": outcome, "i": inquiry_id, "s": search_id},
            )


def _histories(database: Any, therapist_ids: list[int] | None, limit: int = 10) -> dict:
    with database.session() as session:
        return answer_histories(session, therapist_ids, limit)


def test_history_counts_outcomes_per_inquiry_newest_first(
    builder: MarketBuilder, database: Any, admin_engine: sa.Engine
) -> None:
    therapist_id = builder.therapist()
    a, b, c, d = (builder.search()["id"] for _ in range(4))
    oldest = insert_inquiry(
        admin_engine, therapist_id, [a, b, c], status="answered", sent_at=_at(90)
    )
    _answer(admin_engine, oldest, _at(88), {a: "rejected_capacity", b: "rejected_capacity"})
    closed = insert_inquiry(admin_engine, therapist_id, [a, b], status="closed", sent_at=_at(60))
    # closed without an answer: the closing time is no answer
    _answer(admin_engine, closed, _at(46), {}, status="closed", response_type="no_response")
    answered = insert_inquiry(
        admin_engine, therapist_id, [a, b, c, d], status="answered", sent_at=_at(30)
    )
    _answer(
        admin_engine,
        answered,
        # late in the evening UTC: the day is the UTC day
        _at(27, hour=23),
        {a: "accepted", b: "rejected_unsuitable", c: "rejected_other", d: "no_show"},
    )
    insert_inquiry(admin_engine, therapist_id, [c, d], sent_at=_at(2))  # still open
    insert_inquiry(admin_engine, therapist_id, [a], status="closed", sent_at=None)  # never sent

    history = _histories(database, [therapist_id])[therapist_id]

    assert history == (
        HistoryEntry(TODAY - timedelta(2), None, 2, 0, 0, 0),
        HistoryEntry(TODAY - timedelta(30), TODAY - timedelta(27), 4, 2, 0, 2),
        HistoryEntry(TODAY - timedelta(60), None, 2, 0, 0, 0),
        HistoryEntry(TODAY - timedelta(90), TODAY - timedelta(88), 3, 0, 2, 0),
    )


def test_history_keeps_the_newest_entries_per_therapist(
    builder: MarketBuilder, database: Any, admin_engine: sa.Engine
) -> None:
    first, second, silent = builder.therapist(), builder.therapist(), builder.therapist()
    search = builder.search()["id"]
    for days in (50, 40, 30, 20):
        inquiry = insert_inquiry(
            admin_engine, first, [search], status="answered", sent_at=_at(days)
        )
        _answer(admin_engine, inquiry, _at(days - 1), {search: "rejected_capacity"})
    insert_inquiry(admin_engine, second, [search], sent_at=_at(5))

    histories = _histories(database, [first, second, silent], limit=3)

    assert [e.sent_on for e in histories[first]] == [TODAY - timedelta(d) for d in (20, 30, 40)]
    assert len(histories[second]) == 1
    assert silent not in histories
    assert second not in _histories(database, [first])
    assert _histories(database, []) == {}
    everyone = _histories(database, None)  # default limit 10
    assert len(everyone[first]) == 4 and everyone[first][:3] == histories[first]


def test_the_bundler_input_carries_flag_and_history(
    builder: MarketBuilder, database: Any, admin_engine: sa.Engine
) -> None:
    flagged = builder.therapist(potentially_available=True)
    plain = builder.therapist()
    search = builder.search()["id"]
    inquiry = insert_inquiry(admin_engine, flagged, [search], status="answered", sent_at=_at(9))
    _answer(admin_engine, inquiry, _at(8), {search: "accepted"})

    with database.session() as session:
        loaded = {
            t.therapist_id: t
            for t in market.load_therapists(session, TODAY, therapist_ids=[flagged, plain])
        }

    assert loaded[flagged].potentially_available is True
    assert loaded[flagged].answer_history == (
        HistoryEntry(TODAY - timedelta(9), TODAY - timedelta(8), 1, 1, 0, 0),
    )
    assert loaded[plain].potentially_available is False
    assert loaded[plain].answer_history == ()
