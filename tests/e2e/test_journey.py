"""One patient's whole journey through the running platform, over REST and the SMTP sink.

A small directory is imported (three practices around Erfurt), four patients are registered
and located there, their searches started and one bundle run writes an inquiry. Its email
arrives with answer links; nobody answers, so eight days later the follow-up call is on the
call list, and staff record the answer they hear on the phone. A second practice accepts the
same patient too late (a conflict with replacement offers), the trial succeeds, and
the search's events, analytics and the contact log show every step. At the end the placed
patient's data is exported from every service, another patient is erased everywhere, and
the audit log names who did it.

Commands the scheduler runs (`send-emails`, `follow-ups --as-of`) are run here directly, with
the environment the stack gives the service, so nothing waits for the next minute.
"""

from __future__ import annotations

import email
import email.policy
import json
import os
import re
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import requests

from shared.devstack import ROOT
from tests.conftest import ADMIN_TOKEN
from tests.e2e.conftest import run_command
from tests.helpers import envelopes, patient_body, read_topic, wait_until

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        not (ROOT.parent / "shared" / "data" / "zipcodes.de.csv").is_file()
        and not os.environ.get("PLZ_DATA"),
        reason="no PLZ data (../shared/data/zipcodes.de.csv or PLZ_DATA): nobody can be located",
    ),
]

HEADERS = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
BERLIN = ZoneInfo("Europe/Berlin")
PLZ = "99084"  # Erfurt: the patients and the first practice
WEEKDAYS = ("Mo", "Di", "Mi", "Do", "Fr")


class Api:
    """Thin REST client of the running stack: asserts the status, returns the JSON."""

    def __init__(self, urls: dict[str, str]) -> None:
        self.urls = urls

    def call(self, method: str, service: str, path: str, status: int = 200, **kwargs: Any) -> Any:
        response = requests.request(
            method, f"{self.urls[service]}{path}", headers=HEADERS, timeout=30, **kwargs
        )
        assert response.status_code == status, f"{method} {path}: {response.text}"
        return response.json()

    def get(self, service: str, path: str, **kwargs: Any) -> Any:
        return self.call("GET", service, path, **kwargs)


def _directory(unique: str) -> dict[str, Any]:
    """A directory file: three one-therapist practices in Erfurt, phone hours every weekday."""
    entries = []
    for letter, postal_code in (("A", PLZ), ("B", "99085"), ("C", "99086")):
        entries.append(
            {
                "id": f"{unique}{letter.lower()}",
                "basic_info": {
                    "salutation": "Frau",
                    "title": "Dr.",
                    "first_name": "Greta",
                    "last_name": f"Reise{unique}{letter}",
                },
                "location": {
                    "street": "Anger",
                    "house_number": "1",
                    "postal_code": postal_code,
                    "city": "Erfurt",
                },
                "contact": {
                    "phone": "0361 1234567",
                    "email": f"praxis.{unique}.{letter.lower()}@example.org",
                    "fax": "",
                },
                "languages": ["Deutsch"],
                "therapy_methods": ["Verhaltenstherapie - Erwachsene"],
                "telephone_hours": {day: ["8:00-18:00"] for day in WEEKDAYS},
            }
        )
    return {
        "metadata": {
            "postal_code": PLZ,
            "city": "Erfurt",
            "scraped_at": datetime.now(UTC).isoformat(),
            "source": "end-to-end journey",
            "total": len(entries),
        },
        "therapists": entries,
    }


def _mails_to(mail_dir: Path, address: str) -> list[email.message.EmailMessage]:
    found = []
    for path in sorted((mail_dir / "new").glob("*")):
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        if address.lower() in str(message["To"]).lower():
            found.append(message)
    return found


def _text(message: email.message.EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain",))
    assert part is not None
    return str(part.get_content())


def test_a_patient_is_placed_from_directory_import_to_successful_trial(
    platform: dict[str, Any],
) -> None:
    api = Api(platform["urls"])
    unique = uuid.uuid4().hex[:8]
    before = api.get("matching", f"/api/analytics/summary?postal_code_prefix={PLZ}")

    # 1. a directory file imported: three practices
    report = api.call("POST", "therapist", "/api/therapist-imports", 201, json=_directory(unique))
    assert report["created"] == 3, report
    therapists = {}
    for letter in "ABC":
        found = api.get("therapist", f"/api/therapists?q=Reise{unique}{letter}")["items"]
        assert len(found) == 1, found
        therapists[letter] = found[0]
    a_id, b_id = therapists["A"]["id"], therapists["B"]["id"]

    # matching knows them, located and contactable
    def contactable(therapist_id: int) -> bool:
        response = requests.get(
            f"{api.urls['matching']}/api/contactability/{therapist_id}", headers=HEADERS
        )
        return response.status_code == 200 and response.json()["contactable"]

    wait_until(lambda: all(contactable(t["id"]) for t in therapists.values()), timeout=60)

    # 2. four patients registered (qualified: contract and payment), located, searching
    patients = [
        api.call(
            "POST",
            "patient",
            "/api/patients",
            201,
            json=patient_body(postal_code=PLZ, last_name=f"Reisende{unique}"),
        )
        for _ in range(4)
    ]

    def start_search(patient_id: int) -> dict[str, Any] | None:
        response = requests.post(
            f"{api.urls['matching']}/api/patient-searches",
            json={"patient_id": patient_id},
            headers=HEADERS,
        )
        if response.status_code == 422:  # geocoding's location.resolved is on its way
            assert response.json()["error"]["details"]["unmet_criteria"] == [
                "location_unresolved"
            ], response.text
            return None
        assert response.status_code in (201, 404), response.text
        return response.json() if response.status_code == 201 else None

    searches = [wait_until(lambda p=p: start_search(p["id"]), timeout=60) for p in patients]
    search_ids = [s["id"] for s in searches]
    first = search_ids[0]
    for patient in patients:
        wait_until(
            lambda p=patient: (
                api.get("patient", f"/api/patients/{p['id']}")["status"] == "searching"
            ),
            timeout=30,
        )

    # 3. a bundle run over the region, for the first practice: one inquiry with all four
    run = api.call(
        "POST",
        "matching",
        "/api/bundle-runs",
        201,
        json={"postal_code_prefix": PLZ, "therapist_ids": [a_id]},
    )
    assert run["inquiries_created"] == 1, run
    (proposed,) = run["inquiries"]
    assert proposed["therapist_id"] == a_id
    assert sorted(proposed["search_ids"]) == sorted(search_ids)
    inquiry_a = proposed["id"]

    # 4. the inquiry email is queued from inquiry.created, sent to the SMTP sink
    def queued() -> bool:
        items = api.get("communication", f"/api/emails?inquiry_id={inquiry_a}&kind=inquiry")
        return bool(items["items"])

    wait_until(queued, timeout=30)
    run_command(platform, "communication_service", "send-emails")
    mail_dir = platform["data_dir"] / "mail"
    address_a = therapists["A"]["email"]
    (message,) = wait_until(lambda: _mails_to(mail_dir, address_a), timeout=30)
    body = _text(message)
    links = re.findall(r"https?://[^\s<>\"]+/answers/[A-Za-z0-9._~-]+/[a-z_]+", body)
    assert len(links) >= 4 * 2, body  # answer links for every patient
    for search_id in search_ids:
        assert f"PS-{search_id}" in body
    page = requests.get(links[0], timeout=10)  # opening a link changes nothing
    assert page.status_code == 200
    assert "PS-" in page.text

    # matching learns from email.sent that the inquiry went out
    sent = wait_until(
        lambda: (i := api.get("matching", f"/api/inquiries/{inquiry_a}"))["status"] == "sent" and i,
        timeout=30,
    )
    sent_at = datetime.fromisoformat(sent["sent_at"])

    # 5. no answer: eight days later the follow-up is due and a call is booked
    as_of = sent_at + timedelta(days=8)
    output = run_command(platform, "matching_service", "follow-ups", "--as-of", as_of.isoformat())
    # (other inquiries of the database may be due too: the run is global)
    due = re.search(r": (\d+) due", output)
    assert due is not None and int(due.group(1)) >= 1, output

    def follow_up_call() -> dict[str, Any] | None:
        day = as_of.astimezone(BERLIN).date()
        for offset in range(10):
            listed = api.get(
                "communication", f"/api/phone-calls?date={day + timedelta(days=offset)}"
            )
            for call in listed["calls"]:
                if call["inquiry_id"] == inquiry_a and call["purpose"] == "follow_up":
                    return call
        return None

    call = wait_until(follow_up_call, timeout=30)
    assert call["status"] == "scheduled"
    assert call["therapist_phone"] == "0361 1234567"
    assert sorted(call["patient_references"]) == sorted(f"PS-{s}" for s in search_ids)

    # 6. meanwhile a second practice gets the first patient offered, by hand
    inquiry_b = api.call(
        "POST",
        "matching",
        "/api/inquiries",
        201,
        json={"therapist_id": b_id, "search_ids": [first, search_ids[1]]},
    )["id"]

    # 7. the call: the first practice takes the first patient, no place for the others
    completed = api.call(
        "PATCH", "communication", f"/api/phone-calls/{call['id']}", json={"outcome": "reached"}
    )
    assert completed["call"]["status"] == "reached"
    assert completed["next_call"] is None
    outcomes = [{"search_id": first, "outcome": "accepted"}] + [
        {"search_id": s, "outcome": "rejected_capacity"} for s in search_ids[1:]
    ]
    answer = api.call(
        "PUT",
        "matching",
        f"/api/inquiries/{inquiry_a}/response",
        json={"response_type": "partial_acceptance", "channel": "phone", "patients": outcomes},
    )
    assert answer["status"] == "answered"
    assert answer["channel"] == "phone"
    assert answer["conflicts"] == []
    claimed = api.get("matching", f"/api/patient-searches/{first}")
    assert claimed["status"] == "in_trial"
    assert claimed["placed_therapist_id"] == a_id

    # the patient is withdrawn from the other open inquiry
    offered_b = api.get("matching", f"/api/inquiries/{inquiry_b}")
    status_b = {p["search_id"]: p["status"] for p in offered_b["patients"]}
    assert status_b == {first: "withdrawn", search_ids[1]: "open"}

    # the practice cools down after its answer
    cooling = api.get("matching", f"/api/contactability/{a_id}")
    assert cooling["contactable"] is False
    assert "cooling" in cooling["reasons"]
    assert date.fromisoformat(cooling["next_contactable_date"]) > datetime.now(UTC).date()

    # 8. the second practice accepts the same patient: a conflict, with replacement offers
    late = api.call(
        "PUT",
        "matching",
        f"/api/inquiries/{inquiry_b}/response",
        json={
            "response_type": "partial_acceptance",
            "channel": "email",
            "patients": [
                {"search_id": first, "outcome": "accepted"},
                {"search_id": search_ids[1], "outcome": "rejected_other"},
            ],
        },
    )
    (conflict,) = late["conflicts"]
    assert conflict["search_id"] == first
    # the two patients not in this inquiry, still searching, are offered instead
    assert sorted(conflict["replacement_offers"]) == sorted(search_ids[2:])
    assert api.get("matching", f"/api/patient-searches/{first}")["placed_therapist_id"] == a_id

    # 9. the trial sessions went well: the patient is in therapy
    done = api.call(
        "POST",
        "matching",
        f"/api/patient-searches/{first}/trial-outcome",
        json={"outcome": "success"},
    )
    assert done["status"] == "successful"
    wait_until(
        lambda: api.get("patient", f"/api/patients/{patients[0]['id']}")["status"] == "in_therapy",
        timeout=30,
    )

    # the search's story on the topic, in order (key = search id: one partition)
    def search_story() -> list[str] | None:
        messages = read_topic(platform["bootstrap"], "search-events", expected=1, timeout=10)
        story = [
            envelope["event_type"]
            for envelope in envelopes(messages)
            if envelope["aggregate_id"] == str(first)
        ]
        return story if "search.succeeded" in story else None

    assert wait_until(search_story, timeout=30) == [
        "search.started",
        "search.claimed",
        "search.succeeded",
    ]

    # 10. analytics count it
    after = api.get("matching", f"/api/analytics/summary?postal_code_prefix={PLZ}")
    grew = {key: after[key] - before[key] for key in _COUNTS}
    assert grew == {
        "searches_started": 4,
        "searches_placed": 1,
        "inquiries_created": 2,
        "inquiries_answered": 2,
        "acceptances": 2,
        "conflicting_acceptances": 1,
        "cooling_violations": 0,
    }

    # 11. the contact log lists both inquiries of the placed patient
    log = api.get("matching", f"/api/patient-searches/{first}/contact-log")
    entries = log["items"] if isinstance(log, dict) else log
    by_inquiry = {entry["inquiry_id"]: entry for entry in entries}
    assert list(by_inquiry) == [inquiry_a, inquiry_b]
    assert by_inquiry[inquiry_a]["sent_via"] == "email"
    assert by_inquiry[inquiry_a]["answer_channel"] == "phone"
    assert by_inquiry[inquiry_a]["outcome"] == "accepted"
    assert by_inquiry[inquiry_a]["conflict"] is False
    assert by_inquiry[inquiry_b]["withdrawn"] is True
    assert by_inquiry[inquiry_b]["conflict"] is True
    csv = requests.get(
        f"{api.urls['matching']}/api/patient-searches/{first}/contact-log?format=csv",
        headers=HEADERS,
        timeout=10,
    )
    assert csv.status_code == 200
    assert csv.text.count("\n") >= 3  # header and both inquiries

    # 12. export gathers every service's part; erasure reaches every service; the audit log
    # says who did each step
    export = api.get("patient", f"/api/patients/{patients[0]['id']}/export")
    assert export["missing"] == []
    parts = export["services"]
    assert set(parts) == {"matching_service", "communication_service", "geocoding_service"}
    assert [search["id"] for search in parts["matching_service"]["searches"]] == [first]
    assert parts["geocoding_service"]["location"]["entity_id"] == patients[0]["id"]
    gone = patients[3]
    erased = api.call("DELETE", "patient", f"/api/patients/{gone['id']}")
    assert erased["status"] == "erased" and erased["email"] is None

    def matching_forgot() -> bool:
        data = api.get("matching", f"/api/patients/{gone['id']}/data")
        return bool(data["searches"]) and all(
            search["status"] == "cancelled" and search["status_reason"] is None
            for search in data["searches"]
        )

    wait_until(matching_forgot, timeout=60)
    wait_until(
        lambda: api.get("geocoding", f"/api/patients/{gone['id']}/data")["location"] is None,
        timeout=60,
    )
    after = json.dumps(api.get("patient", f"/api/patients/{gone['id']}/export"))
    assert gone["first_name"] not in after and gone["email"] not in after
    audit = api.get(
        "patient", f"/api/audit-events?entity_type=patient&entity_id={gone['id']}&per_page=100"
    )
    steps = {(entry["action"], entry["actor"]) for entry in audit["items"]}
    assert {("create", "bootstrap-admin"), ("erase", "bootstrap-admin")} <= steps


_COUNTS = (
    "searches_started",
    "searches_placed",
    "inquiries_created",
    "inquiries_answered",
    "acceptances",
    "conflicting_acceptances",
    "cooling_violations",
)
