"""A search's contact log: every inquiry its patient was in and what came of it, the
evidence a patient sends the insurer for a private-practice therapy (§13(3) SGB V)."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select

from matching_service.models import Inquiry, InquiryPatient, PatientSearch
from shared.db import UnitOfWork
from shared.errors import NotFound


def contact_log(uow: UnitOfWork, search_id: int) -> list[dict[str, Any]]:
    """The search's inquiries, oldest first, with this patient's outcome (one query);
    NotFound for an unknown search."""
    i, ip = Inquiry, InquiryPatient
    with uow:
        if uow.session.get(PatientSearch, search_id) is None:
            raise NotFound(f"patient search {search_id} does not exist")
        rows = uow.session.execute(
            select(
                i.id.label("inquiry_id"),
                i.therapist_id,
                i.created_at,
                i.status.label("inquiry_status"),
                i.sent_at,
                i.sent_via,
                i.answered_at,
                i.channel.label("answer_channel"),
                ip.outcome,
                i.closed_at,
                (ip.status == "withdrawn").label("withdrawn"),
                ip.withdrawn_at,
                ip.conflict,
            )
            .join(ip, ip.inquiry_id == i.id)
            .where(ip.search_id == search_id)
            .order_by(i.created_at, i.id)
        )
        return [dict(row._mapping) for row in rows]


# The insurer reads German: semicolons (what Excel expects here), local dates, plain words.
_LOCAL = ZoneInfo("Europe/Berlin")
_HEADER = (
    "Anfrage-Nr.",
    "Therapeut-ID",
    "Anfrage erstellt am",
    "Versendet am",
    "Versandweg",
    "Antwort am",
    "Antwortweg",
    "Ergebnis",
    "Patient zurückgezogen am",
    "Konflikt",
)
_CHANNELS = {"email": "E-Mail", "phone": "Telefon", "link": "Antwort-Link"}
_OUTCOMES = {
    "accepted": "Zusage",
    "rejected_capacity": "Absage: keine Kapazität",
    "rejected_unsuitable": "Absage: passt nicht",
    "rejected_other": "Absage: anderer Grund",
    "no_show": "Nicht erschienen",
    "in_trial_sessions": "In probatorischen Sitzungen",
}


def contact_log_csv(entries: Sequence[dict[str, Any]]) -> str:
    """The log as CSV with a header row (UTF-8 with BOM is the caller's encoding choice)."""
    out = io.StringIO()
    writer = csv.writer(out, delimiter=";", lineterminator="\r\n")
    writer.writerow(_HEADER)
    for entry in entries:
        writer.writerow(
            (
                entry["inquiry_id"],
                entry["therapist_id"],
                _day(entry["created_at"]),
                _day(entry["sent_at"]),
                _CHANNELS.get(entry["sent_via"] or "", ""),
                _day(entry["answered_at"]),
                _CHANNELS.get(entry["answer_channel"] or "", ""),
                _result(entry),
                _day(entry["withdrawn_at"]) if entry["withdrawn"] else "",
                "ja" if entry["conflict"] else "nein",
            )
        )
    return out.getvalue()


def _day(moment: datetime | None) -> str:
    return moment.astimezone(_LOCAL).strftime("%d.%m.%Y") if moment is not None else ""


def _result(entry: dict[str, Any]) -> str:
    if entry["outcome"] is not None:
        return _OUTCOMES[entry["outcome"]]
    if entry["withdrawn"]:
        return "Patient zurückgezogen"
    if entry["inquiry_status"] == "closed":
        return "Keine Antwort"
    if entry["inquiry_status"] == "unsent":
        return "Noch nicht versendet"
    return "Antwort ausstehend"
