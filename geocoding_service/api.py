"""REST resources of geocoding_service: only the common endpoints so far."""

from __future__ import annotations

from shared.runtime import ServiceRuntime
from shared.web import ResourceRoute


def routes(runtime: ServiceRuntime) -> list[ResourceRoute]:
    """The resources of this service with their dependencies (none yet)."""
    return []
