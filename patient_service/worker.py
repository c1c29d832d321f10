"""Worker process of patient_service: outbox relay (and consumer once it subscribes)."""

from __future__ import annotations

from patient_service.handlers import HANDLERS, SUBSCRIPTIONS
from patient_service.models import INFRA
from patient_service.schemas import PATIENT_TOPIC
from patient_service.settings import PatientSettings
from shared.logs import configure_logging
from shared.runtime import ServiceRuntime, run_worker
from shared.settings import load_settings


def main() -> None:
    """Run until SIGTERM."""
    settings = load_settings(PatientSettings)
    configure_logging(f"{settings.service_name}.worker", settings.log_level, settings.log_json)
    run_worker(
        ServiceRuntime.build(settings, INFRA),
        topics_produced=[PATIENT_TOPIC],
        subscriptions=SUBSCRIPTIONS,
        handlers=HANDLERS,
    )


if __name__ == "__main__":
    main()
