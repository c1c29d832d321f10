"""Use cases of communication_service (none yet)."""
