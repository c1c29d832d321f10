"""REST resources of patient_service: parse, call one use case, render."""

from __future__ import annotations

import io
import zipfile
from typing import Any

from flask import Response, g
from flask_restful import Resource

from patient_service import service
from patient_service.rules import SYMPTOMS, QualificationPolicy
from patient_service.schemas import (
    CreateQuery,
    ExclusionCreate,
    ExportQuery,
    PatientCreate,
    PatientExport,
    PatientListQuery,
    PatientOut,
    PatientUpdate,
    QualificationOut,
    SymptomsOut,
)
from shared.auth import Role
from shared.db import Database
from shared.errors import Forbidden
from shared.web import ResourceRoute, operation


class _PatientResource(Resource):
    def __init__(
        self,
        database: Database,
        policy: QualificationPolicy,
        fetch_parts: service.PartsFetcher,
    ) -> None:
        self.database = database
        self.policy = policy
        self.fetch_parts = fetch_parts


class PatientList(_PatientResource):
    """`/api/patients`"""

    @operation(
        "Register a patient",
        body=PatientCreate,
        query=CreateQuery,
        response=PatientOut,
        status=201,
        errors=(409,),
    )
    def post(self, body: PatientCreate, query: CreateQuery) -> Any:
        return service.register_patient(
            self.database.unit_of_work(),
            body,
            self.policy,
            force=query.force,
            correlation_id=g.request_id,
        )

    @operation("List patients", query=PatientListQuery, response=PatientOut, paginated=True)
    def get(self, query: PatientListQuery) -> Any:
        if query.search and g.role is Role.SERVICE:
            raise Forbidden("free-text search of patients is for staff only")
        return service.list_patients(self.database.reading(), query)


class PatientItem(_PatientResource):
    """`/api/patients/{id}`"""

    @operation("Get a patient (recorded in the audit log)", response=PatientOut, errors=(404,))
    def get(self, patient_id: int) -> Any:
        return service.get_patient(self.database.reading(), patient_id)

    @operation(
        "Erase a patient's personal data here and in every service (GDPR Art. 17)",
        role=Role.ADMIN,
        response=PatientOut,
        errors=(404,),
    )
    def delete(self, patient_id: int) -> Any:
        return service.erase_patient(
            self.database.unit_of_work(), patient_id, correlation_id=g.request_id
        )

    @operation(
        "Change a patient's fields or status",
        body=PatientUpdate,
        response=PatientOut,
        errors=(404, 409),
    )
    def patch(self, patient_id: int, body: PatientUpdate) -> Any:
        return service.update_patient(
            self.database.unit_of_work(), patient_id, body, self.policy, correlation_id=g.request_id
        )


class PatientQualification(_PatientResource):
    """`/api/patients/{id}/qualification`"""

    @operation(
        "Qualification check: every unmet criterion", response=QualificationOut, errors=(404,)
    )
    def get(self, patient_id: int) -> Any:
        result = service.patient_qualification(
            self.database.unit_of_work(), patient_id, self.policy
        )
        return QualificationOut(
            patient_id=patient_id,
            qualified=result.qualified,
            unmet_criteria=list(result.unmet),
            two_year_rule_flag=result.two_year_rule_flag,
            weekly_hours=result.weekly_hours,
        )


class PatientExclusions(_PatientResource):
    """`/api/patients/{id}/exclusions`"""

    @operation(
        "Never match the patient with this therapist",
        body=ExclusionCreate,
        response=PatientOut,
        status=201,
        errors=(404, 409),
    )
    def post(self, patient_id: int, body: ExclusionCreate) -> Any:
        return service.add_exclusion(
            self.database.unit_of_work(), patient_id, body, self.policy, correlation_id=g.request_id
        )


class PatientExclusion(_PatientResource):
    """`/api/patients/{id}/exclusions/{therapist_id}`"""

    @operation("Take a therapist off the patient's exclusions", status=204, errors=(404, 409))
    def delete(self, patient_id: int, therapist_id: int) -> Any:
        service.remove_exclusion(
            self.database.unit_of_work(),
            patient_id,
            therapist_id,
            self.policy,
            correlation_id=g.request_id,
        )


class PatientDataExport(_PatientResource):
    """`/api/patients/{id}/export`"""

    @operation(
        "Everything the platform holds about the patient (GDPR Art. 15)",
        role=Role.ADMIN,
        query=ExportQuery,
        response=PatientExport,
        errors=(404,),
        other_media_types=("application/zip",),
    )
    def get(self, patient_id: int, query: ExportQuery) -> Any:
        export = service.export_patient(self.database.unit_of_work(), patient_id, self.fetch_parts)
        if query.format == "json":
            return export
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            archive.writestr(f"patient-{patient_id}.json", export.model_dump_json(indent=2))
        return Response(
            buffer.getvalue(),
            mimetype="application/zip",
            headers={
                "Content-Disposition": f'attachment; filename="patient-{patient_id}-export.zip"'
            },
        )


class Symptoms(Resource):
    """`/api/symptoms`"""

    @operation("The symptom catalogue", response=SymptomsOut)
    def get(self) -> Any:
        return SymptomsOut(symptoms=list(SYMPTOMS))


def routes(
    database: Database, policy: QualificationPolicy, fetch_parts: service.PartsFetcher
) -> list[ResourceRoute]:
    """The resources of this service with their dependencies."""
    deps = {"database": database, "policy": policy, "fetch_parts": fetch_parts}
    return [
        ResourceRoute(PatientList, "/api/patients", deps),
        ResourceRoute(PatientItem, "/api/patients/<id:patient_id>", deps),
        ResourceRoute(PatientQualification, "/api/patients/<id:patient_id>/qualification", deps),
        ResourceRoute(PatientExclusions, "/api/patients/<id:patient_id>/exclusions", deps),
        ResourceRoute(
            PatientExclusion,
            "/api/patients/<id:patient_id>/exclusions/<id:therapist_id>",
            deps,
        ),
        ResourceRoute(PatientDataExport, "/api/patients/<id:patient_id>/export", deps),
        ResourceRoute(Symptoms, "/api/symptoms"),
    ]
