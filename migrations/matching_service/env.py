"""Alembic environment of the matching_service schema."""

from matching_service.models import SCHEMA, Base
from shared.migrations import run_env

run_env(SCHEMA, Base.metadata)
