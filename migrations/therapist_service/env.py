"""Alembic environment of the therapist_service schema."""

from shared.migrations import run_env
from therapist_service.models import SCHEMA, Base

run_env(SCHEMA, Base.metadata)
