"""Use cases of geocoding_service (none yet)."""
