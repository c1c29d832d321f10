"""Contact data of therapists and patients, read over REST from the services that own it
when a message is sent or a call is listed (never taken from events, never stored early)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import requests

from communication_service.messages import PatientContact, TherapistContact
from communication_service.settings import CommunicationSettings


class ContactUnavailable(Exception):
    """The owning service could not answer now (down, timeout, 5xx): try again later."""


@dataclass(frozen=True)
class ContactDirectory:
    """Reads contact data from therapist_service and patient_service with the service token."""

    therapist_service_url: str
    patient_service_url: str
    service_token: str
    timeout_seconds: float = 5.0

    def therapist(self, therapist_id: int) -> TherapistContact | None:
        """The therapist's contact data, or None when therapist_service does not know them."""
        data = self._get(f"{self.therapist_service_url}/api/therapists/{therapist_id}")
        if data is None:
            return None
        return _therapist_contact(therapist_id, data)

    def therapists(self, therapist_ids: Iterable[int]) -> dict[int, TherapistContact]:
        """The contact data of many therapists, 100 per request (those therapist_service
        does not know are left out)."""
        wanted = sorted(set(therapist_ids))
        found: dict[int, TherapistContact] = {}
        for start in range(0, len(wanted), 100):
            chunk = wanted[start : start + 100]
            query = "&".join(f"id={therapist_id}" for therapist_id in chunk)
            url = f"{self.therapist_service_url}/api/therapists?{query}&per_page=100"
            data = self._get(url)
            for item in (data or {}).get("items", []):
                contact = _therapist_contact(int(item["id"]), item)
                found[contact.therapist_id] = contact
        return found

    def patient(self, patient_id: int) -> PatientContact | None:
        """The patient's contact data, or None when patient_service does not know them."""
        data = self._get(f"{self.patient_service_url}/api/patients/{patient_id}")
        if data is None:
            return None
        return PatientContact(
            patient_id=patient_id,
            salutation=data.get("salutation"),
            first_name=data.get("first_name") or "",
            last_name=data.get("last_name") or "",
            email=data.get("email"),
            consented=data.get("consent_at") is not None,
        )

    def _get(self, url: str) -> dict[str, Any] | None:
        try:
            response = requests.get(
                url,
                headers={"Authorization": f"Bearer {self.service_token}"},
                timeout=self.timeout_seconds,
            )
        except requests.RequestException as exc:
            raise ContactUnavailable(f"{url}: {type(exc).__name__}") from exc
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise ContactUnavailable(f"{url}: HTTP {response.status_code}")
        body = response.json()
        if not isinstance(body, dict):
            raise ContactUnavailable(f"{url}: not a JSON object")
        return body


def _therapist_contact(therapist_id: int, data: dict[str, Any]) -> TherapistContact:
    return TherapistContact(
        therapist_id=therapist_id,
        salutation=data.get("salutation"),
        title=data.get("title"),
        first_name=data.get("first_name") or "",
        last_name=data.get("last_name") or "",
        email=data.get("email"),
        phone=data.get("phone"),
        informed_about_platform=bool(data.get("informed_about_platform")),
        phone_hours=data.get("phone_hours") or {},
    )


def directory_of(settings: CommunicationSettings) -> ContactDirectory:
    """The contact directory the settings point at."""
    return ContactDirectory(
        therapist_service_url=settings.therapist_service_url,
        patient_service_url=settings.patient_service_url,
        service_token=settings.service_token.get_secret_value(),
        timeout_seconds=settings.contact_timeout_seconds,
    )
