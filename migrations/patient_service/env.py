"""Alembic environment of the patient_service schema."""

from patient_service.models import SCHEMA, Base
from shared.migrations import run_env

run_env(SCHEMA, Base.metadata)
