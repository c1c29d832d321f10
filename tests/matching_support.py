"""Building a small placement market for matching_service's tests: patients, therapists and
their locations fed as the events other services publish (through matching's own handlers),
searches started over the API, and inquiries inserted directly where a test needs one in a
given state before the code that creates them is under test."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from matching_service.handlers import HANDLERS
from matching_service.schemas import THERAPIST_EVENTS
from shared.events import Envelope

# Leipzig's centre; offsets in degrees keep everyone within a few km of it
CENTRE = (51.3397, 12.3731)


def new_id() -> int:
    """A unique entity id (tests share one database)."""
    return 1_000_000 + uuid.uuid4().int % 1_000_000_000


def unique_practice() -> str:
    """A practice key no other test uses (at most 20 characters)."""
    return f"t{uuid.uuid4().hex[:19]}"


def handle(database: Any, envelope: Envelope) -> None:
    """Apply one consumed event as the worker would (own transaction)."""
    with database.unit_of_work() as uow:
        HANDLERS[envelope.event_type](uow, envelope)
        uow.commit()


def patient_event(patient_id: int, version: int = 1, **changes: Any) -> Envelope:
    """patient.created (version 1) / patient.updated of a qualified patient in 04109."""
    from patient_service.schemas import PATIENT_CREATED, PATIENT_UPDATED

    payload = {
        "patient_id": patient_id,
        "version": version,
        "status": "registered",
        "gender": "female",
        "birth_date": "1990-01-01",
        "postal_code": "04109",
        "diagnosis": "F32.1",
        "symptoms": ["low_mood"],
        "availability": {"mon": ["08:00-18:00"], "tue": ["08:00-18:00"]},
        "max_travel_km": 25,
        "travel_mode": "car",
        "preferred_therapist_gender": "any",
        "preferred_therapy_method": "any",
        "open_to_group_therapy": False,
        "group_therapy_only": False,
        "qualified": True,
        "unmet_criteria": [],
        "two_year_rule_flag": False,
        **changes,
    }
    event_type = PATIENT_CREATED if version == 1 else PATIENT_UPDATED
    return event_type.build(producer="patient_service", aggregate_id=patient_id, payload=payload)


def therapist_event(therapist_id: int, version: int = 1, **changes: Any) -> Envelope:
    """therapist.created (version 1) / therapist.updated of an active therapist in 04109."""
    payload = {
        "therapist_id": therapist_id,
        "version": version,
        "status": "active",
        "gender": "female",
        "postal_code": "04109",
        "practice_key": unique_practice(),
        "has_email": True,
        "therapy_methods": ["behavioural"],
        **changes,
    }
    event_type = THERAPIST_EVENTS[0] if version == 1 else THERAPIST_EVENTS[1]
    return event_type.build(
        producer="therapist_service", aggregate_id=therapist_id, payload=payload
    )


def location_event(
    entity_type: str,
    entity_id: int,
    *,
    postal_code: str = "04109",
    lat: float = CENTRE[0],
    lon: float = CENTRE[1],
    version: int = 1,
) -> Envelope:
    """location.resolved of a patient or therapist at (lat, lon)."""
    from geocoding_service.schemas import LOCATION_RESOLVED

    payload = {
        "entity_type": entity_type,
        "entity_id": entity_id,
        "version": version,
        "entity_version": version,
        "postal_code": postal_code,
        "lat": lat,
        "lon": lon,
        "precision": "plz",
        "source": "plz_centroid",
    }
    return LOCATION_RESOLVED.build(
        producer="geocoding_service", aggregate_id=f"{entity_type}-{entity_id}", payload=payload
    )


@dataclass
class MarketBuilder:
    """Adds located patients (with an active search) and therapists to matching."""

    database: Any
    client: Any  # matching's Flask test client
    headers: dict[str, str]

    def therapist(
        self,
        *,
        lat: float = CENTRE[0],
        lon: float = CENTRE[1],
        postal_code: str = "04109",
        **changes: Any,
    ) -> int:
        """A located, active therapist (own practice unless `practice_key` is given)."""
        therapist_id = new_id()
        handle(self.database, therapist_event(therapist_id, postal_code=postal_code, **changes))
        handle(
            self.database,
            location_event("therapist", therapist_id, postal_code=postal_code, lat=lat, lon=lon),
        )
        return therapist_id

    def search(
        self,
        *,
        lat: float = CENTRE[0],
        lon: float = CENTRE[1],
        postal_code: str = "04109",
        **changes: Any,
    ) -> dict[str, Any]:
        """A located, qualified patient with a search started over the API (as shown)."""
        patient_id = new_id()
        handle(self.database, patient_event(patient_id, postal_code=postal_code, **changes))
        handle(
            self.database,
            location_event("patient", patient_id, postal_code=postal_code, lat=lat, lon=lon),
        )
        response = self.client.post(
            "/api/patient-searches", json={"patient_id": patient_id}, headers=self.headers
        )
        assert response.status_code == 201, response.json
        return dict(response.json)


def insert_inquiry(
    engine: sa.Engine,
    therapist_id: int,
    search_ids: list[int],
    *,
    status: str = "sent",
    sent_at: datetime | None = None,
    practice_key: str | None = None,
    origin: str = "manual",
) -> int:
    """An inquiry written directly (superuser engine), its patients open at positions 1..n,
    each search's contact used; `practice_key` defaults to the therapist's."""
    with engine.begin() as connection:
        if practice_key is None:
            practice_key = connection.execute(
                sa.text(
                    "SELECT practice_key FROM matching_service.therapist_projection "
                    "WHERE therapist_id = :id"
                ),
                {"id": therapist_id},
            ).scalar_one()
        inquiry_id = connection.execute(
            sa.text(
                "INSERT INTO matching_service.inquiries (therapist_id, practice_key, origin, "
                "status, original_size, current_size, sent_at, sent_via) VALUES (:t, :p, :o, "
                ":s, :n, :n, :sent_at, CASE WHEN :sent_at IS NULL THEN NULL ELSE 'email' END) "
                "RETURNING id"
            ),
            {
                "t": therapist_id,
                "p": practice_key,
                "o": origin,
                "s": status,
                "n": len(search_ids),
                "sent_at": sent_at,
            },
        ).scalar_one()
        for position, search_id in enumerate(search_ids, start=1):
            connection.execute(
                sa.text(
                    "INSERT INTO matching_service.inquiry_patients (inquiry_id, search_id, "
                    "patient_id, position) SELECT :i, id, patient_id, :pos "
                    "FROM matching_service.patient_searches WHERE id = :s"
                ),
                {"i": inquiry_id, "s": search_id, "pos": position},
            )
            connection.execute(
                sa.text(
                    "UPDATE matching_service.patient_searches "
                    "SET contacts_used = contacts_used + 1 WHERE id = :s"
                ),
                {"s": search_id},
            )
    return int(inquiry_id)
