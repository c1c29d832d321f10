"""Worker process of geocoding_service: outbox relay, consumer of patient and therapist
events, and (with a geocoder configured) the loop that geocodes therapists' addresses."""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping

from geocoding_service import service
from geocoding_service.handlers import SUBSCRIPTIONS, handlers
from geocoding_service.models import INFRA
from geocoding_service.providers import providers_from_settings
from geocoding_service.rules import provider_backoff_seconds
from geocoding_service.schemas import TOPIC
from geocoding_service.settings import GeocodingSettings
from shared.runtime import Loop, ServiceRuntime, worker_main

log = logging.getLogger(__name__)


def loops(runtime: ServiceRuntime, idle_s: float = 1.0) -> Mapping[str, Loop]:
    """The address loop, when a geocoder is configured: one waiting therapist address after
    the other, at the pace of the shared rate limit; idle when none waits."""
    assert isinstance(runtime.settings, GeocodingSettings)
    providers = providers_from_settings(runtime.settings)
    if providers.geocoder is None:
        return {}

    def geocode_addresses(stop: threading.Event) -> None:
        failures = 0  # of the geocoder itself, in a row
        while not stop.is_set():
            try:
                busy = service.geocode_next_address(runtime.database.unit_of_work(), providers)
            except service.GeocoderDown as down:
                failures += 1
                pause = provider_backoff_seconds(
                    failures, down.retry_after, providers.backoff_s, providers.backoff_max_s
                )
                log.warning("geocoder unavailable (%s): addresses wait %g s", down.reason, pause)
                stop.wait(pause)
                continue
            except Exception:
                log.exception("address geocoding step failed")
                busy = False
            failures = 0
            if not busy:
                stop.wait(idle_s)

    return {"addresses": geocode_addresses}


def main() -> None:
    """Run until SIGTERM."""
    worker_main(
        GeocodingSettings,
        INFRA,
        topics_produced=[TOPIC],
        subscriptions=SUBSCRIPTIONS,
        handlers=handlers,
        loops=loops,
    )


if __name__ == "__main__":
    main()
