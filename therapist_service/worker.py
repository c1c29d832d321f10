"""Worker process of therapist_service: consumer of cooling events + outbox relay."""

from __future__ import annotations

from shared.runtime import worker_main
from therapist_service.handlers import HANDLERS, SUBSCRIPTIONS
from therapist_service.models import INFRA
from therapist_service.schemas import TOPIC
from therapist_service.settings import TherapistSettings


def main() -> None:
    """Run until SIGTERM."""
    worker_main(
        TherapistSettings,
        INFRA,
        topics_produced=[TOPIC],
        subscriptions=SUBSCRIPTIONS,
        handlers=HANDLERS,
    )


if __name__ == "__main__":
    main()
