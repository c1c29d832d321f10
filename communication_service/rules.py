"""Pure domain rules of communication_service (none yet: the skeleton holds no business logic)."""
