"""Settings of the patient service process."""

from __future__ import annotations

from pydantic import Field, SecretStr

from patient_service.rules import QualificationPolicy
from shared.settings import ServiceSettings


class PatientSettings(ServiceSettings):
    """Environment of patient_service (business-rules.md §11)."""

    service_name: str = "patient_service"
    min_weekly_hours: float = Field(default=20, ge=0)
    min_weekly_hours_group: float = Field(default=10, ge=0)
    two_year_rule_days: int = Field(default=730, ge=0)
    # read-only token of the services: the data export reads the other services' parts
    service_token: SecretStr | None = None
    matching_service_url: str = Field(default="http://127.0.0.1:8003", pattern=r"^https?://")
    communication_service_url: str = Field(default="http://127.0.0.1:8004", pattern=r"^https?://")
    geocoding_service_url: str = Field(default="http://127.0.0.1:8005", pattern=r"^https?://")
    export_timeout_seconds: float = Field(default=10.0, gt=0)

    def qualification_policy(self) -> QualificationPolicy:
        """The qualification thresholds these settings name."""
        return QualificationPolicy(
            min_weekly_hours=self.min_weekly_hours,
            min_weekly_hours_group=self.min_weekly_hours_group,
            two_year_rule_days=self.two_year_rule_days,
        )
