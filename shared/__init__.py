"""The platform's own library: mechanisms shared by all five services (no domain logic)."""
