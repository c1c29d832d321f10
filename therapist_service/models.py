"""SQLAlchemy models of therapist_service, in the `therapist_service` schema.

Skeleton: only the infrastructure tables (outbox, relay buckets, processed events, API
tokens) exist so far; the business tables arrive with the issues that need them.
"""

from __future__ import annotations

from sqlalchemy.orm import DeclarativeBase

from shared.db import TYPE_ANNOTATION_MAP, schema_metadata
from shared.runtime import infrastructure_of

SCHEMA = "therapist_service"


class Base(DeclarativeBase):
    """Declarative base of this service's schema."""

    metadata = schema_metadata(SCHEMA)
    type_annotation_map = TYPE_ANNOTATION_MAP


INFRA = infrastructure_of(Base.metadata)
