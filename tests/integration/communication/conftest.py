"""Fixtures of communication_service's tests: a real SMTP server, therapist_service and
patient_service served over HTTP (contact data is read over REST with the service token),
communication's settings and database. Nothing here publishes: events stay in the outbox."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from communication_service.app import create_app
from communication_service.models import INFRA
from communication_service.settings import CommunicationSettings
from patient_service.app import create_app as create_patient_app
from patient_service.settings import PatientSettings
from shared.cli import ensure_service_token
from shared.db import Database, role_url
from shared.runtime import ServiceRuntime
from tests.communication_support import SERVICE_TOKEN, SmtpSink, served, smtp_server
from therapist_service.app import create_app as create_therapist_app
from therapist_service.settings import TherapistSettings


def _settings(cls: type[Any], database_url: str, **values: Any) -> Any:
    service = cls.model_fields["service_name"].default
    return cls(
        database_url=role_url(database_url, service),
        kafka_bootstrap_servers="127.0.0.1:9",  # nothing here publishes: events stay in outboxes
        log_json=False,
        **values,
    )


@pytest.fixture(scope="module")
def contacts(database_url: str) -> Iterator[tuple[str, str]]:
    """therapist_service and patient_service over HTTP, accepting the service token."""
    ensure_service_token(database_url, SERVICE_TOKEN)
    therapists = create_therapist_app(_settings(TherapistSettings, database_url))
    patients = create_patient_app(_settings(PatientSettings, database_url))
    with served(therapists) as therapist_url, served(patients) as patient_url:
        yield therapist_url, patient_url


@pytest.fixture(scope="module")
def smtp() -> Iterator[tuple[SmtpSink, int]]:
    with smtp_server() as server:
        yield server


@pytest.fixture
def sink(smtp: tuple[SmtpSink, int]) -> SmtpSink:
    sink = smtp[0]
    sink.refusals.clear()
    sink.delay = 0.0
    return sink


@pytest.fixture(scope="module")
def settings(
    database_url: str, contacts: tuple[str, str], smtp: tuple[SmtpSink, int]
) -> CommunicationSettings:
    therapist_url, patient_url = contacts
    return _settings(
        CommunicationSettings,
        database_url,
        service_token=SERVICE_TOKEN,
        therapist_service_url=therapist_url,
        patient_service_url=patient_url,
        smtp_port=smtp[1],
        mail_from="Vermittlung <vermittlung@example.org>",
        platform_phone="030 9876543",
    )


@pytest.fixture(scope="module")
def database(settings: CommunicationSettings) -> Iterator[Database]:
    database = ServiceRuntime.build(settings, INFRA).database
    yield database
    database.dispose()


@pytest.fixture(scope="module")
def therapist_client(database_url: str) -> Any:
    return create_therapist_app(_settings(TherapistSettings, database_url)).test_client()


@pytest.fixture(scope="module")
def patient_client(database_url: str) -> Any:
    return create_patient_app(_settings(PatientSettings, database_url)).test_client()


@pytest.fixture(scope="module")
def client(settings: CommunicationSettings) -> Any:
    return create_app(settings).test_client()
