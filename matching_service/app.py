"""Application factory of matching_service."""

from __future__ import annotations

from flask import Flask
from sqlalchemy import func, select

from matching_service import api
from matching_service.models import INFRA, Inquiry, PatientSearch
from matching_service.settings import MatchingSettings
from shared.metrics import BusinessGauge, add_business_gauges, counts_by
from shared.runtime import service_app
from shared.settings import load_settings

SEARCH_STATUSES = ("active", "paused", "in_trial", "successful", "cancelled")
OPEN_INQUIRY_STATUSES = ("unsent", "sent")

# read by /metrics at scrape time (cached for a few seconds)
GAUGES = (
    BusinessGauge(
        "matching_searches",
        "Patient searches per status (active: waiting for a place)",
        counts_by(
            select(PatientSearch.status, func.count()).group_by(PatientSearch.status),
            SEARCH_STATUSES,
        ),
        labels=("status",),
    ),
    BusinessGauge(
        "matching_open_inquiries",
        "Open inquiries: unsent, or sent and not yet answered",
        counts_by(
            select(Inquiry.status, func.count())
            .where(Inquiry.status.in_(OPEN_INQUIRY_STATUSES))
            .group_by(Inquiry.status),
            OPEN_INQUIRY_STATUSES,
        ),
        labels=("status",),
    ),
)


def create_app(settings: MatchingSettings | None = None) -> Flask:
    """The matching service's Flask app (settings from the environment unless given)."""
    settings = settings or load_settings(MatchingSettings)
    app = service_app(
        settings,
        INFRA,
        title="Matching service",
        routes=lambda runtime: api.routes(runtime.database, settings),
        pages=lambda runtime: [api.answer_link_pages(runtime.database, settings)],
    )
    add_business_gauges(app, GAUGES)
    return app
