"""Settings of the matching service process."""

from __future__ import annotations

from pydantic import Field

from shared.settings import ServiceSettings


class MatchingSettings(ServiceSettings):
    """Environment of matching_service (SPEC.md §11)."""

    service_name: str = "matching_service"
    default_contact_budget: int = Field(default=25, ge=0)
    bundle_min_size: int = Field(default=3, ge=1)
    bundle_max_size: int = Field(default=6, ge=1)
    cooling_period_days: int = Field(default=28, ge=0)
    follow_up_after_days: int = Field(default=7, ge=1)
