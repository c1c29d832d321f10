"""Worker process of communication_service: outbox relay and consumer of inquiry and search
events."""

from __future__ import annotations

from communication_service.handlers import SUBSCRIPTIONS, handlers_for
from communication_service.models import INFRA
from communication_service.schemas import TOPIC
from communication_service.settings import CommunicationSettings
from shared.runtime import worker_main


def main() -> None:
    """Run until SIGTERM."""
    worker_main(
        CommunicationSettings,
        INFRA,
        topics_produced=[TOPIC],
        subscriptions=SUBSCRIPTIONS,
        handlers=handlers_for,
    )


if __name__ == "__main__":
    main()
