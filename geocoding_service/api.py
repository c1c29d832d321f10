"""REST resources of geocoding_service: parse, call one use case, render."""

from __future__ import annotations

from typing import Any

from flask_restful import Resource

from geocoding_service import service
from geocoding_service.providers import Providers
from geocoding_service.schemas import (
    DistanceOut,
    DistanceQuery,
    DistancesOut,
    DistancesRequest,
    GeocodeOut,
    GeocodeQuery,
    PlzImportOut,
    PlzImportRequest,
    PostalCodeOut,
)
from shared.auth import Role
from shared.db import Database
from shared.errors import ValidationFailed
from shared.web import ResourceRoute, operation

# 10,000 pairs of 'lat,lon' ends are about 600 kB of JSON
DISTANCES_MAX_BODY = 2 * 1024 * 1024


class _GeoResource(Resource):
    def __init__(self, database: Database, providers: Providers, plz_data: str | None) -> None:
        self.database = database
        self.providers = providers
        self.plz_data = plz_data


class PostalCodeItem(_GeoResource):
    """`/api/plz/{plz}`"""

    @operation(
        "A postal code's centroid, places and state",
        response=PostalCodeOut,
        errors=(404, 422),
    )
    def get(self, plz: str) -> Any:
        if not (len(plz) == 5 and plz.isascii() and plz.isdigit()):
            raise ValidationFailed(
                "invalid path: plz", [{"field": "plz", "message": "must be 5 digits"}]
            )
        return service.get_postal_code(self.database.unit_of_work(), plz)


class Geocode(_GeoResource):
    """`/api/geocode`"""

    @operation(
        "Coordinates of an address (Nominatim when configured, else its PLZ centroid)",
        query=GeocodeQuery,
        response=GeocodeOut,
        errors=(404,),
    )
    def get(self, query: GeocodeQuery) -> Any:
        return service.geocode(self.database.unit_of_work(), self.providers, query.address)


class Distance(_GeoResource):
    """`/api/distance`"""

    @operation(
        "Travel distance and time between two points (OSRM when configured, else estimated)",
        query=DistanceQuery,
        response=DistanceOut,
        errors=(404,),
    )
    def get(self, query: DistanceQuery) -> Any:
        return service.distance(
            self.database.unit_of_work(), self.providers, query.from_, query.to, query.mode
        )


class Distances(_GeoResource):
    """`/api/distances`"""

    @operation(
        "Estimated distances for up to 10,000 pairs, in order",
        body=DistancesRequest,
        response=DistancesOut,
        max_body_bytes=DISTANCES_MAX_BODY,
    )
    def post(self, body: DistancesRequest) -> Any:
        pairs = [(pair.from_, pair.to) for pair in body.pairs]
        return service.distances(self.database.unit_of_work(), self.providers, body.mode, pairs)


class PlzImports(_GeoResource):
    """`/api/admin/plz-imports`"""

    @operation(
        "Import GeoNames postal-code data from a path or URL the service can read",
        role=Role.ADMIN,
        body=PlzImportRequest,
        response=PlzImportOut,
    )
    def post(self, body: PlzImportRequest) -> Any:
        source = body.source or self.plz_data
        if source is None:
            raise ValidationFailed(
                "no source given and PLZ_DATA is not configured",
                [{"field": "source", "message": "name a path or URL (PLZ_DATA is unset)"}],
            )
        return service.import_postal_codes(self.database.unit_of_work(), source)


class PatientData(_GeoResource):
    """`/api/patients/{id}/data`"""

    @operation(
        "What geocoding holds about a patient (their part of the data export)", role=Role.SERVICE
    )
    def get(self, patient_id: int) -> Any:
        return service.patient_data(self.database.unit_of_work(), patient_id)


def routes(database: Database, providers: Providers, plz_data: str | None) -> list[ResourceRoute]:
    """The resources of this service with their dependencies."""
    deps = {"database": database, "providers": providers, "plz_data": plz_data}
    return [
        ResourceRoute(PostalCodeItem, "/api/plz/<plz>", deps),
        ResourceRoute(Geocode, "/api/geocode", deps),
        ResourceRoute(Distance, "/api/distance", deps),
        ResourceRoute(Distances, "/api/distances", deps),
        ResourceRoute(PlzImports, "/api/admin/plz-imports", deps),
        ResourceRoute(PatientData, "/api/patients/<id:patient_id>/data", deps),
    ]
