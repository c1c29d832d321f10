"""SQLAlchemy models of geocoding_service, in the `geocoding_service` schema.

Skeleton: only the infrastructure tables (outbox, relay buckets, processed events, API
tokens) exist so far; the business tables arrive with the issues that need them.
"""

from __future__ import annotations

from shared.db import declarative_base
from shared.runtime import infrastructure_of

SCHEMA = "geocoding_service"
Base = declarative_base(SCHEMA)
INFRA = infrastructure_of(Base.metadata)
