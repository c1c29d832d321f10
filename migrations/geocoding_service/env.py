"""Alembic environment of the geocoding_service schema."""

from geocoding_service.models import SCHEMA, Base
from shared.migrations import run_env

run_env(SCHEMA, Base.metadata)
