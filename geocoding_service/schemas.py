"""Request, response and event payload schemas of geocoding_service (none published yet)."""

from __future__ import annotations

TOPIC = "location-events"
