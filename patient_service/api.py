"""REST resources of patient_service: parse, call one use case, render."""

from __future__ import annotations

from typing import Any

from flask import g
from flask_restful import Resource

from patient_service import service
from patient_service.rules import QualificationPolicy
from patient_service.schemas import (
    CreateQuery,
    PatientCreate,
    PatientListQuery,
    PatientOut,
    PatientUpdate,
    QualificationOut,
)
from shared.db import Database
from shared.web import ResourceRoute, operation


class _PatientResource(Resource):
    def __init__(self, database: Database, policy: QualificationPolicy) -> None:
        self.database = database
        self.policy = policy


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
        return service.list_patients(self.database.unit_of_work(), query)


class PatientItem(_PatientResource):
    """`/api/patients/{id}`"""

    @operation("Get a patient", response=PatientOut, errors=(404,))
    def get(self, patient_id: int) -> Any:
        return service.get_patient(self.database.unit_of_work(), patient_id)

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


def routes(database: Database, policy: QualificationPolicy) -> list[ResourceRoute]:
    """The resources of this service with their dependencies."""
    deps = {"database": database, "policy": policy}
    return [
        ResourceRoute(PatientList, "/api/patients", deps),
        ResourceRoute(PatientItem, "/api/patients/<id:patient_id>", deps),
        ResourceRoute(PatientQualification, "/api/patients/<id:patient_id>/qualification", deps),
    ]
