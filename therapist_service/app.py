"""Application factory of therapist_service."""

from __future__ import annotations

from flask import Flask

from shared.runtime import service_app
from shared.settings import load_settings
from therapist_service import api
from therapist_service.models import INFRA
from therapist_service.settings import TherapistSettings


def create_app(settings: TherapistSettings | None = None) -> Flask:
    """The therapist service's Flask app (settings from the environment unless given)."""
    return service_app(
        settings or load_settings(TherapistSettings),
        INFRA,
        title="Therapist service",
        routes=api.routes,
    )
