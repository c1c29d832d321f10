"""Process settings read from the environment, validated once, failing fast with a clear message."""

from __future__ import annotations

import os
import sys
from typing import Any, TypeVar

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

SERVICES = (
    "patient_service",
    "therapist_service",
    "matching_service",
    "communication_service",
    "geocoding_service",
)
SERVICE_PORTS = {name: 8001 + index for index, name in enumerate(SERVICES)}


class ServiceSettings(BaseSettings):
    """Settings every service process needs; services subclass it for their own values."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    service_name: str = ""
    database_url: str = Field(min_length=1)
    kafka_bootstrap_servers: str = "127.0.0.1:9092"
    kafka_topic_prefix: str = ""
    kafka_session_timeout_ms: int = Field(default=10000, ge=1000)
    kafka_partitions: int = Field(default=3, ge=1)
    bootstrap_admin_token: str | None = Field(default=None, min_length=16)
    log_level: str = "INFO"
    log_json: bool = True
    db_pool_size: int = Field(default=5, ge=1)
    consumer_max_attempts: int = Field(default=3, ge=1)
    relay_batch_size: int = Field(default=500, ge=1)
    relay_idle_seconds: float = Field(default=0.1, gt=0)
    relay_max_attempts: int = Field(default=10, ge=1)
    event_max_bytes: int = Field(default=1_048_576, ge=1024)  # consumed values beyond: DLQ
    max_content_length: int = Field(default=1_048_576, ge=1)  # request body bytes (413 beyond)

    @field_validator("bootstrap_admin_token", mode="before")
    @classmethod
    def _empty_means_unset(cls, value: object) -> object:
        return None if value == "" else value

    def topic(self, name: str) -> str:
        """The full Kafka topic name, with the optional deployment prefix."""
        return f"{self.kafka_topic_prefix}{name}"


S = TypeVar("S", bound=BaseSettings)


def own_database_url(service: str) -> str | None:
    """`<SERVICE>_DATABASE_URL` (the service's own role), else `DATABASE_URL`, else None."""
    return os.environ.get(f"{service.upper()}_DATABASE_URL") or os.environ.get("DATABASE_URL")


def load_settings(cls: type[S], **overrides: Any) -> S:
    """Build settings from the environment (plus overrides) or exit naming every bad variable."""
    name = cls.model_fields["service_name"].default if "service_name" in cls.model_fields else ""
    url = own_database_url(name) if name else None
    if url and "database_url" not in overrides:
        overrides = {**overrides, "database_url": url}
    try:
        return cls(**overrides)
    except ValidationError as exc:
        lines = []
        for error in exc.errors():
            field = ".".join(str(part) for part in error["loc"]) or "?"
            lines.append(f"  {field.upper()}: {error['msg']}")
        message = f"{cls.__name__}: invalid or missing configuration:\n" + "\n".join(lines)
        print(message, file=sys.stderr)
        raise SystemExit(2) from None
