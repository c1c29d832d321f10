"""REST resources of matching_service."""

from __future__ import annotations

from typing import Any

from flask import g
from flask_restful import Resource

from matching_service import service
from matching_service.schemas import (
    ContactRequest,
    ExclusionCreate,
    ExclusionOut,
    SearchCreate,
    SearchDetailOut,
    SearchListQuery,
    SearchOut,
    SearchStatusChange,
)
from matching_service.settings import MatchingSettings
from shared.db import Database
from shared.web import ResourceRoute, operation


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
    ]
