"""Application factory of communication_service."""

from __future__ import annotations

from flask import Flask

from communication_service import api
from communication_service.contacts import directory_of
from communication_service.models import INFRA
from communication_service.settings import CommunicationSettings
from shared.runtime import service_app
from shared.settings import load_settings


def create_app(settings: CommunicationSettings | None = None) -> Flask:
    """The communication service's Flask app (settings from the environment unless given)."""
    settings = settings or load_settings(CommunicationSettings)
    return service_app(
        settings,
        INFRA,
        title="Communication service",
        routes=lambda runtime: api.routes(runtime.database, settings, directory_of(settings)),
    )
