"""Process settings read from the environment, validated once, failing fast with a clear message."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Literal, Self, TypeVar

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_core import PydanticCustomError
from pydantic_settings import BaseSettings, SettingsConfigDict

MEGABYTE = 1_048_576


def empty_means_unset(value: object) -> object:
    """An empty (or blank) environment variable counts as not set."""
    return None if isinstance(value, str) and not value.strip() else value


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
    log_level: str = "INFO"
    log_json: bool = True
    db_pool_size: int = Field(default=5, ge=1)
    consumer_max_attempts: int = Field(default=3, ge=1)
    # a consumer loop that has not come round for this long is stuck: the worker restarts
    consumer_stall_seconds: float = Field(default=120.0, ge=5)
    relay_batch_size: int = Field(default=2000, ge=1)
    relay_max_pass_bytes: int = Field(default=16 * 1024 * 1024, ge=1024 * 1024)
    relay_idle_seconds: float = Field(default=0.1, gt=0)
    relay_max_attempts: int = Field(default=10, ge=1)
    # published outbox rows are kept this long for a replay, then pruned (shared.retention)
    outbox_retention_days: int = Field(default=14, ge=1)
    event_max_bytes: int = Field(default=MEGABYTE, ge=1024)  # consumed values beyond: DLQ
    max_content_length: int = Field(default=MEGABYTE, ge=1)  # request body bytes (413 beyond)
    # port of the worker process's own /metrics (consumer lag); unset: not served
    worker_metrics_port: int | None = Field(default=None, ge=1, le=65535)

    # Broker access (docs/security.md); shared.kafka.kafka_client_options maps these to
    # kafka-python options for every client.
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["SCRAM-SHA-512", "PLAIN"] | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_cafile: str | None = None

    @field_validator("kafka_security_protocol", "kafka_sasl_mechanism", mode="before")
    @classmethod
    def _upper_case(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator(
        "kafka_sasl_mechanism",
        "kafka_sasl_username",
        "kafka_sasl_password",
        "kafka_ssl_cafile",
        "worker_metrics_port",
        mode="before",
    )
    @classmethod
    def _empty_means_unset(cls, value: object) -> object:
        return empty_means_unset(value)

    @field_validator("kafka_ssl_cafile")
    @classmethod
    def _cafile_exists(cls, value: str | None) -> str | None:
        if value is not None and not Path(value).is_file():
            raise ValueError(f"no such file: {value}")
        return value

    @model_validator(mode="after")
    def _kafka_security_complete(self) -> Self:
        protocol = self.kafka_security_protocol
        credentials = {
            "KAFKA_SASL_MECHANISM": self.kafka_sasl_mechanism,
            "KAFKA_SASL_USERNAME": self.kafka_sasl_username,
            "KAFKA_SASL_PASSWORD": self.kafka_sasl_password,
        }
        if protocol == "SASL_SSL":
            missing = [name for name, value in credentials.items() if not value]
            if missing:
                raise _kafka_error(f"KAFKA_SECURITY_PROTOCOL={protocol} needs {', '.join(missing)}")
        elif stray := [name for name, value in credentials.items() if value]:
            # a credential without SASL is never sent: refuse rather than run without auth
            raise _kafka_error(
                f"{', '.join(stray)} set, but KAFKA_SECURITY_PROTOCOL={protocol} sends no "
                "credentials (use SASL_SSL)"
            )
        if protocol == "PLAINTEXT" and self.kafka_ssl_cafile:
            raise _kafka_error(
                "KAFKA_SSL_CAFILE set, but KAFKA_SECURITY_PROTOCOL=PLAINTEXT uses no TLS"
            )
        return self

    def topic(self, name: str) -> str:
        """The full Kafka topic name, with the optional deployment prefix."""
        return f"{self.kafka_topic_prefix}{name}"


def _kafka_error(message: str) -> PydanticCustomError:
    return PydanticCustomError("kafka_security", message)


BOOTSTRAP_TOKEN_MIN_LENGTH = 32


class AdminSettings(BaseSettings):
    """Settings of the admin commands (`python -m shared.cli`) and of `make run`."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    bootstrap_admin_token: SecretStr | None = None
    # the services' read-only token for each other's internal reads (stored hashed as 'service')
    service_token: SecretStr | None = None

    @field_validator("bootstrap_admin_token", "service_token", mode="before")
    @classmethod
    def _empty_means_unset(cls, value: object) -> object:
        return empty_means_unset(value)

    @field_validator("bootstrap_admin_token", "service_token")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < BOOTSTRAP_TOKEN_MIN_LENGTH:
            raise ValueError(
                f"must be at least {BOOTSTRAP_TOKEN_MIN_LENGTH} characters, e.g. "
                "python -c 'import secrets; print(secrets.token_urlsafe(32))'"
            )
        return value


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
            field = ".".join(str(part) for part in error["loc"])
            # errors of several variables together (loc empty) name them in their message
            lines.append(f"  {field.upper()}: {error['msg']}" if field else f"  {error['msg']}")
        message = f"{cls.__name__}: invalid or missing configuration:\n" + "\n".join(lines)
        print(message, file=sys.stderr)
        raise SystemExit(2) from None
