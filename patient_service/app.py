"""Application factory of patient_service."""

from __future__ import annotations

from flask import Flask

from patient_service import api
from patient_service.models import INFRA
from patient_service.service import QualificationPolicy
from patient_service.settings import PatientSettings
from shared.logs import configure_logging
from shared.runtime import ServiceRuntime
from shared.settings import load_settings
from shared.web import create_service_app


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
    configure_logging(settings.service_name, settings.log_level, settings.log_json)
    runtime = ServiceRuntime.build(settings, INFRA)
    return create_service_app(
        name=settings.service_name,
        title="Patient service",
        database=runtime.database,
        infrastructure=INFRA,
        token_store=runtime.tokens,
        bootstrap_servers=settings.kafka_bootstrap_servers,
        routes=api.routes(runtime.database, policy_of(settings)),
    )
