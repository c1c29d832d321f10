"""Use cases of therapist_service (none yet)."""
