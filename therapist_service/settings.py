"""Settings of the therapist_service process."""

from __future__ import annotations

from shared.settings import ServiceSettings


class TherapistSettings(ServiceSettings):
    """Environment of therapist_service."""

    service_name: str = "therapist_service"
