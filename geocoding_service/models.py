"""SQLAlchemy models of geocoding_service, in the `geocoding_service` schema."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, Double, Index, PrimaryKeyConstraint, String, Text, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shared.db import TYPE_ANNOTATION_MAP, schema_metadata, utcnow
from shared.runtime import infrastructure_of

SCHEMA = "geocoding_service"


class Base(DeclarativeBase):
    """Declarative base of this service's schema."""

    metadata = schema_metadata(SCHEMA)
    type_annotation_map = {**TYPE_ANNOTATION_MAP, float: Double}


INFRA = infrastructure_of(Base.metadata)


class PostalCode(Base):
    """One German PLZ from GeoNames: centroid of its places, the places, the state."""

    __tablename__ = "postal_codes"

    postal_code: Mapped[str] = mapped_column(String(5, collation="C"), primary_key=True)
    lat: Mapped[float]
    lon: Mapped[float]
    state: Mapped[str | None] = mapped_column(String(100))
    places: Mapped[list[str]] = mapped_column(JSONB)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=text("now()"))


class GeocodeCache(Base):
    """Answers of the address geocoder (Nominatim), found or not, by normalised query."""

    __tablename__ = "geocode_cache"

    query: Mapped[str] = mapped_column(Text, primary_key=True)
    found: Mapped[bool]
    lat: Mapped[float | None]
    lon: Mapped[float | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=text("now()"))


class RouteCache(Base):
    """Routes from OSRM by profile and end points (degrees rounded to 5 decimals, ~1 m)."""

    __tablename__ = "route_cache"
    __table_args__ = (PrimaryKeyConstraint("profile", "from_lat", "from_lon", "to_lat", "to_lon"),)

    profile: Mapped[str] = mapped_column(String(50))
    from_lat: Mapped[float]
    from_lon: Mapped[float]
    to_lat: Mapped[float]
    to_lon: Mapped[float]
    distance_m: Mapped[float]
    duration_s: Mapped[float]
    created_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=text("now()"))


class GeocoderThrottle(Base):
    """One row: when the last request to the address geocoder was allowed to start.

    Every process of the service takes this row lock before it calls Nominatim and waits
    until the minimum interval has passed since, so the usage policy holds for all of them.
    """

    __tablename__ = "geocoder_throttle"
    __table_args__ = (CheckConstraint("id = 1", name="single_row"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    last_request_at: Mapped[datetime]


class EntityLocation(Base):
    """Where geocoding placed a patient or therapist, and what it last published about it.

    `source_version` is the entity's own version (from its events), `version` counts the
    location events published for it. A therapist whose address still waits for the
    geocoder has `address_pending` (claimed by a worker until `address_retry_at`).
    """

    __tablename__ = "entity_locations"
    __table_args__ = (
        PrimaryKeyConstraint("entity_type", "entity_id"),
        CheckConstraint("entity_type IN ('patient', 'therapist')", name="entity_type_values"),
        Index(
            "ix_entity_locations_address_pending",
            "address_retry_at",
            postgresql_where=text("address_pending"),
        ),
        Index(
            "ix_entity_locations_unresolved", "postal_code", postgresql_where=text("NOT resolved")
        ),
    )

    entity_type: Mapped[str] = mapped_column(String(20))
    entity_id: Mapped[int] = mapped_column(autoincrement=False)
    source_version: Mapped[int]
    version: Mapped[int]
    postal_code: Mapped[str] = mapped_column(String(5, collation="C"))
    street: Mapped[str | None] = mapped_column(String(200))
    city: Mapped[str | None] = mapped_column(String(200))
    resolved: Mapped[bool]
    lat: Mapped[float | None]
    lon: Mapped[float | None]
    precision: Mapped[str | None] = mapped_column(String(10))
    source: Mapped[str | None] = mapped_column(String(30))
    reason: Mapped[str | None] = mapped_column(String(100))
    address_pending: Mapped[bool] = mapped_column(server_default=text("false"))
    address_attempts: Mapped[int] = mapped_column(server_default=text("0"))
    address_retry_at: Mapped[datetime | None]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=text("now()"))
