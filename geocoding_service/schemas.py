"""Request, response and event payload schemas of geocoding_service (one source for OpenAPI)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from geocoding_service.rules import MAX_DISTANCE_PAIRS, TravelMode, parse_point
from shared.events import EventType
from shared.web import MAX_ID

Precision = Literal["address", "plz"]
EntityType = Literal["patient", "therapist"]


def _point(text: str) -> str:
    parse_point(text)  # ValueError -> 422 naming the field
    return text


PointText = Annotated[
    str,
    StringConstraints(min_length=1, max_length=60),
    AfterValidator(_point),
    Field(
        description="A 5-digit postal code (its centroid) or 'lat,lon' in degrees",
        examples=["04109", "51.3397,12.3731"],
    ),
]


# ---------------------------------------------------------------- requests


class GeocodeQuery(BaseModel):
    """Query of `GET /api/geocode`."""

    model_config = ConfigDict(extra="forbid")

    address: Annotated[str, StringConstraints(strip_whitespace=True, min_length=3, max_length=300)]


class DistanceQuery(BaseModel):
    """Query of `GET /api/distance`."""

    model_config = ConfigDict(extra="forbid", populate_by_name=False)

    from_: PointText = Field(alias="from")
    to: PointText
    mode: TravelMode = "car"


class DistancePair(BaseModel):
    """One pair of `POST /api/distances`."""

    model_config = ConfigDict(extra="forbid")

    from_: PointText = Field(alias="from")
    to: PointText


class DistancesRequest(BaseModel):
    """Body of `POST /api/distances`: up to 10,000 pairs, answered in the same order."""

    model_config = ConfigDict(extra="forbid")

    mode: TravelMode = "car"
    pairs: Annotated[list[DistancePair], Field(min_length=1, max_length=MAX_DISTANCE_PAIRS)]


class PlzImportRequest(BaseModel):
    """Body of `POST /api/admin/plz-imports`: a path or URL the service reads, else `PLZ_DATA`."""

    model_config = ConfigDict(extra="forbid")

    source: (
        Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=1000)]
        | None
    ) = Field(
        default=None,
        description="Path on the server or http(s) URL of GeoNames data (CSV with header, "
        "DE.txt or DE.zip); omitted: the configured PLZ_DATA",
    )


# ---------------------------------------------------------------- responses


class PostalCodeOut(BaseModel):
    """`GET /api/plz/{plz}`."""

    model_config = ConfigDict(from_attributes=True)

    postal_code: str
    lat: float
    lon: float
    state: str | None
    places: list[str]


class GeocodeOut(BaseModel):
    """`GET /api/geocode`: where an address is, and how precisely."""

    lat: float
    lon: float
    precision: Precision
    source: Literal["nominatim", "plz_centroid"]
    postal_code: str | None = Field(description="the PLZ whose centroid answered (precision plz)")
    fallback_reason: str | None = Field(
        description="why the configured address geocoder did not answer (precision plz)"
    )


class DistanceOut(BaseModel):
    """`GET /api/distance`."""

    distance_km: float
    duration_min: float
    mode: TravelMode
    source: Literal["osrm", "geodesic"]
    fallback_reason: str | None = Field(
        description="why the configured router did not answer (source geodesic)"
    )


class DistanceItem(BaseModel):
    """One answer of `POST /api/distances` (null distance with `error` for an unknown PLZ)."""

    distance_km: float | None
    duration_min: float | None
    error: str | None


class DistancesOut(BaseModel):
    """`POST /api/distances`: one item per pair, in order."""

    mode: TravelMode
    source: Literal["geodesic"]
    results: list[DistanceItem]


class PlzImportOut(BaseModel):
    """What an import of PLZ data did."""

    source: str
    format: str
    rows: int
    skipped_other_countries: int
    postal_codes: int
    created: int
    updated: int
    unchanged: int
    locations_resolved: int = Field(
        description="entities unresolved before whose postal code the import made known"
    )
    seconds: float


# ---------------------------------------------------------------- published events


class LocationResolvedPayload(BaseModel):
    """Payload of location.resolved."""

    model_config = ConfigDict(extra="forbid")

    entity_type: EntityType
    entity_id: int = Field(ge=1, le=MAX_ID)
    version: int = Field(ge=1, description="+1 per location event of this entity")
    entity_version: int = Field(ge=1, description="the entity's version that was located")
    postal_code: str
    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)
    precision: Precision
    source: Literal["nominatim", "plz_centroid"]


class LocationUnresolvedPayload(BaseModel):
    """Payload of location.unresolved."""

    model_config = ConfigDict(extra="forbid")

    entity_type: EntityType
    entity_id: int = Field(ge=1, le=MAX_ID)
    version: int = Field(ge=1)
    entity_version: int = Field(ge=1)
    postal_code: str
    reason: str


TOPIC = "location-events"
LOCATION_RESOLVED = EventType("location.resolved", 1, LocationResolvedPayload, TOPIC)
LOCATION_UNRESOLVED = EventType("location.unresolved", 1, LocationUnresolvedPayload, TOPIC)


# ---------------------------------------------------------------- consumed events


class PatientLocationView(BaseModel):
    """What geocoding reads from patient.created / updated: the postal code only."""

    model_config = ConfigDict(extra="ignore")

    patient_id: int = Field(ge=1, le=MAX_ID)
    version: int = Field(ge=1)
    postal_code: str


class TherapistLocationView(BaseModel):
    """What geocoding reads from therapist.created / updated: the practice address."""

    model_config = ConfigDict(extra="ignore")

    therapist_id: int = Field(ge=1, le=MAX_ID)
    version: int = Field(ge=1)
    postal_code: str
    street: str | None = None
    city: str | None = None


PATIENT_TOPIC = "patient-events"
THERAPIST_TOPIC = "therapist-events"
PATIENT_EVENTS = tuple(
    EventType(name, 1, PatientLocationView, PATIENT_TOPIC)
    for name in ("patient.created", "patient.updated")
)


class PatientErasedView(BaseModel):
    """What geocoding reads from patient.erased (tolerant of new fields)."""

    model_config = ConfigDict(extra="ignore")

    patient_id: int


PATIENT_ERASED = EventType("patient.erased", 1, PatientErasedView, PATIENT_TOPIC)
THERAPIST_EVENTS = tuple(
    EventType(name, 1, TherapistLocationView, THERAPIST_TOPIC)
    for name in ("therapist.created", "therapist.updated")
)
