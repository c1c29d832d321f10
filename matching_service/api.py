"""REST resources of matching_service."""

from __future__ import annotations

from typing import Any

from flask import Response, g
from flask_restful import Resource

from matching_service import service
from matching_service.schemas import (
    AnalyticsQuery,
    AnalyticsSummaryOut,
    ContactabilityOut,
    ContactabilityQuery,
    ContactLogOut,
    ContactLogQuery,
    ContactRequest,
    CoolingOverride,
    ExclusionCreate,
    ExclusionOut,
    SearchCreate,
    SearchDetailOut,
    SearchListQuery,
    SearchOut,
    SearchStatusChange,
)
from matching_service.service import analytics, contactability
from matching_service.service.contact_log import contact_log, contact_log_csv
from matching_service.settings import MatchingSettings
from shared.auth import Role
from shared.db import Database
from shared.web import ResourceRoute, current_actor, operation


class _MatchingResource(Resource):
    def __init__(self, database: Database, settings: MatchingSettings) -> None:
        self.database = database
        self.settings = settings


_SearchResource = _MatchingResource


class SearchList(_SearchResource):
    """`/api/patient-searches`"""

    @operation(
        "Start a search for a qualified patient",
        body=SearchCreate,
        response=SearchOut,
        status=201,
        errors=(404, 409),
    )
    def post(self, body: SearchCreate) -> Any:
        return service.start_search(
            self.database.unit_of_work(),
            body.patient_id,
            default_budget=self.settings.default_contact_budget,
            correlation_id=g.request_id,
        )

    @operation(
        "List patient searches, longest waiting first",
        query=SearchListQuery,
        response=SearchOut,
        paginated=True,
    )
    def get(self, query: SearchListQuery) -> Any:
        return service.list_searches(self.database.unit_of_work(), query)


class SearchItem(_SearchResource):
    """`/api/patient-searches/{id}`"""

    @operation("Get a patient search", response=SearchDetailOut, errors=(404,))
    def get(self, search_id: int) -> Any:
        return service.search_detail(self.database.unit_of_work(), search_id)

    @operation(
        "Pause, resume or cancel a search (409 lists the allowed statuses)",
        body=SearchStatusChange,
        response=SearchDetailOut,
        errors=(404, 409),
    )
    def patch(self, search_id: int, body: SearchStatusChange) -> Any:
        return service.change_search_status(
            self.database.unit_of_work(), search_id, body, correlation_id=g.request_id
        )


class SearchContactRequests(_SearchResource):
    """`/api/patient-searches/{id}/contact-requests`"""

    @operation(
        "Grant a search more contacts (they add up)",
        body=ContactRequest,
        response=SearchDetailOut,
        errors=(404, 409),
    )
    def post(self, search_id: int, body: ContactRequest) -> Any:
        return service.grant_contacts(self.database.unit_of_work(), search_id, body.count)


class SearchExclusions(_SearchResource):
    """`/api/patient-searches/{id}/exclusions`"""

    @operation(
        "Exclude a therapist from a search (409 if already excluded)",
        body=ExclusionCreate,
        response=ExclusionOut,
        status=201,
        errors=(404, 409),
    )
    def post(self, search_id: int, body: ExclusionCreate) -> Any:
        return service.exclude_therapist(self.database.unit_of_work(), search_id, body)


class Contactability(_MatchingResource):
    """`/api/contactability/{therapist_id}`"""

    @operation(
        "Whether a therapist may get an inquiry (on `as_of`), with every reason why not",
        query=ContactabilityQuery,
        response=ContactabilityOut,
        errors=(404,),
    )
    def get(self, therapist_id: int, query: ContactabilityQuery) -> Any:
        return contactability.therapist_contactability(
            self.database.unit_of_work(), therapist_id, query.as_of
        )


class CoolingOverrides(_MatchingResource):
    """`/api/contactability/{therapist_id}/override`"""

    @operation(
        "End the cooling period of the therapist's practice early, with a documented reason "
        "(409 when the practice is not cooling)",
        role=Role.ADMIN,
        body=CoolingOverride,
        response=ContactabilityOut,
        errors=(404, 409),
    )
    def post(self, therapist_id: int, body: CoolingOverride) -> Any:
        return contactability.override_cooling(
            self.database.unit_of_work(),
            therapist_id,
            body.reason,
            actor=current_actor(),
            correlation_id=g.request_id,
        )


class SearchContactLog(_SearchResource):
    """`/api/patient-searches/{id}/contact-log`"""

    @operation(
        "Every inquiry the search's patient was in, with the answers: the evidence for the "
        "insurer (`?format=csv`: text/csv with German headers)",
        query=ContactLogQuery,
        response=ContactLogOut,
        errors=(404,),
        other_media_types=("text/csv",),
    )
    def get(self, search_id: int, query: ContactLogQuery) -> Any:
        entries = contact_log(self.database.unit_of_work(), search_id)
        if query.format == "json":
            return entries
        return Response(
            contact_log_csv(entries).encode("utf-8-sig"),  # the BOM tells Excel it is UTF-8
            mimetype="text/csv",
            headers={
                "Content-Disposition": f'attachment; filename="kontaktprotokoll-{search_id}.csv"'
            },
        )


class AnalyticsSummary(_MatchingResource):
    """`/api/analytics/summary`"""

    @operation(
        "The numbers the business watches, for a window of days and a postal-code region",
        query=AnalyticsQuery,
        response=AnalyticsSummaryOut,
    )
    def get(self, query: AnalyticsQuery) -> Any:
        return analytics.summary(
            self.database.unit_of_work(),
            window_from=query.from_,
            window_to=query.to,
            postal_code_prefix=query.postal_code_prefix,
        )


def routes(database: Database, settings: MatchingSettings) -> list[ResourceRoute]:
    """The resources of this service with their dependencies."""
    deps = {"database": database, "settings": settings}
    return [
        ResourceRoute(SearchList, "/api/patient-searches", deps),
        ResourceRoute(SearchItem, "/api/patient-searches/<id:search_id>", deps),
        ResourceRoute(
            SearchContactRequests, "/api/patient-searches/<id:search_id>/contact-requests", deps
        ),
        ResourceRoute(SearchExclusions, "/api/patient-searches/<id:search_id>/exclusions", deps),
        ResourceRoute(Contactability, "/api/contactability/<id:therapist_id>", deps),
        ResourceRoute(CoolingOverrides, "/api/contactability/<id:therapist_id>/override", deps),
        ResourceRoute(SearchContactLog, "/api/patient-searches/<id:search_id>/contact-log", deps),
        ResourceRoute(AnalyticsSummary, "/api/analytics/summary", deps),
    ]
