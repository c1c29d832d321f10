"""REST resources of communication_service: the staff views of emails and the phone work.

No endpoint sends to an address given in a request or attaches a file: emails are written
only from events, to the addresses the owning services hold.
"""

from __future__ import annotations

from typing import Any

from flask_restful import Resource
from werkzeug.exceptions import ServiceUnavailable

from communication_service.contacts import ContactDirectory, ContactUnavailable
from communication_service.schemas import (
    CallListOut,
    CallListQuery,
    CallOutcome,
    CallOutcomeOut,
    EmailDetailOut,
    EmailListQuery,
    EmailOut,
)
from communication_service.service import calls, emails, gdpr
from communication_service.settings import CommunicationSettings
from shared.auth import Role
from shared.db import Database
from shared.web import ResourceRoute, operation


class _CommunicationResource(Resource):
    def __init__(
        self, database: Database, settings: CommunicationSettings, directory: ContactDirectory
    ) -> None:
        self.database = database
        self.settings = settings
        self.directory = directory


class EmailList(_CommunicationResource):
    """`/api/emails`"""

    @operation(
        "List emails, newest first (status, kind, therapist, patient, inquiry, date)",
        query=EmailListQuery,
        response=EmailOut,
        paginated=True,
    )
    def get(self, query: EmailListQuery) -> Any:
        return emails.list_emails(self.database.reading(), query)


class EmailItem(_CommunicationResource):
    """`/api/emails/{id}`"""

    @operation("One email with its content as sent", response=EmailDetailOut, errors=(404,))
    def get(self, email_id: int) -> Any:
        return emails.get_email(self.database.reading(), email_id)


class PhoneCallList(_CommunicationResource):
    """`/api/phone-calls`"""

    @operation(
        "The call list of a day (Europe/Berlin), in slot order, with the numbers to call",
        query=CallListQuery,
        response=CallListOut,
    )
    def get(self, query: CallListQuery) -> Any:
        return calls.call_list(self.database.reading(), query, self.directory)


class PhoneCallItem(_CommunicationResource):
    """`/api/phone-calls/{id}`"""

    @operation(
        "Record a call's outcome; a call that did not reach the therapist is booked again",
        body=CallOutcome,
        response=CallOutcomeOut,
        errors=(404, 409, 503),
    )
    def patch(self, call_id: int, body: CallOutcome) -> Any:
        try:
            return calls.record_outcome(
                self.database.unit_of_work(),
                call_id,
                body,
                self.directory,
                slot_minutes=self.settings.phone_slot_minutes,
                horizon_days=self.settings.phone_search_horizon_days,
                max_attempts=self.settings.max_call_attempts,
            )
        except ContactUnavailable:
            raise ServiceUnavailable(
                "therapist_service cannot answer now (phone hours for the next attempt); "
                "nothing was recorded: try again"
            ) from None


class PatientData(_CommunicationResource):
    """`/api/patients/{id}/data`"""

    @operation(
        "What communication holds about a patient (their part of the data export)",
        role=Role.SERVICE,
    )
    def get(self, patient_id: int) -> Any:
        return gdpr.patient_data(self.database.unit_of_work(), patient_id)


def routes(
    database: Database, settings: CommunicationSettings, directory: ContactDirectory
) -> list[ResourceRoute]:
    """The resources of this service with their dependencies."""
    deps = {"database": database, "settings": settings, "directory": directory}
    return [
        ResourceRoute(EmailList, "/api/emails", deps),
        ResourceRoute(EmailItem, "/api/emails/<id:email_id>", deps),
        ResourceRoute(PhoneCallList, "/api/phone-calls", deps),
        ResourceRoute(PhoneCallItem, "/api/phone-calls/<id:call_id>", deps),
        ResourceRoute(PatientData, "/api/patients/<id:patient_id>/data", deps),
    ]
