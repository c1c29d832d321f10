"""Pure domain rules of therapist_service (none yet: the skeleton holds no business logic)."""
