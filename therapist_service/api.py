"""REST resources of therapist_service: parse, call one use case, render."""

from __future__ import annotations

from typing import Any

from flask import g
from flask_restful import Resource

from shared.auth import Role
from shared.db import Database
from shared.errors import NotFound
from shared.runtime import ServiceRuntime
from shared.web import PageQuery, ResourceRoute, operation, reject_control_characters
from therapist_service import service
from therapist_service.directory.records import SourceFile
from therapist_service.rules import PRACTICE_KEY
from therapist_service.schemas import (
    BlockRequest,
    DirectoryFile,
    DirectoryImportOut,
    DirectoryImportSummary,
    PracticeOut,
    TherapistCreate,
    TherapistListQuery,
    TherapistOut,
    TherapistUpdate,
)
from therapist_service.settings import DIRECTORY_IMPORT_BATCH_SIZE, DIRECTORY_IMPORT_MAX_BYTES


class _TherapistResource(Resource):
    def __init__(self, database: Database) -> None:
        self.database = database


class TherapistList(_TherapistResource):
    """`/api/therapists`"""

    @operation(
        "Add a therapist (outside the directory)",
        body=TherapistCreate,
        response=TherapistOut,
        status=201,
        errors=(409,),
    )
    def post(self, body: TherapistCreate) -> Any:
        return service.create_therapist(
            self.database.unit_of_work(), body, correlation_id=g.request_id
        )

    @operation("List therapists", query=TherapistListQuery, response=TherapistOut, paginated=True)
    def get(self, query: TherapistListQuery) -> Any:
        return service.list_therapists(self.database.reading(), query)


class TherapistItem(_TherapistResource):
    """`/api/therapists/{id}`"""

    @operation("Get a therapist", response=TherapistOut, errors=(404,))
    def get(self, therapist_id: int) -> Any:
        return service.get_therapist(self.database.reading(), therapist_id)

    @operation(
        "Change a therapist's fields (or retire / reactivate it)",
        body=TherapistUpdate,
        response=TherapistOut,
        errors=(404,),
    )
    def patch(self, therapist_id: int, body: TherapistUpdate) -> Any:
        return service.update_therapist(
            self.database.unit_of_work(), therapist_id, body, correlation_id=g.request_id
        )


class TherapistBlock(_TherapistResource):
    """`/api/therapists/{id}/block`"""

    @operation(
        "Block a therapist: never contacted until unblocked",
        body=BlockRequest,
        response=TherapistOut,
        errors=(404, 409),
    )
    def post(self, therapist_id: int, body: BlockRequest) -> Any:
        return service.block_therapist(
            self.database.unit_of_work(), therapist_id, body.reason, correlation_id=g.request_id
        )


class TherapistUnblock(_TherapistResource):
    """`/api/therapists/{id}/unblock`"""

    @operation("Unblock a therapist", response=TherapistOut, errors=(404, 409))
    def post(self, therapist_id: int) -> Any:
        return service.unblock_therapist(
            self.database.unit_of_work(), therapist_id, correlation_id=g.request_id
        )


class Practice(_TherapistResource):
    """`/api/practices/{key}`"""

    @operation(
        "The therapists of one practice (one shared email address)",
        response=PracticeOut,
        errors=(404,),
    )
    def get(self, practice_key: str) -> Any:
        if not PRACTICE_KEY.fullmatch(practice_key):
            raise NotFound("no practice has this key")
        members = service.practice_members(self.database.unit_of_work(), practice_key)
        return PracticeOut(
            practice_key=practice_key,
            members=[TherapistOut.model_validate(member) for member in members],
        )


def routes(runtime: ServiceRuntime) -> list[ResourceRoute]:
    """The resources of this service with their dependencies."""
    deps = {"database": runtime.database}
    return [
        ResourceRoute(TherapistList, "/api/therapists", deps),
        ResourceRoute(TherapistItem, "/api/therapists/<id:therapist_id>", deps),
        ResourceRoute(TherapistBlock, "/api/therapists/<id:therapist_id>/block", deps),
        ResourceRoute(TherapistUnblock, "/api/therapists/<id:therapist_id>/unblock", deps),
        ResourceRoute(Practice, "/api/practices/<practice_key>", deps),
        ResourceRoute(
            therapist_import_list(
                getattr(runtime.settings, "directory_import_max_bytes", DIRECTORY_IMPORT_MAX_BYTES)
            ),
            "/api/therapist-imports",
            {
                **deps,
                "batch_size": getattr(
                    runtime.settings, "directory_import_batch_size", DIRECTORY_IMPORT_BATCH_SIZE
                ),
            },
        ),
        ResourceRoute(TherapistImportItem, "/api/therapist-imports/<id:import_id>", deps),
    ]


def therapist_import_list(max_body_bytes: int) -> type[Resource]:
    """`/api/therapist-imports`, taking directory files of up to `max_body_bytes`.

    A class per app because the body limit is a setting (DIRECTORY_IMPORT_MAX_BYTES) and
    `@operation` is read when the class is made.
    """

    class TherapistImportList(_TherapistResource):
        """`/api/therapist-imports`"""

        def __init__(self, database: Database, batch_size: int) -> None:
            super().__init__(database)
            self.batch_size = batch_size

        @operation(
            "Import one 116117 directory file (one postal-code area)",
            role=Role.ADMIN,
            body=DirectoryFile,
            response=DirectoryImportOut,
            status=201,
            max_body_bytes=max_body_bytes,
            check_text=False,  # entries are checked one by one: a bad one is reported
        )
        def post(self, body: DirectoryFile) -> Any:
            # the rest of the body as every body is checked; the import checks each entry
            reject_control_characters(body.model_copy(update={"therapists": []}), "body")
            return service.import_directory(
                self.database.unit_of_work(),
                [SourceFile(None, body.therapists)],
                source=f"api request {g.request_id}",
                batch_size=self.batch_size,
                correlation_id=g.request_id,
            )

        @operation(
            "List directory import reports, newest first (counts only)",
            role=Role.ADMIN,
            query=PageQuery,
            response=DirectoryImportSummary,
            paginated=True,
        )
        def get(self, query: PageQuery) -> Any:
            return service.list_directory_imports(self.database.unit_of_work(), query)

    return TherapistImportList


class TherapistImportItem(_TherapistResource):
    """`/api/therapist-imports/{id}`"""

    @operation(
        "One directory import report", role=Role.ADMIN, response=DirectoryImportOut, errors=(404,)
    )
    def get(self, import_id: int) -> Any:
        return service.get_directory_import(self.database.unit_of_work(), import_id)
