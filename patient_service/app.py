"""Application factory of patient_service."""

from __future__ import annotations

from flask import Flask

from patient_service import api
from patient_service.models import INFRA
from patient_service.parts import gatherer_of
from patient_service.settings import PatientSettings
from shared.runtime import service_app
from shared.settings import load_settings


def create_app(settings: PatientSettings | None = None) -> Flask:
    """The patient service's Flask app (settings from the environment unless given)."""
    settings = settings or load_settings(PatientSettings)
    policy = settings.qualification_policy()
    return service_app(
        settings,
        INFRA,
        title="Patient service",
        routes=lambda runtime: api.routes(runtime.database, policy, gatherer_of(settings)),
    )
