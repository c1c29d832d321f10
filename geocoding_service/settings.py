"""Settings of the geocoding_service process."""

from __future__ import annotations

from shared.settings import ServiceSettings


class GeocodingSettings(ServiceSettings):
    """Environment of geocoding_service."""

    service_name: str = "geocoding_service"
