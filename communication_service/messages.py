"""Messages to therapists, rendered from Jinja2 templates in German (text and HTML).

Pure: the caller passes the event's anonymised patient summaries and the therapist's contact
data (fetched over REST when sending). HTML is autoescaped, so text a patient or staff typed
can never become markup; the text part is rendered without HTML escaping.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from typing import Any
from zoneinfo import ZoneInfo

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

WEEKDAY_NAMES = {
    "mon": "Mo",
    "tue": "Di",
    "wed": "Mi",
    "thu": "Do",
    "fri": "Fr",
    "sat": "Sa",
    "sun": "So",
}
GENDER_NAMES = {
    "female": "weiblich",
    "male": "männlich",
    "diverse": "divers",
    "unspecified": "ohne Angabe",
}
INSURER_NAMES = {
    "statutory": "gesetzlich versichert",
    "private": "privat versichert",
    "unknown": "unbekannt",
}
SYMPTOM_NAMES = {
    "low_mood": "gedrückte Stimmung",
    "loss_of_interest": "Interessenverlust",
    "anxiety": "Ängste",
    "panic_attacks": "Panikattacken",
    "social_anxiety": "soziale Ängste",
    "sleep_problems": "Schlafstörungen",
    "exhaustion": "Erschöpfung",
    "concentration_problems": "Konzentrationsprobleme",
    "compulsions": "Zwänge",
    "trauma_consequences": "Traumafolgen",
    "grief": "Trauer",
    "relationship_problems": "Beziehungsprobleme",
    "eating_problems": "Essstörungen",
    "addiction": "Sucht",
    "self_harm_thoughts": "Selbstverletzungsgedanken",
    "psychosomatic_complaints": "psychosomatische Beschwerden",
    "social_withdrawal": "sozialer Rückzug",
    "stress": "Stress",
    "anger": "Wut",
    "loneliness": "Einsamkeit",
}
BERLIN = ZoneInfo("Europe/Berlin")
# the answers offered in an inquiry email, in this order (no_show and in_trial_sessions are
# recorded later by staff)
LINK_OUTCOMES = {
    "accepted": "Ich kann einen Platz anbieten",
    "rejected_capacity": "Zurzeit kein Platz frei",
    "rejected_unsuitable": "Passt fachlich nicht",
    "rejected_other": "Absage aus anderem Grund",
}


@dataclass(frozen=True, slots=True)
class TherapistContact:
    """What a message to a therapist needs from therapist_service (fetched when sending)."""

    therapist_id: int
    salutation: str | None
    title: str | None
    first_name: str
    last_name: str
    email: str | None
    phone: str | None
    informed_about_platform: bool
    phone_hours: Mapping[str, Sequence[str]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PatientContact:
    """What a message to a patient needs from patient_service (fetched when sending)."""

    patient_id: int
    salutation: str | None
    first_name: str
    last_name: str
    email: str | None
    # patients are written to only with their consent on record
    consented: bool


@dataclass(frozen=True, slots=True)
class RenderedEmail:
    """Subject, plain text and HTML of one email."""

    subject: str
    text: str
    html: str


def greeting(therapist: TherapistContact) -> str:
    """German salutation line: 'Sehr geehrte Frau Dr. Muster,' or a neutral one."""
    name = " ".join(part for part in (therapist.title, therapist.last_name) if part)
    if therapist.salutation == "Frau":
        return f"Sehr geehrte Frau {name},"
    if therapist.salutation == "Herr":
        return f"Sehr geehrter Herr {name},"
    return f"Guten Tag {therapist.first_name} {therapist.last_name},"


def _weekly(availability: Mapping[str, Sequence[str]]) -> str:
    parts = [
        f"{label} {', '.join(availability[day])}"
        for day, label in WEEKDAY_NAMES.items()
        if availability.get(day)
    ]
    return "; ".join(parts) or "keine Angabe"


def _distance(km: float | None) -> str:
    return "unbekannt" if km is None else f"{km:.1f}".replace(".", ",") + " km"


def _german_date(value: str | datetime | None) -> str | None:
    if value is None:
        return None
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    return moment.astimezone(BERLIN).strftime("%d.%m.%Y")


def patient_block(summary: Mapping[str, Any]) -> dict[str, Any]:
    """One patient of an inquiry as the templates show it (German labels, links in order)."""
    links = summary.get("answer_links", {})
    return {
        "reference": summary["reference"],
        "position": summary["position"],
        "age": summary["age"],
        "gender": GENDER_NAMES.get(summary["gender"], summary["gender"]),
        "diagnosis": summary.get("diagnosis") or "keine Angabe",
        "symptoms": ", ".join(SYMPTOM_NAMES.get(s, s) for s in summary.get("symptoms", []))
        or "keine Angabe",
        "insurer": INSURER_NAMES.get(summary.get("insurer_type", "unknown"), "unbekannt"),
        "availability": _weekly(summary.get("availability", {})),
        "distance": _distance(summary.get("distance_km")),
        "two_year_rule": bool(summary.get("two_year_rule_flag")),
        "links": [
            (label, links[outcome]) for outcome, label in LINK_OUTCOMES.items() if outcome in links
        ],
    }


@cache
def _environment() -> Environment:
    return Environment(
        loader=PackageLoader("communication_service", "templates"),
        autoescape=select_autoescape(enabled_extensions=("html",), default=False),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def render(name: str, context: Mapping[str, Any]) -> RenderedEmail:
    """Render `<name>.subject.txt`, `<name>.txt` and `<name>.html` with one context."""
    env = _environment()
    subject = env.get_template(f"{name}.subject.txt").render(context).strip()
    return RenderedEmail(
        subject=" ".join(subject.split()),  # no header injection through a line break
        text=env.get_template(f"{name}.txt").render(context),
        html=env.get_template(f"{name}.html").render(context),
    )


def inquiry_email(
    inquiry: Mapping[str, Any], therapist: TherapistContact, *, platform_phone: str
) -> RenderedEmail:
    """The inquiry email of `inquiry.created` for its therapist."""
    patients = sorted(inquiry["patients"], key=lambda p: p["position"])
    return render(
        "inquiry",
        {
            "greeting": greeting(therapist),
            "introduce_platform": not therapist.informed_about_platform,
            "inquiry_id": inquiry["inquiry_id"],
            "patients": [patient_block(p) for p in patients],
            "valid_until": _german_date(inquiry.get("answer_links_valid_until")),
            "platform_phone": platform_phone,
        },
    )


WITHDRAWAL_REASONS = {
    "claimed_elsewhere": "Sie hat inzwischen bei einer anderen Praxis einen Platz gefunden.",
    "search_succeeded": "Sie hat inzwischen bei einer anderen Praxis einen Platz gefunden.",
    "search_cancelled": "Sie sucht zurzeit keinen Therapieplatz mehr.",
}
# the kinds written to therapists and to patients, each with its own template
THERAPIST_NOTICES = ("withdrawal", "conflict")
PATIENT_NOTICES = ("search_started", "inquiries_this_week", "place_found")


def therapist_notice(
    kind: str, context: Mapping[str, Any], therapist: TherapistContact, *, platform_phone: str
) -> RenderedEmail:
    """A withdrawal or conflict notice to a therapist (context as queued from the event)."""
    if kind not in THERAPIST_NOTICES:
        raise ValueError(f"not a therapist notice: {kind}")
    why = WITHDRAWAL_REASONS.get(
        str(context.get("reason")), "Sie wird über diese Anfrage nicht mehr vermittelt."
    )
    return render(
        kind,
        {**context, "greeting": greeting(therapist), "why": why, "platform_phone": platform_phone},
    )


def patient_greeting(patient: PatientContact) -> str:
    """German salutation line for a patient."""
    if patient.salutation == "Frau":
        return f"Sehr geehrte Frau {patient.last_name},"
    if patient.salutation == "Herr":
        return f"Sehr geehrter Herr {patient.last_name},"
    return f"Guten Tag {patient.first_name} {patient.last_name},"


def patient_notice(
    kind: str, context: Mapping[str, Any], patient: PatientContact, *, platform_phone: str
) -> RenderedEmail:
    """A notification to a patient: search started, inquiries this week, place found."""
    if kind not in PATIENT_NOTICES:
        raise ValueError(f"not a patient notice: {kind}")
    return render(
        kind, {**context, "greeting": patient_greeting(patient), "platform_phone": platform_phone}
    )
