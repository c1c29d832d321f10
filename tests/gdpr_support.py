"""The services that hold a patient's data, wired for tests of the audit log, the export
and erasure: settings and databases per service, each service's handler table (events are
applied as its worker would), and the other services served over HTTP for the export."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa

from communication_service.app import create_app as create_communication_app
from communication_service.handlers import handlers_for as communication_handlers
from communication_service.models import INFRA as COMMUNICATION_INFRA
from communication_service.settings import CommunicationSettings
from geocoding_service.app import create_app as create_geocoding_app
from geocoding_service.handlers import handlers as geocoding_handlers
from geocoding_service.models import INFRA as GEOCODING_INFRA
from geocoding_service.settings import GeocodingSettings
from matching_service.app import create_app as create_matching_app
from matching_service.handlers import HANDLERS as MATCHING_HANDLERS
from matching_service.models import INFRA as MATCHING_INFRA
from matching_service.settings import MatchingSettings
from patient_service.settings import PatientSettings
from shared.cli import ensure_service_token
from shared.db import role_url
from shared.events import Envelope
from shared.runtime import ServiceRuntime
from shared.settings import SERVICES
from tests.communication_support import served
from tests.conftest import ANSWER_LINK_SECRET, SERVICE_TOKEN


def _settings(cls: type[Any], database_url: str, **values: Any) -> Any:
    service = cls.model_fields["service_name"].default
    return cls(
        database_url=role_url(database_url, service),
        kafka_bootstrap_servers="127.0.0.1:9",  # nothing here publishes: events stay in outboxes
        log_json=False,
        **values,
    )


class Services:
    """The four services of a patient's data: settings, databases and handler tables."""

    def __init__(self, database_url: str, urls: dict[str, str]) -> None:
        self.matching_settings = _settings(
            MatchingSettings, database_url, answer_link_secret=ANSWER_LINK_SECRET
        )
        # communication reads no contact data here: a call to port 9 fails at once rather
        # than reaching whatever runs on the default ports
        self.communication_settings = _settings(
            CommunicationSettings,
            database_url,
            service_token=SERVICE_TOKEN,
            therapist_service_url="http://127.0.0.1:9",
            patient_service_url="http://127.0.0.1:9",
        )
        self.geocoding_settings = _settings(GeocodingSettings, database_url)
        self.patient_settings = _settings(
            PatientSettings,
            database_url,
            service_token=SERVICE_TOKEN,
            matching_service_url=urls["matching_service"],
            communication_service_url=urls["communication_service"],
            geocoding_service_url=urls["geocoding_service"],
        )
        self.matching_db = ServiceRuntime.build(self.matching_settings, MATCHING_INFRA).database
        self.communication_db = ServiceRuntime.build(
            self.communication_settings, COMMUNICATION_INFRA
        ).database
        self.geocoding_db = ServiceRuntime.build(self.geocoding_settings, GEOCODING_INFRA).database
        self.handlers = {
            "matching_service": (self.matching_db, MATCHING_HANDLERS),
            "communication_service": (
                self.communication_db,
                communication_handlers(self.communication_settings),
            ),
            "geocoding_service": (self.geocoding_db, geocoding_handlers(self.geocoding_settings)),
        }

    def apply(self, service: str, envelope: Envelope) -> None:
        """Apply one event as `service`'s worker would (own transaction)."""
        database, table = self.handlers[service]
        handler = table.get(envelope.event_type)
        if handler is None:
            return
        with database.unit_of_work() as uow:
            handler(uow, envelope)
            uow.commit()

    def dispose(self) -> None:
        for database, _ in self.handlers.values():
            database.dispose()


@contextmanager
def serving(database_url: str) -> Iterator[Services]:
    """The services, the other three served over HTTP for patient_service's export."""
    ensure_service_token(database_url, SERVICE_TOKEN)
    probe = Services(database_url, dict.fromkeys(SERVICES, "http://127.0.0.1:9"))
    with (
        served(create_matching_app(probe.matching_settings)) as matching_url,
        served(create_communication_app(probe.communication_settings)) as communication_url,
        served(create_geocoding_app(probe.geocoding_settings)) as geocoding_url,
    ):
        probe.dispose()
        services = Services(
            database_url,
            {
                "matching_service": matching_url,
                "communication_service": communication_url,
                "geocoding_service": geocoding_url,
            },
        )
        yield services
        services.dispose()


def outbox_events(
    engine: sa.Engine, schema: str, aggregate_id: object, prefix: str = ""
) -> list[Envelope]:
    """The events `schema` emitted about one aggregate, in order; with `prefix` only the
    event types starting with it (search and inquiry ids overlap, as other tests' do)."""
    with engine.connect() as connection:
        rows = connection.execute(
            sa.text(
                f"SELECT envelope FROM {schema}.outbox WHERE aggregate_id = :a "
                "AND event_type LIKE :p ORDER BY id"
            ),
            {"a": str(aggregate_id), "p": f"{prefix}%"},
        ).scalars()
        return [Envelope.model_validate(row) for row in rows]
