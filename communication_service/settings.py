"""Settings of the communication_service process."""

from __future__ import annotations

from shared.settings import ServiceSettings


class CommunicationSettings(ServiceSettings):
    """Environment of communication_service."""

    service_name: str = "communication_service"
