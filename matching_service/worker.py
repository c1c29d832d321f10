"""Worker process of matching_service: consumer of patient, therapist, location and
communication events + outbox relay."""

from __future__ import annotations

from matching_service.handlers import HANDLERS, SUBSCRIPTIONS
from matching_service.models import INFRA
from matching_service.schemas import COOLING_TOPIC, INQUIRY_TOPIC, SEARCH_TOPIC
from matching_service.settings import MatchingSettings
from shared.runtime import worker_main


def main() -> None:
    """Run until SIGTERM."""
    worker_main(
        MatchingSettings,
        INFRA,
        topics_produced=[SEARCH_TOPIC, INQUIRY_TOPIC, COOLING_TOPIC],
        subscriptions=SUBSCRIPTIONS,
        handlers=HANDLERS,
    )


if __name__ == "__main__":
    main()
