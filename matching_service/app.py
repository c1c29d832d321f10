"""Application factory of matching_service."""

from __future__ import annotations

from flask import Flask

from matching_service import api
from matching_service.models import INFRA
from matching_service.settings import MatchingSettings
from shared.runtime import service_app
from shared.settings import load_settings


def create_app(settings: MatchingSettings | None = None) -> Flask:
    """The matching service's Flask app (settings from the environment unless given)."""
    settings = settings or load_settings(MatchingSettings)
    return service_app(
        settings,
        INFRA,
        title="Matching service",
        routes=lambda runtime: api.routes(runtime.database, settings),
        pages=lambda runtime: [api.answer_link_pages(runtime.database, settings)],
    )
