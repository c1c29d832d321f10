"""Inquiry emails in German: greeting, introduction, one block per patient with its links,
escaping of anything that could become markup, and a subject that cannot inject headers."""

from __future__ import annotations

from typing import Any

from communication_service.messages import TherapistContact, greeting, inquiry_email

THERAPIST = TherapistContact(
    therapist_id=1,
    salutation="Frau",
    title="Dr.",
    first_name="Erika",
    last_name="Müller",
    email="praxis@example.org",
    phone="0341 123",
    informed_about_platform=False,
)


def _patient(position: int, **changes: Any) -> dict[str, Any]:
    summary = {
        "search_id": 100 + position,
        "patient_id": 900 + position,
        "reference": f"PS-{100 + position}",
        "position": position,
        "age": 34,
        "gender": "female",
        "diagnosis": "F32.1",
        "symptoms": ["low_mood", "sleep_problems"],
        "insurer_type": "statutory",
        "availability": {"mon": ["08:00-12:00"], "thu": ["14:00-18:00"]},
        "distance_km": 3.25,
        "two_year_rule_flag": False,
        "answer_links": {
            outcome: f"https://match.example/answers/tok-{position}-{outcome}"
            for outcome in ("accepted", "rejected_capacity", "rejected_unsuitable", "no_show")
        },
    }
    summary.update(changes)
    return summary


def _inquiry(*patients: dict[str, Any]) -> dict[str, Any]:
    return {
        "inquiry_id": 7,
        "patients": list(patients),
        "answer_links_valid_until": "2026-12-21T10:00:00+00:00",
    }


def test_greetings_follow_salutation_and_title() -> None:
    assert greeting(THERAPIST) == "Sehr geehrte Frau Dr. Müller,"
    herr = TherapistContact(2, "Herr", None, "Max", "Schmidt", None, None, True)
    assert greeting(herr) == "Sehr geehrter Herr Schmidt,"
    neutral = TherapistContact(3, None, None, "Kim", "Lee", None, None, True)
    assert greeting(neutral) == "Guten Tag Kim Lee,"


def test_inquiry_email_lists_every_patient_in_position_order_with_links() -> None:
    email = inquiry_email(_inquiry(_patient(2), _patient(1)), THERAPIST, platform_phone="0800 1")
    assert email.subject == "Anfrage 7: 2 Patientinnen und Patienten suchen einen Therapieplatz"
    for part in (email.text, email.html):
        assert part.index("Referenz PS-101") < part.index("Referenz PS-102")
        assert "gedrückte Stimmung, Schlafstörungen" in part
        assert "gesetzlich versichert" in part and "3,2 km" in part
        assert "Mo 08:00-12:00; Do 14:00-18:00" in part
        assert "https://match.example/answers/tok-1-accepted" in part
        assert "21.12.2026" in part
        assert "0800 1" in part
    # no_show is recorded by staff later, never offered as a link
    assert "tok-1-no_show" not in email.text and "tok-1-no_show" not in email.html
    assert '<a href="https://match.example/answers/tok-2-rejected_capacity">' in email.html


def test_the_platform_is_introduced_only_to_therapists_who_do_not_know_it() -> None:
    first = inquiry_email(_inquiry(_patient(1)), THERAPIST, platform_phone="0800 1")
    informed = TherapistContact(1, "Frau", "Dr.", "Erika", "Müller", None, None, True)
    again = inquiry_email(_inquiry(_patient(1)), informed, platform_phone="0800 1")
    assert "Vermittlungsstelle" in first.text and "Vermittlungsstelle" in first.html
    assert "Vermittlungsstelle" not in again.text and "Vermittlungsstelle" not in again.html
    # the sentence after the introduction starts a paragraph; after the greeting it does not
    assert "\n\nDie folgende Person sucht" in first.text
    assert "\n\ndie folgende Person sucht" in again.text
    assert first.subject.startswith("Anfrage 7: 1 Patientin/Patient")


def test_the_two_year_flag_is_shown() -> None:
    email = inquiry_email(
        _inquiry(_patient(1, two_year_rule_flag=True)), THERAPIST, platform_phone="0800 1"
    )
    assert "Gutachterverfahren" in email.text and "Gutachterverfahren" in email.html


def test_markup_in_any_field_is_escaped_in_html() -> None:
    hostile = "<script>alert(1)</script>"
    patient = _patient(1, diagnosis=hostile, symptoms=[hostile], reference='PS-1"><b>')
    therapist = TherapistContact(
        1, "Frau", None, "E", "<img src=x onerror=alert(1)>", None, None, True
    )
    email = inquiry_email(_inquiry(patient), therapist, platform_phone="<b>0800</b>")
    assert "<script>" not in email.html and "<img" not in email.html and "<b>" not in email.html
    assert "&lt;script&gt;" in email.html
    assert hostile in email.text  # plain text is not HTML: shown as typed


def test_a_line_break_cannot_reach_the_subject() -> None:
    inquiry = _inquiry(_patient(1))
    inquiry["inquiry_id"] = "7\r\nBcc: victim@example.org"
    email = inquiry_email(inquiry, THERAPIST, platform_phone="0800 1")
    assert "\r" not in email.subject and "\n" not in email.subject
