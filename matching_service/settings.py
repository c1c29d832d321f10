"""Settings of the matching service process."""

from __future__ import annotations

from pydantic import Field, SecretStr, field_validator

from shared.settings import ServiceSettings

ANSWER_LINK_SECRET_MIN_LENGTH = 32


class MatchingSettings(ServiceSettings):
    """Environment of matching_service (business-rules.md §11)."""

    service_name: str = "matching_service"
    default_contact_budget: int = Field(default=25, ge=0)
    bundle_min_size: int = Field(default=3, ge=1)
    bundle_max_size: int = Field(default=6, ge=1)
    # open inquiries one search may be in at once (parallel search, business-rules.md §6)
    max_open_inquiries_per_search: int = Field(default=3, ge=1)
    cooling_period_days: int = Field(default=28, ge=0)
    follow_up_after_days: int = Field(default=7, ge=1)
    inquiry_close_after_days: int = Field(default=21, ge=1)
    # signs the answer links in inquiry emails; the token is the therapist's only authority
    answer_link_secret: SecretStr
    answer_link_days: int = Field(default=21, ge=1, le=365)
    # where therapists open answer links: this service's public address
    answer_link_base_url: str = Field(default="http://127.0.0.1:8003", pattern=r"^https?://")

    @field_validator("answer_link_secret")
    @classmethod
    def _long_enough(cls, value: SecretStr) -> SecretStr:
        if len(value.get_secret_value()) < ANSWER_LINK_SECRET_MIN_LENGTH:
            raise ValueError(
                f"must be at least {ANSWER_LINK_SECRET_MIN_LENGTH} characters; generate one with "
                "python -c 'import secrets; print(secrets.token_urlsafe(32))'"
            )
        return value
