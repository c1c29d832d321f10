"""Worker process of patient_service: outbox relay + consumer of matching's search events."""

from __future__ import annotations

from patient_service.handlers import SUBSCRIPTIONS, handlers
from patient_service.models import INFRA
from patient_service.schemas import PATIENT_TOPIC
from patient_service.settings import PatientSettings
from shared.runtime import worker_main


def main() -> None:
    """Run until SIGTERM."""
    worker_main(
        PatientSettings,
        INFRA,
        topics_produced=[PATIENT_TOPIC],
        subscriptions=SUBSCRIPTIONS,
        handlers=handlers,
    )


if __name__ == "__main__":
    main()
