"""Answer links under attack (business-rules.md §8): a link that was altered, cut short, signed
with another key, has expired, or names another inquiry's patient answers 4xx to GET and
POST alike, and nothing is recorded - no outcome, no outbox row, no audit entry, no cooling
period - read back from the database. A genuine link afterwards records: the read-back sees
an answer when there is one."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

from tests.answer_support import Spot, client, database, inquiry, settings, spot
from tests.api_support import assert_error_shape
from tests.link_support import link_token, link_url, recorded_state
from tests.reliability.conftest import Tally

__all__ = ["client", "database", "settings", "spot"]  # fixtures

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("clean_outboxes")]

OTHER_SECRET = "another-answer-link-secret-0123456789abcdef"


def _replace(text: str, index: int) -> str:
    """`text` with the character at `index` changed (to another base64 character)."""
    return text[:index] + ("A" if text[index] != "A" else "B") + text[index + 1 :]


def _hostile_links(own: tuple[int, int], other: tuple[int, int]) -> dict[str, tuple[str, int]]:
    """name -> (token, expected status) for the links of inquiry `own` and `other` (each an
    inquiry id and the id of the one search in it)."""
    inquiry_id, search_id = own
    other_inquiry, other_search = other
    valid = link_token(inquiry_id, search_id)
    signed, _, outcome = valid.rpartition("/")
    payload, _, signature = signed.partition(".")
    other_signed = link_token(other_inquiry, other_search).rpartition("/")[0]
    return {
        "payload changed": (f"{_replace(payload, len(payload) // 2)}.{signature}/{outcome}", 400),
        "signature changed": (
            f"{payload}.{_replace(signature, len(signature) // 2)}/{outcome}",
            400,
        ),
        "other inquiry's signature": (f"{payload}.{other_signed.partition('.')[2]}/{outcome}", 400),
        "cut in the payload": (payload[: len(payload) // 2], 400),
        "cut in the signature": (f"{payload}.{signature[:-6]}/{outcome}", 400),
        "without the outcome": (signed, 400),
        "outcome a link cannot give": (f"{signed}/no_show", 400),
        "outcome of staff": (f"{signed}/in_trial_sessions", 400),
        "outcome in capitals": (f"{signed}/{outcome.upper()}", 400),
        "a path after it": (f"{valid}/accepted", 400),
        "signed with another key": (link_token(inquiry_id, search_id, secret=OTHER_SECRET), 400),
        "expired": (link_token(inquiry_id, search_id, days=-1), 410),
        "expired, another key": (
            link_token(inquiry_id, search_id, days=-1, secret=OTHER_SECRET),
            400,
        ),
        "other inquiry's patient": (link_token(inquiry_id, other_search), 404),
        "this patient in the other inquiry": (link_token(other_inquiry, search_id), 404),
        "an inquiry that does not exist": (link_token(2**31 - 2, search_id), 404),
        "not a token": ("not-a-token", 400),
        "a very long token": ("A" * 8000 + "." + "B" * 40 + "/accepted", 400),
        "control characters": ("\x00\x1b" + valid, 400),
        # the route takes no line break: no page, the API's 404 (in the error shape)
        "line breaks": ("\r\n" + valid, 404),
        "not UTF-8 when decoded": ("%FF%FE." + signature + "/accepted", 400),
    }


def test_altered_cut_foreign_expired_and_misdirected_links_record_nothing(
    spot: Spot, client: Any, admin_engine: sa.Engine, tally: Tally
) -> None:
    search, other_search = spot.search(), spot.search()
    inquiry_id = inquiry(admin_engine, spot.therapist(), [search])
    other_inquiry = inquiry(admin_engine, spot.therapist(), [other_search])
    before = recorded_state(admin_engine, inquiry_id)
    other_before = recorded_state(admin_engine, other_inquiry)

    wrong: list[str] = []
    for name, (token, status) in _hostile_links(
        (inquiry_id, search), (other_inquiry, other_search)
    ).items():
        url = link_url(token) if not token.startswith("%") else "/answers/" + token
        for method in (client.get, client.post):
            page = method(url)
            tally.checked += 1
            tally.server_errors += page.status_code >= 500
            text = page.get_data(as_text=True)
            mimetype = "application/json" if name == "line breaks" else "text/html"
            if (page.status_code, page.mimetype) != (status, mimetype):
                wrong.append(f"{name} {method.__name__}: {page.status_code} {page.mimetype}")
            elif mimetype == "application/json":
                assert_error_shape(page.get_json())
            elif "Antwort nicht möglich" not in text or token in text:
                wrong.append(f"{name} {method.__name__}: not the refusal page")
    assert wrong == []
    assert recorded_state(admin_engine, inquiry_id) == before
    assert recorded_state(admin_engine, other_inquiry) == other_before

    # the read-back sees an answer: the genuine link records one
    assert client.post(link_url(link_token(inquiry_id, search))).status_code == 200
    after = recorded_state(admin_engine, inquiry_id)
    assert after["patients"][0][2] == "accepted" and after["inquiry"][0][0] == "answered"
    assert after["outbox"] != before["outbox"] and after["coolings"] != before["coolings"]


def test_links_of_an_answered_patient_change_nothing_more(
    spot: Spot, client: Any, admin_engine: sa.Engine, tally: Tally
) -> None:
    search = spot.search()
    inquiry_id = inquiry(admin_engine, spot.therapist(), [search])
    assert (
        client.post(link_url(link_token(inquiry_id, search, "rejected_capacity"))).status_code
        == 200
    )
    answered = recorded_state(admin_engine, inquiry_id)
    # the same link again, and the links of the other outcomes: shown, never recorded
    for outcome in ("rejected_capacity", "accepted", "rejected_unsuitable", "rejected_other"):
        page = client.post(link_url(link_token(inquiry_id, search, outcome)))
        tally.checked += 1
        tally.server_errors += page.status_code >= 500
        assert page.status_code == 200 and "bereits" in page.get_data(as_text=True), outcome
    assert recorded_state(admin_engine, inquiry_id) == answered
