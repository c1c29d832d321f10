"""Consumed event type -> use case. therapist_service consumes nothing yet."""

from __future__ import annotations

from collections.abc import Mapping

from shared.consumer import Handler

SUBSCRIPTIONS: tuple[str, ...] = ()
HANDLERS: Mapping[str, Handler] = {}
