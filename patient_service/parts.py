"""The other services' parts of a patient's data export, read over REST with the service
token (`GET /api/patients/{id}/data` on matching, communication and geocoding)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import requests

from patient_service.settings import PatientSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PartsGatherer:
    """Fetches each service's part; a part that cannot be fetched is None (named missing)."""

    service_urls: Mapping[str, str]
    service_token: str | None
    timeout_seconds: float = 10.0

    def __call__(self, patient_id: int) -> dict[str, dict[str, Any] | None]:
        return {name: self._part(name, url, patient_id) for name, url in self.service_urls.items()}

    def _part(self, name: str, base_url: str, patient_id: int) -> dict[str, Any] | None:
        if not self.service_token:
            log.warning("export: no SERVICE_TOKEN configured, %s part left out", name)
            return None
        try:
            response = requests.get(
                f"{base_url.rstrip('/')}/api/patients/{patient_id}/data",
                headers={"Authorization": f"Bearer {self.service_token}"},
                timeout=self.timeout_seconds,
            )
        except requests.RequestException as exc:
            log.warning("export: %s unreachable (%s)", name, type(exc).__name__)
            return None
        if response.status_code != 200:
            log.warning("export: %s answered HTTP %s", name, response.status_code)
            return None
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            log.warning("export: %s answered no JSON object", name)
            return None
        return body


def gatherer_of(settings: PatientSettings) -> PartsGatherer:
    """The gatherer the settings point at."""
    token = settings.service_token.get_secret_value() if settings.service_token else None
    return PartsGatherer(
        service_urls={
            "matching_service": settings.matching_service_url,
            "communication_service": settings.communication_service_url,
            "geocoding_service": settings.geocoding_service_url,
        },
        service_token=token,
        timeout_seconds=settings.export_timeout_seconds,
    )
