"""REST resources of matching_service."""

from __future__ import annotations

from typing import Any

from flask import g
from flask_restful import Resource

from matching_service import service
from matching_service.schemas import SearchCreate, SearchOut
from shared.db import Database
from shared.web import ResourceRoute, operation


class _SearchResource(Resource):
    def __init__(self, database: Database, default_budget: int) -> None:
        self.database = database
        self.default_budget = default_budget


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
            default_budget=self.default_budget,
            correlation_id=g.request_id,
        )


class SearchItem(_SearchResource):
    """`/api/patient-searches/{id}`"""

    @operation("Get a patient search", response=SearchOut, errors=(404,))
    def get(self, search_id: int) -> Any:
        return service.get_search(self.database.unit_of_work(), search_id)


def routes(database: Database, default_budget: int) -> list[ResourceRoute]:
    """The resources of this service with their dependencies."""
    deps = {"database": database, "default_budget": default_budget}
    return [
        ResourceRoute(SearchList, "/api/patient-searches", deps),
        ResourceRoute(SearchItem, "/api/patient-searches/<id:search_id>", deps),
    ]
