"""Pure domain rules of geocoding_service (none yet: the skeleton holds no business logic)."""
