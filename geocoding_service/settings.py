"""Settings of the geocoding_service process."""

from __future__ import annotations

from typing import Self

from pydantic import Field, field_validator, model_validator

from geocoding_service.rules import DistancePolicy
from shared.settings import ServiceSettings, empty_means_unset


class GeocodingSettings(ServiceSettings):
    """Environment of geocoding_service (business-rules.md §4, §11)."""

    service_name: str = "geocoding_service"
    # PLZ data: a path or URL in GeoNames' CSV or tab-separated format, or their ZIP
    plz_data: str | None = None
    # address geocoder: Nominatim's usage policy asks for a real User-Agent, at most one
    # request per second (for all processes together) and caching of results
    nominatim_url: str | None = None
    nominatim_user_agent: str | None = None
    nominatim_min_interval_seconds: float = Field(default=1.0, ge=0)
    nominatim_timeout_seconds: float = Field(default=5.0, gt=0)
    # queueing for a turn; PostgreSQL's lock_timeout counts whole milliseconds (0: forever)
    nominatim_max_wait_seconds: float = Field(default=10.0, ge=0.001)
    nominatim_max_attempts: int = Field(default=5, ge=1)  # per therapist address
    # the address loop pauses while Nominatim is down (429, 5xx, timeouts): doubling from
    # the first pause up to the longest, which also caps a Retry-After
    nominatim_backoff_seconds: float = Field(default=5.0, gt=0)
    nominatim_backoff_max_seconds: float = Field(default=300.0, gt=0)
    # routing: OSRM's HTTP API; public transport is estimated unless a profile is named
    osrm_url: str | None = None
    osrm_timeout_seconds: float = Field(default=5.0, gt=0)
    osrm_profile_car: str = "driving"
    osrm_profile_transit: str | None = None
    detour_factor_car: float = Field(default=1.3, ge=1, le=5)
    detour_factor_transit: float = Field(default=1.5, ge=1, le=5)
    speed_car_kmh: float = Field(default=50, gt=0, le=200)
    speed_transit_kmh: float = Field(default=25, gt=0, le=200)

    @field_validator(
        "plz_data",
        "nominatim_url",
        "nominatim_user_agent",
        "osrm_url",
        "osrm_profile_transit",
        mode="before",
    )
    @classmethod
    def _empty_means_unset(cls, value: object) -> object:
        return empty_means_unset(value)

    @field_validator("nominatim_url", "osrm_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/") if value else value

    @model_validator(mode="after")
    def _user_agent_with_nominatim(self) -> Self:
        if self.nominatim_url and not self.nominatim_user_agent:
            raise ValueError(
                "NOMINATIM_URL is set: NOMINATIM_USER_AGENT must name this application and a "
                "contact (Nominatim's usage policy), e.g. 'placement/1.0 (ops@example.org)'"
            )
        return self

    def distance_policy(self) -> DistancePolicy:
        """Detour factors and speeds per travel mode."""
        return DistancePolicy(
            detour={"car": self.detour_factor_car, "transit": self.detour_factor_transit},
            speed_kmh={"car": self.speed_car_kmh, "transit": self.speed_transit_kmh},
        )

    def osrm_profiles(self) -> dict[str, str | None]:
        """OSRM profile per travel mode (None: estimated, not routed)."""
        return {"car": self.osrm_profile_car, "transit": self.osrm_profile_transit}
