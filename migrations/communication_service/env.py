"""Alembic environment of the communication_service schema."""

from communication_service.models import SCHEMA, Base
from shared.migrations import run_env

run_env(SCHEMA, Base.metadata)
