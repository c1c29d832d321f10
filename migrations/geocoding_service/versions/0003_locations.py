"""geocoding_service: postal codes, geocode and route caches, geocoder throttle, locations.

Revision ID: geocoding_0003
Revises: geocoding_0002
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

from shared.db import UTCDateTime

revision = "geocoding_0003"
down_revision = "geocoding_0002"
branch_labels = None
depends_on = None

SCHEMA = "geocoding_service"


def _created_at(name: str = "created_at") -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(name, UTCDateTime, nullable=False, server_default=sa.text("now()"))


def upgrade() -> None:
    op.create_table(
        "postal_codes",
        sa.Column("postal_code", sa.String(5, collation="C")),
        sa.Column("lat", sa.Double, nullable=False),
        sa.Column("lon", sa.Double, nullable=False),
        sa.Column("state", sa.String(100)),
        sa.Column("places", JSONB, nullable=False),
        _created_at("updated_at"),
        sa.PrimaryKeyConstraint("postal_code", name="pk_postal_codes"),
        schema=SCHEMA,
    )
    op.create_table(
        "geocode_cache",
        sa.Column("query", sa.Text),
        sa.Column("found", sa.Boolean, nullable=False),
        sa.Column("lat", sa.Double),
        sa.Column("lon", sa.Double),
        _created_at(),
        sa.PrimaryKeyConstraint("query", name="pk_geocode_cache"),
        schema=SCHEMA,
    )
    op.create_table(
        "route_cache",
        sa.Column("profile", sa.String(50)),
        sa.Column("from_lat", sa.Double),
        sa.Column("from_lon", sa.Double),
        sa.Column("to_lat", sa.Double),
        sa.Column("to_lon", sa.Double),
        sa.Column("distance_m", sa.Double, nullable=False),
        sa.Column("duration_s", sa.Double, nullable=False),
        _created_at(),
        sa.PrimaryKeyConstraint(
            "profile", "from_lat", "from_lon", "to_lat", "to_lon", name="pk_route_cache"
        ),
        schema=SCHEMA,
    )
    throttle = op.create_table(
        "geocoder_throttle",
        sa.Column("id", sa.Integer, autoincrement=False),
        sa.Column("last_request_at", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_geocoder_throttle"),
        sa.CheckConstraint("id = 1", name="single_row"),
        schema=SCHEMA,
    )
    op.execute(
        sa.insert(throttle).values(id=1, last_request_at=sa.text("'1970-01-01 00:00:00+00'"))
    )
    op.create_table(
        "entity_locations",
        sa.Column("entity_type", sa.String(20)),
        sa.Column("entity_id", sa.Integer, autoincrement=False),
        sa.Column("source_version", sa.Integer, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("postal_code", sa.String(5, collation="C"), nullable=False),
        sa.Column("street", sa.String(200)),
        sa.Column("city", sa.String(200)),
        sa.Column("resolved", sa.Boolean, nullable=False),
        sa.Column("lat", sa.Double),
        sa.Column("lon", sa.Double),
        sa.Column("precision", sa.String(10)),
        sa.Column("source", sa.String(30)),
        sa.Column("reason", sa.String(100)),
        sa.Column("address_pending", sa.Boolean, nullable=False, server_default=sa.text("false")),
        sa.Column("address_attempts", sa.Integer, nullable=False, server_default=sa.text("0")),
        sa.Column("address_retry_at", UTCDateTime),
        _created_at("updated_at"),
        sa.PrimaryKeyConstraint("entity_type", "entity_id", name="pk_entity_locations"),
        sa.CheckConstraint(
            "entity_type IN ('patient', 'therapist')",
            name="entity_type_values",
        ),
        schema=SCHEMA,
    )
    op.create_index(
        "ix_entity_locations_address_pending",
        "entity_locations",
        ["address_retry_at"],
        schema=SCHEMA,
        postgresql_where=sa.text("address_pending"),
    )
    op.create_index(
        "ix_entity_locations_unresolved",
        "entity_locations",
        ["postal_code"],
        schema=SCHEMA,
        postgresql_where=sa.text("NOT resolved"),
    )


def downgrade() -> None:
    for table in (
        "entity_locations",
        "geocoder_throttle",
        "route_cache",
        "geocode_cache",
        "postal_codes",
    ):
        op.drop_table(table, schema=SCHEMA)
