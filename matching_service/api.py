"""REST resources of matching_service."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, Response, g, render_template, request
from flask_restful import Resource

from matching_service import service
from matching_service.placement.links import InvalidLink, LinkClaim, verify_link
from matching_service.schemas import (
    AnalyticsQuery,
    AnalyticsSummaryOut,
    BundleRunCreate,
    BundleRunListQuery,
    BundleRunOut,
    BundleRunSummaryOut,
    ContactabilityOut,
    ContactabilityQuery,
    ContactLogOut,
    ContactLogQuery,
    ContactRequest,
    CoolingOverride,
    ExclusionCreate,
    ExclusionOut,
    InquiryAnswerOut,
    InquiryCreate,
    InquiryListQuery,
    InquiryOut,
    InquiryResponseIn,
    PlacementIn,
    SearchCreate,
    SearchDetailOut,
    SearchListQuery,
    SearchOut,
    SearchStatusChange,
    TrialOutcomeIn,
)
from matching_service.service import (
    analytics,
    answers,
    bundle_runs,
    contactability,
    erasure,
    inquiries,
    placements,
)
from matching_service.service.contact_log import contact_log, contact_log_csv
from matching_service.settings import MatchingSettings
from shared.auth import Role
from shared.db import Database, utcnow
from shared.errors import Conflict, NotFound
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
        return service.list_searches(self.database.reading(), query)


class SearchItem(_SearchResource):
    """`/api/patient-searches/{id}`"""

    @operation("Get a patient search", response=SearchDetailOut, errors=(404,))
    def get(self, search_id: int) -> Any:
        return service.search_detail(self.database.reading(), search_id)

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


# ---- answers, trial outcomes and manual placements


class InquiryResponse(_MatchingResource):
    """`/api/inquiries/{id}/response`"""

    @operation(
        "Record a therapist's answer for every patient of an inquiry (first acceptance wins)",
        body=InquiryResponseIn,
        response=InquiryAnswerOut,
        errors=(404, 409),
    )
    def put(self, inquiry_id: int, body: InquiryResponseIn) -> Any:
        return answers.record_response(
            self.database.unit_of_work(),
            inquiry_id,
            body,
            self.settings,
            correlation_id=g.request_id,
        )


class SearchTrialOutcome(_MatchingResource):
    """`/api/patient-searches/{id}/trial-outcome`"""

    @operation(
        "Confirm the place after trial sessions, or record that the trial failed",
        body=TrialOutcomeIn,
        response=SearchDetailOut,
        errors=(404, 409),
    )
    def post(self, search_id: int, body: TrialOutcomeIn) -> Any:
        return placements.record_trial_outcome(
            self.database.unit_of_work(), search_id, body.outcome, correlation_id=g.request_id
        )


class SearchPlacements(_MatchingResource):
    """`/api/patient-searches/{id}/placements`"""

    @operation(
        "Place the patient with a therapist who called with an opening (manual placement)",
        body=PlacementIn,
        response=SearchDetailOut,
        status=201,
        errors=(404, 409),
    )
    def post(self, search_id: int, body: PlacementIn) -> Any:
        return placements.place_manually(
            self.database.unit_of_work(),
            search_id,
            body.therapist_id,
            self.settings,
            correlation_id=g.request_id,
        )


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
            self.database.reading(),
            query,
            follow_up_after_days=self.settings.follow_up_after_days,
        )


class InquiryItem(_MatchingResource):
    """`/api/inquiries/{id}`"""

    @operation("Get an inquiry with its patients", response=InquiryOut, errors=(404,))
    def get(self, inquiry_id: int) -> Any:
        return inquiries.inquiry_detail(self.database.reading(), inquiry_id)


class PatientData(_MatchingResource):
    """`/api/patients/{id}/data`"""

    @operation(
        "What matching holds about a patient (their part of the data export)", role=Role.SERVICE
    )
    def get(self, patient_id: int) -> Any:
        return erasure.patient_data(self.database.unit_of_work(), patient_id)


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
        ResourceRoute(InquiryResponse, "/api/inquiries/<id:inquiry_id>/response", deps),
        ResourceRoute(
            SearchTrialOutcome, "/api/patient-searches/<id:search_id>/trial-outcome", deps
        ),
        ResourceRoute(SearchPlacements, "/api/patient-searches/<id:search_id>/placements", deps),
        ResourceRoute(BundleRunList, "/api/bundle-runs", deps),
        ResourceRoute(BundleRunItem, "/api/bundle-runs/<id:run_id>", deps),
        ResourceRoute(InquiryList, "/api/inquiries", deps),
        ResourceRoute(InquiryItem, "/api/inquiries/<id:inquiry_id>", deps),
        ResourceRoute(PatientData, "/api/patients/<id:patient_id>/data", deps),
    ]


# ---- answer links: public pages, the signed token is the authority

OUTCOME_LABELS = {
    "accepted": "Zusage: Ich biete einen Therapieplatz an",
    "in_trial_sessions": "Probatorische Sitzungen sind vereinbart",
    "rejected_capacity": "Absage: derzeit kein freier Platz",
    "rejected_unsuitable": "Absage: passt fachlich nicht",
    "rejected_other": "Absage aus anderen Gründen",
    "no_show": "Nicht zum Termin erschienen",
}
_EPOCH = datetime.fromtimestamp(0, UTC)


def answer_link_pages(database: Database, settings: MatchingSettings) -> Blueprint:
    """`/answers/{token}`: GET shows what the link records (and changes nothing: mail
    scanners open links); POST records it, once."""
    pages = Blueprint("answer_links", __name__, template_folder="templates")
    secret = settings.answer_link_secret.get_secret_value()

    @pages.route("/answers/<path:token>", methods=["GET", "POST"])
    def answer_link(token: str) -> Response:
        try:
            claim = _verified(secret, token)
            if request.method == "POST":
                recorded = answers.record_link_answer(
                    database.unit_of_work(), claim, settings, correlation_id=g.request_id
                )
                return _page("answer_recorded.html", 200, answer=recorded, claim=claim)
            view = answers.link_view(database.unit_of_work(), claim)
            return _page("answer_confirm.html", 200, view=view, claim=claim)
        except _LinkRefused as refused:
            return _page("answer_invalid.html", refused.status, message=refused.message)
        except NotFound:
            return _page("answer_invalid.html", 404, message="Diese Anfrage gibt es nicht.")
        except Conflict:
            message = "Diese Anfrage wurde ohne Antwort geschlossen; bitte rufen Sie uns an."
            return _page("answer_invalid.html", 409, message=message)

    return pages


class _LinkRefused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def _verified(secret: str, token: str) -> LinkClaim:
    """The link's claim; 410 for a genuine link past its date, 400 for anything else."""
    try:
        return verify_link(secret, token, utcnow())
    except InvalidLink:
        pass
    try:
        verify_link(secret, token, _EPOCH)
    except InvalidLink:
        raise _LinkRefused(400, "Dieser Link ist ungültig.") from None
    raise _LinkRefused(410, "Dieser Link ist abgelaufen; bitte rufen Sie uns an.")


def _page(template: str, status: int, **context: Any) -> Response:
    html = render_template(template, labels=OUTCOME_LABELS, **context)
    response = Response(html, status=status, mimetype="text/html")
    response.headers["Cache-Control"] = "no-store"
    return response
