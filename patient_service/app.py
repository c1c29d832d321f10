"""Application factory of patient_service."""

from __future__ import annotations

from flask import Flask

from patient_service import api
from patient_service.models import INFRA
from patient_service.service import QualificationPolicy
from patient_service.settings import PatientSettings
from shared.runtime import service_app
from shared.settings import load_settings


def policy_of(settings: PatientSettings) -> QualificationPolicy:
    """Qualification thresholds from settings."""
    return QualificationPolicy(
        min_weekly_hours=settings.min_weekly_hours,
        min_weekly_hours_group=settings.min_weekly_hours_group,
        two_year_rule_days=settings.two_year_rule_days,
    )


def create_app(settings: PatientSettings | None = None) -> Flask:
    """The patient service's Flask app (settings from the environment unless given)."""
    settings = settings or load_settings(PatientSettings)
    policy = policy_of(settings)
    return service_app(
        settings,
        INFRA,
        title="Patient service",
        routes=lambda runtime: api.routes(runtime.database, policy),
    )
