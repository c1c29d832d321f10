"""Worker process of communication_service: outbox relay (and consumer once it subscribes)."""

from __future__ import annotations

from communication_service.handlers import HANDLERS, SUBSCRIPTIONS
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
        handlers=HANDLERS,
    )


if __name__ == "__main__":
    main()
