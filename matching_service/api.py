"""REST resources of matching_service."""

from __future__ import annotations

from typing import Any

from flask import g
from flask_restful import Resource

from matching_service import service
from matching_service.schemas import (
    BundleRunCreate,
    BundleRunListQuery,
    BundleRunOut,
    BundleRunSummaryOut,
    ContactRequest,
    ExclusionCreate,
    ExclusionOut,
    InquiryCreate,
    InquiryListQuery,
    InquiryOut,
    SearchCreate,
    SearchDetailOut,
    SearchListQuery,
    SearchOut,
    SearchStatusChange,
)
from matching_service.service import bundle_runs, inquiries
from matching_service.settings import MatchingSettings
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


class BundleRunList(_MatchingResource):
    """`/api/bundle-runs`"""

    @operation(
        "Run the bundler for a region, therapists or everywhere (a dry run writes only the "
        "run's record)",
        body=BundleRunCreate,
        response=BundleRunOut,
        status=201,
    )
    def post(self, body: BundleRunCreate) -> Any:
        return bundle_runs.run_bundles(
            self.database.unit_of_work(),
            body,
            settings=self.settings,
            created_by=current_actor(),
            correlation_id=g.request_id,
        )

    @operation(
        "List bundle runs, newest first (their lists are in the detail)",
        query=BundleRunListQuery, response=BundleRunSummaryOut, paginated=True,
    )  # fmt: skip
    def get(self, query: BundleRunListQuery) -> Any:
        return bundle_runs.list_bundle_runs(self.database.unit_of_work(), query)


class BundleRunItem(_MatchingResource):
    """`/api/bundle-runs/{id}`"""

    @operation("Get a bundle run as stored", response=BundleRunOut, errors=(404,))
    def get(self, run_id: int) -> Any:
        return bundle_runs.bundle_run(self.database.unit_of_work(), run_id)


class InquiryList(_MatchingResource):
    """`/api/inquiries`"""

    @operation(
        "Create an inquiry by hand (1..BUNDLE_MAX_SIZE patients; 409 names why the therapist "
        "or a search may not be contacted, 422 the hard constraints a pair breaks)",
        body=InquiryCreate,
        response=InquiryOut,
        status=201,
        errors=(404, 409),
    )
    def post(self, body: InquiryCreate) -> Any:
        return inquiries.create_inquiry(
            self.database.unit_of_work(), body, settings=self.settings, correlation_id=g.request_id
        )

    @operation(
        "List inquiries, newest first", query=InquiryListQuery, response=InquiryOut,
        paginated=True,
    )  # fmt: skip
    def get(self, query: InquiryListQuery) -> Any:
        return inquiries.list_inquiries(
            self.database.unit_of_work(),
            query,
            follow_up_after_days=self.settings.follow_up_after_days,
        )


class InquiryItem(_MatchingResource):
    """`/api/inquiries/{id}`"""

    @operation("Get an inquiry with its patients", response=InquiryOut, errors=(404,))
    def get(self, inquiry_id: int) -> Any:
        return inquiries.inquiry_detail(self.database.unit_of_work(), inquiry_id)


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
        ResourceRoute(BundleRunList, "/api/bundle-runs", deps),
        ResourceRoute(BundleRunItem, "/api/bundle-runs/<id:run_id>", deps),
        ResourceRoute(InquiryList, "/api/inquiries", deps),
        ResourceRoute(InquiryItem, "/api/inquiries/<id:inquiry_id>", deps),
    ]
