"""Settings of the therapist_service process."""

from __future__ import annotations

from pydantic import Field

from shared.settings import ServiceSettings

# A directory file of a busy area is larger than the platform's 1 MB request default
DIRECTORY_IMPORT_MAX_BYTES = 20 * 1024 * 1024
# Directory records per transaction of an import
DIRECTORY_IMPORT_BATCH_SIZE = 500


class TherapistSettings(ServiceSettings):
    """Environment of therapist_service."""

    service_name: str = "therapist_service"
    # body limit of POST /api/therapist-imports (413 beyond)
    directory_import_max_bytes: int = Field(default=DIRECTORY_IMPORT_MAX_BYTES, ge=1024)
    directory_import_batch_size: int = Field(default=DIRECTORY_IMPORT_BATCH_SIZE, ge=1, le=10_000)
