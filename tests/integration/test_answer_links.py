"""Answer links (business-rules.md §8): a therapist answers without an account through signed,
expiring links; GET only shows, POST records once, with the effects of a recorded answer."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from matching_service.placement.links import sign_link
from tests.answer_support import (
    Spot,
    client,
    database,
    events,
    inquiry,
    inquiry_patient,
    one,
    put_answer,
    search_row,
    settings,
    spot,
)
from tests.conftest import ANSWER_LINK_SECRET

__all__ = ["client", "database", "settings", "spot"]  # fixtures

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("clean_outboxes")]


def _link(inquiry_id: int, search_id: int, outcome: str, days: float = 7) -> str:
    expires = datetime.now(UTC) + timedelta(days=days)
    return f"/answers/{sign_link(ANSWER_LINK_SECRET, inquiry_id, search_id, outcome, expires)}"


def _inquiry_row(engine: sa.Engine, inquiry_id: int) -> Any:
    return one(
        engine,
        "SELECT status, answered_at, response_type, channel FROM matching_service.inquiries "
        "WHERE id = :id",
        id=inquiry_id,
    )


def _coolings(engine: sa.Engine, inquiry_id: int) -> int:
    return int(
        one(
            engine,
            "SELECT count(*) AS n FROM matching_service.cooling_periods WHERE inquiry_id = :id",
            id=inquiry_id,
        ).n
    )


def _text(response: Any) -> str:
    return str(response.get_data(as_text=True))


def test_opening_a_link_shows_the_answer_and_changes_nothing(
    spot: Spot, client: Any, admin_engine: sa.Engine
) -> None:
    search = spot.search()
    inquiry_id = inquiry(admin_engine, spot.therapist(), [search])
    url = _link(inquiry_id, search, "rejected_capacity")
    for _ in range(2):  # a mail scanner first, then the therapist
        page = client.get(url)  # no bearer token: the link is the authority
        assert page.status_code == 200 and page.mimetype == "text/html"
        text = _text(page)
        assert f"PS-{search}" in text and "derzeit kein freier Platz" in text
        assert '<form method="post">' in text
        assert "form-action 'self'" in page.headers["Content-Security-Policy"]
        assert page.headers["Cache-Control"] == "no-store"
    assert inquiry_patient(admin_engine, inquiry_id, search).outcome is None
    assert _inquiry_row(admin_engine, inquiry_id).status == "sent"
    assert events(admin_engine, "inquiry.answered", inquiry_id) == []


def test_confirming_a_link_records_the_answer_once(
    spot: Spot, client: Any, admin_engine: sa.Engine
) -> None:
    therapist = spot.therapist()
    first, second = spot.search(), spot.search()
    other = inquiry(admin_engine, spot.therapist(), [first])
    inquiry_id = inquiry(admin_engine, therapist, [first, second])

    accepted = client.post(_link(inquiry_id, first, "accepted"))
    assert accepted.status_code == 200
    assert "gespeichert" in _text(accepted)
    row = _inquiry_row(admin_engine, inquiry_id)
    assert (row.status, row.channel, row.response_type) == ("answered", "link", "full_acceptance")
    assert search_row(admin_engine, first).placed_therapist_id == therapist
    assert inquiry_patient(admin_engine, other, first).status == "withdrawn"
    assert inquiry_patient(admin_engine, inquiry_id, second).outcome is None
    assert _coolings(admin_engine, inquiry_id) == 1

    # the second click, or a link of another outcome for the same patient, changes nothing
    for url in (_link(inquiry_id, first, "accepted"), _link(inquiry_id, first, "rejected_other")):
        repeated = client.post(url)
        assert repeated.status_code == 200
        assert "bereits" in _text(repeated) and "Zusage" in _text(repeated)
    assert inquiry_patient(admin_engine, inquiry_id, first).outcome == "accepted"
    assert len(events(admin_engine, "inquiry.answered", inquiry_id)) == 1
    shown = client.get(_link(inquiry_id, first, "rejected_other"))
    assert "bereits erhalten" in _text(shown) and "<form" not in _text(shown)

    # another patient's link fills its outcome: no second cooling, the response type follows
    assert client.post(_link(inquiry_id, second, "rejected_unsuitable")).status_code == 200
    row = _inquiry_row(admin_engine, inquiry_id)
    assert row.response_type == "partial_acceptance"
    assert inquiry_patient(admin_engine, inquiry_id, second).outcome == "rejected_unsuitable"
    assert _coolings(admin_engine, inquiry_id) == 1
    latest = events(admin_engine, "inquiry.answered", inquiry_id)[-1]
    assert {p["search_id"]: p["outcome"] for p in latest["patients"]} == {
        first: "accepted",
        second: "rejected_unsuitable",
    }


def test_a_link_acceptance_after_a_claim_shows_the_conflict_and_replacements(
    spot: Spot, client: Any, admin_headers: dict[str, str], admin_engine: sa.Engine
) -> None:
    patient = spot.search()
    spare = spot.search()
    won = inquiry(admin_engine, spot.therapist(), [patient])
    lost = inquiry(admin_engine, spot.therapist(), [patient])
    assert put_answer(client, admin_headers, won, {patient: "accepted"}).status_code == 200
    page = client.post(_link(lost, patient, "accepted"))
    assert page.status_code == 200
    assert "inzwischen einen Therapieplatz" in _text(page) and f"PS-{spare}" in _text(page)
    row = inquiry_patient(admin_engine, lost, patient)
    assert (row.status, row.conflict, row.replacement_offers) == ("withdrawn", True, [spare])


def test_a_put_completes_an_inquiry_answered_partly_by_links(
    spot: Spot, client: Any, admin_headers: dict[str, str], admin_engine: sa.Engine
) -> None:
    first, second = spot.search(), spot.search()
    inquiry_id = inquiry(admin_engine, spot.therapist(), [first, second])
    assert client.post(_link(inquiry_id, first, "rejected_capacity")).status_code == 200

    contradicting = put_answer(
        client, admin_headers, inquiry_id, {first: "accepted", second: "accepted"}
    )
    assert contradicting.status_code == 409
    completed = put_answer(
        client, admin_headers, inquiry_id, {first: "rejected_capacity", second: "no_show"}
    )
    assert completed.status_code == 200, completed.json
    assert {p["search_id"]: p["outcome"] for p in completed.json["patients"]} == {
        first: "rejected_capacity",
        second: "no_show",
    }
    assert completed.json["response_type"] == "full_rejection"
    assert _coolings(admin_engine, inquiry_id) == 1


def test_tampered_malformed_expired_and_unknown_links_record_nothing(
    spot: Spot, client: Any, admin_engine: sa.Engine
) -> None:
    search = spot.search()
    inquiry_id = inquiry(admin_engine, spot.therapist(), [search])
    valid = _link(inquiry_id, search, "accepted")
    tampered = valid[:-3] + ("AAA" if not valid.endswith("AAA") else "BBB")
    cases = {
        tampered: 400,
        "/answers/not-a-token": 400,
        _link(inquiry_id, search, "accepted", days=-1): 410,
        _link(2**31 - 2, search, "accepted"): 404,
        _link(inquiry_id, search + 10_000_000, "accepted"): 404,
    }
    for url, status in cases.items():
        for method in (client.get, client.post):
            page = method(url)
            assert page.status_code == status, url
            assert page.mimetype == "text/html" and "Antwort nicht möglich" in _text(page)
    assert search_row(admin_engine, search).status == "active"
    assert _inquiry_row(admin_engine, inquiry_id).status == "sent"


def test_a_link_of_an_inquiry_closed_without_response_records_nothing(
    spot: Spot, client: Any, admin_engine: sa.Engine
) -> None:
    search = spot.search()
    inquiry_id = inquiry(admin_engine, spot.therapist(), [search], status="closed")
    page = client.post(_link(inquiry_id, search, "accepted"))
    assert page.status_code == 409 and "geschlossen" in _text(page)
    assert search_row(admin_engine, search).status == "active"


def test_the_api_beside_the_links_still_needs_a_token(client: Any) -> None:
    assert client.put("/api/inquiries/1/response", json={}).status_code == 401
