"""Settings of the communication_service process."""

from __future__ import annotations

from pydantic import Field, SecretStr, field_validator

from shared.settings import ServiceSettings, empty_means_unset


class CommunicationSettings(ServiceSettings):
    """Environment of communication_service (business-rules.md §7, §11)."""

    service_name: str = "communication_service"
    # read-only token accepted by every service for its internal reads (contact data)
    service_token: SecretStr
    therapist_service_url: str = Field(default="http://127.0.0.1:8002", pattern=r"^https?://")
    patient_service_url: str = Field(default="http://127.0.0.1:8001", pattern=r"^https?://")
    contact_timeout_seconds: float = Field(default=5.0, gt=0)
    smtp_host: str = "127.0.0.1"
    smtp_port: int = Field(default=1025, ge=1, le=65535)
    smtp_starttls: bool = False
    smtp_user: str | None = None
    smtp_password: SecretStr | None = None
    smtp_timeout_seconds: float = Field(default=30.0, gt=0)
    mail_from: str = Field(default="Vermittlung <vermittlung@localhost>", min_length=3)
    email_min_days_between: int = Field(default=7, ge=0)
    # a temporary SMTP failure is retried this often, waiting 1, 2, 4, ... minutes (max 1 h)
    email_max_attempts: int = Field(default=5, ge=1)
    phone_slot_minutes: int = Field(default=5, ge=1, le=240)
    phone_search_horizon_days: int = Field(default=14, ge=1, le=365)
    max_call_attempts: int = Field(default=3, ge=1)
    # printed in every message: where therapists and patients call the platform
    platform_phone: str = "030 1234567"

    @field_validator("smtp_user", "smtp_password", mode="before")
    @classmethod
    def _empty_means_unset(cls, value: object) -> object:
        return empty_means_unset(value)
