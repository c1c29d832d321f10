"""Notices to therapists and patients (German, one template each) and the retry figures of
sending."""

from __future__ import annotations

from datetime import timedelta

import pytest

from communication_service.messages import (
    PatientContact,
    TherapistContact,
    patient_greeting,
    patient_notice,
    therapist_notice,
)
from communication_service.service.sending import backoff

THERAPIST = TherapistContact(5, "Herr", "Dr.", "Jörg", "Weiß", "praxis@example.org", None, True)


def test_conflict_notice_lists_each_patient_with_its_replacement_offers() -> None:
    context = {
        "inquiry_id": 12,
        "patients": [
            {"reference": "PS-1", "offers": ["PS-7", "PS-8"]},
            {"reference": "PS-2", "offers": []},
        ],
    }
    rendered = therapist_notice("conflict", context, THERAPIST, platform_phone="030 1")
    assert rendered.subject.startswith("Anfrage 12: Danke für Ihre Zusage")
    assert rendered.text.startswith("Sehr geehrter Herr Dr. Weiß,")
    assert "Referenz PS-1 ist nicht mehr verfügbar" in rendered.text
    assert "Stattdessen suchen diese Personen einen Platz bei Ihnen: PS-7, PS-8" in rendered.text
    assert rendered.text.count("Stattdessen") == 1  # PS-2 had no offers
    assert "<li>Referenz PS-2 ist nicht mehr verfügbar." in rendered.html


def test_withdrawal_notice_says_why_in_words_and_escapes_what_it_shows() -> None:
    context = {"inquiry_id": 3, "reference": "<PS-9>", "reason": "search_cancelled"}
    rendered = therapist_notice("withdrawal", context, THERAPIST, platform_phone="030 1")
    assert "Sie sucht zurzeit keinen Therapieplatz mehr." in rendered.text
    assert "&lt;PS-9&gt;" in rendered.html and "<PS-9>" not in rendered.html


def test_patient_notices_greet_the_patient_and_give_the_count_only() -> None:
    patient = PatientContact(8, None, "Kim", "Özdemir", "kim@example.org", True)
    assert patient_greeting(patient) == "Guten Tag Kim Özdemir,"
    rendered = patient_notice(
        "inquiries_this_week", {"count": 1, "reference": "PS-4"}, patient, platform_phone="030 1"
    )
    assert rendered.subject == "Ihre Suche (PS-4): 1 Praxis in dieser Woche angefragt"
    assert "in dieser Woche haben wir 1 Praxis für Sie" in rendered.text


def test_a_kind_goes_only_to_its_own_recipients() -> None:
    with pytest.raises(ValueError, match="not a therapist notice"):
        therapist_notice("place_found", {}, THERAPIST, platform_phone="030 1")


def test_retries_wait_one_two_four_minutes_and_at_most_an_hour() -> None:
    assert [backoff(n) for n in (1, 2, 3)] == [timedelta(minutes=m) for m in (1, 2, 4)]
    assert backoff(20) == timedelta(hours=1)
