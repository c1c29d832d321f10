"""Request, response and event payload schemas of therapist_service (none published yet)."""

from __future__ import annotations

TOPIC = "therapist-events"
