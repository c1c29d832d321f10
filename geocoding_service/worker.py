"""Worker process of geocoding_service: outbox relay (and consumer once it subscribes)."""

from __future__ import annotations

from geocoding_service.handlers import HANDLERS, SUBSCRIPTIONS
from geocoding_service.models import INFRA
from geocoding_service.schemas import TOPIC
from geocoding_service.settings import GeocodingSettings
from shared.runtime import worker_main


def main() -> None:
    """Run until SIGTERM."""
    worker_main(
        GeocodingSettings,
        INFRA,
        topics_produced=[TOPIC],
        subscriptions=SUBSCRIPTIONS,
        handlers=HANDLERS,
    )


if __name__ == "__main__":
    main()
