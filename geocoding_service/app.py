"""Application factory of geocoding_service."""

from __future__ import annotations

from flask import Flask

from geocoding_service import api
from geocoding_service.models import INFRA
from geocoding_service.providers import providers_from_settings
from geocoding_service.settings import GeocodingSettings
from shared.runtime import service_app
from shared.settings import load_settings


def create_app(settings: GeocodingSettings | None = None) -> Flask:
    """The geocoding service's Flask app (settings from the environment unless given)."""
    settings = settings or load_settings(GeocodingSettings)
    providers = providers_from_settings(settings)
    return service_app(
        settings,
        INFRA,
        title="Geocoding service",
        routes=lambda runtime: api.routes(runtime.database, providers, settings.plz_data),
    )
