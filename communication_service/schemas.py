"""Request, response and event payload schemas of communication_service (none published yet)."""

from __future__ import annotations

TOPIC = "communication-events"
