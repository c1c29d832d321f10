"""Alembic environment of the therapist_service schema."""

from therapist_service.models import SCHEMA, Base

from shared.migrations import run_env

run_env(SCHEMA, Base.metadata)
