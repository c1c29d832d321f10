"""Use cases of geocoding_service: each takes a unit of work (and the configured providers).

Use cases that call a provider over HTTP (geocode, distance, the address loop) never hold a
transaction open during the call: they read the cache in one short transaction, take a turn
at the shared rate limit in another, call, and store the answer in a third.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import numpy as np
from sqlalchemy import ColumnElement, delete, func, literal_column, select, tuple_, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import OperationalError

from geocoding_service.models import (
    INFRA,
    EntityLocation,
    GeocodeCache,
    GeocoderThrottle,
    PostalCode,
    RouteCache,
)
from geocoding_service.plz_data import PlzDataError, PostalCodeRecord, parse
from geocoding_service.providers import Providers, ProviderUnavailable, fetch_source
from geocoding_service.rules import (
    Coordinates,
    Location,
    estimate_between,
    haversine_km,
    location_by_centroid,
    normalise_address,
    parse_point,
    postal_codes_in,
    retry_delay_seconds,
    therapist_address,
)
from geocoding_service.schemas import LOCATION_RESOLVED, LOCATION_UNRESOLVED
from shared import audit
from shared.db import UnitOfWork, utcnow
from shared.errors import NotFound, ValidationFailed
from shared.outbox import PendingEvent

PRODUCER = "geocoding_service"
IMPORT_CHUNK = 2000
ADDRESS_LEASE = timedelta(minutes=2)  # a claimed address is retried by others after this
log = logging.getLogger(__name__)

Progress = Callable[[str], None]


class InvalidPlzData(ValidationFailed):
    """PLZ data that cannot be read or imported; details name the line and the reason."""

    code = "invalid_plz_data"


# ---------------------------------------------------------------- postal codes


def get_postal_code(uow: UnitOfWork, postal_code: str) -> PostalCode:
    """One PLZ with its centroid, places and state, or NotFound."""
    with uow:
        found = uow.session.get(PostalCode, postal_code)
    if found is None:
        raise NotFound(f"postal code {postal_code} is not known", {"postal_code": postal_code})
    return found


@dataclass(frozen=True)
class ImportReport:
    """What an import of PLZ data read and changed."""

    source: str
    format: str
    rows: int
    skipped_other_countries: int
    postal_codes: int
    created: int
    updated: int
    unchanged: int
    locations_resolved: int
    seconds: float


def import_postal_codes(
    uow: UnitOfWork, source: str, *, progress: Progress | None = None
) -> ImportReport:
    """Load GeoNames data from a path or URL: one centroid per PLZ, all or nothing.

    A second import of the same data changes nothing. Entities that stayed unresolved for
    want of their postal code are located (and announced) in the same transaction, and
    entities located at a centroid the import moved are moved with it (and announced).
    """
    say = progress or (lambda _message: None)
    started = time.perf_counter()
    say(f"reading {source}")
    try:
        data = parse(fetch_source(source))
    except PlzDataError as exc:
        details = [{"field": "source", **problem} for problem in exc.problems] or [
            {"field": "source", "message": exc.message}
        ]
        raise InvalidPlzData(f"{source}: {exc.message}", details) from None
    say(
        f"read {data.rows} rows ({data.format}): {len(data.postal_codes)} postal codes; "
        f"{data.skipped_other_countries} rows of other countries skipped"
    )
    created = updated = 0
    total = len(data.postal_codes)
    changed: list[str] = []
    with uow:
        for start in range(0, len(data.postal_codes), IMPORT_CHUNK):
            chunk = data.postal_codes[start : start + IMPORT_CHUNK]
            for postal_code, inserted in uow.session.execute(_upsert_postal_codes(chunk)):
                created += inserted
                updated += not inserted
                if not inserted:
                    changed.append(postal_code)
            say(f"written {min(start + IMPORT_CHUNK, total)}/{total} postal codes")
        resolved = _locate_unresolved(uow)
        moved = _relocate_moved_centroids(uow, changed)
        audit.record(
            uow.session,
            INFRA.audit_events,
            "import",
            "postal_codes",
            source[:100],
            ["postal_codes"],
        )
        uow.commit()
    report = ImportReport(
        source=source,
        format=data.format,
        rows=data.rows,
        skipped_other_countries=data.skipped_other_countries,
        postal_codes=len(data.postal_codes),
        created=created,
        updated=updated,
        unchanged=len(data.postal_codes) - created - updated,
        locations_resolved=resolved,
        seconds=round(time.perf_counter() - started, 3),
    )
    say(
        f"done in {report.seconds:.1f} s: {created} created, {updated} updated, "
        f"{report.unchanged} unchanged; {resolved} unresolved locations now resolved; "
        f"{moved} locations moved with their postal code's centroid"
    )
    return report


def _upsert_postal_codes(chunk: Sequence[PostalCodeRecord]) -> Any:
    """INSERT .. ON CONFLICT DO UPDATE only where something differs, RETURNING inserted?"""
    statement = pg_insert(PostalCode).values(
        [
            {
                "postal_code": record.postal_code,
                "lat": record.lat,
                "lon": record.lon,
                "state": record.state,
                "places": list(record.places),
            }
            for record in chunk
        ]
    )
    new = statement.excluded
    return statement.on_conflict_do_update(
        index_elements=[PostalCode.postal_code],
        set_={
            "lat": new.lat,
            "lon": new.lon,
            "state": new.state,
            "places": new.places,
            "updated_at": func.now(),
        },
        where=tuple_(
            PostalCode.lat, PostalCode.lon, PostalCode.state, PostalCode.places
        ).is_distinct_from(tuple_(new.lat, new.lon, new.state, new.places)),
    ).returning(
        PostalCode.postal_code, literal_column("(xmax = 0)")
    )  # true: inserted; false: updated; unchanged rows: absent


def postal_codes_known(uow: UnitOfWork) -> int:
    """How many postal codes are loaded."""
    with uow:
        return int(uow.session.execute(select(func.count()).select_from(PostalCode)).scalar_one())


def _centroids(uow: UnitOfWork, codes: set[str]) -> dict[str, Coordinates]:
    if not codes:
        return {}
    rows = uow.session.execute(
        select(PostalCode.postal_code, PostalCode.lat, PostalCode.lon).where(
            PostalCode.postal_code.in_(sorted(codes))
        )
    )
    return {code: Coordinates(lat, lon) for code, lat, lon in rows}


# ---------------------------------------------------------------- geocoding


@dataclass(frozen=True)
class GeocodeResult:
    """Where an address is, how precisely, and from which source."""

    lat: float
    lon: float
    precision: str
    source: str
    postal_code: str | None = None
    fallback_reason: str | None = None


def geocode(uow: UnitOfWork, providers: Providers, address: str) -> GeocodeResult:
    """Nominatim (cached, rate-limited) when configured, else or on failure the centroid
    of the first known PLZ in the address; NotFound when neither locates it."""
    reason = None
    if providers.geocoder is not None:
        try:
            found = locate_address(uow, providers, address)
        except ProviderUnavailable as exc:
            reason = exc.reason
        else:
            if found is not None:
                return GeocodeResult(found.lat, found.lon, "address", "nominatim")
            reason = "nominatim found no such address"
    candidates = postal_codes_in(address)
    with uow:
        known = _centroids(uow, set(candidates))
    for code in candidates:
        if code in known:
            point = known[code]
            return GeocodeResult(point.lat, point.lon, "plz", "plz_centroid", code, reason)
    why = f"{reason}; " if reason else ""
    raise NotFound(
        f"the address could not be located: {why}it names no known postal code",
        {"fallback_reason": reason, "postal_codes_tried": candidates},
    )


def locate_address(uow: UnitOfWork, providers: Providers, address: str) -> Coordinates | None:
    """An address through the geocode cache, else Nominatim after a turn at the shared rate
    limit (the answer, found or not, is cached). ProviderUnavailable when it cannot answer."""
    assert providers.geocoder is not None
    key = normalise_address(address)
    with uow:
        cached = uow.session.get(GeocodeCache, key)
    if cached is None:
        cached = _take_turn_unless_cached(uow, providers, key)
    if cached is not None:
        return _cached_point(cached)
    found = providers.geocoder.locate(address)
    with uow:
        uow.session.execute(
            pg_insert(GeocodeCache)
            .values(
                query=key,
                found=found is not None,
                lat=found.lat if found else None,
                lon=found.lon if found else None,
            )
            .on_conflict_do_nothing()
        )
        uow.commit()
    return found


def _take_turn_unless_cached(
    uow: UnitOfWork, providers: Providers, key: str
) -> GeocodeCache | None:
    """Wait for this process's turn at the geocoder, shared by every process through one
    row lock: at most one request per `min_interval` across the service.

    The row holds the time the last request was allowed to start (the database clock, so
    hosts with skewed clocks agree). Whoever holds the lock sleeps out the rest of the
    interval, stamps the row and commits; the next in line then sees the new time. The
    cache is read again under the lock: a query answered meanwhile takes no turn.
    """
    wait_ms = max(1, math.ceil(providers.max_wait_s * 1000))  # 0 ms would wait forever
    try:
        with uow:
            session = uow.session
            session.execute(select(func.set_config("lock_timeout", f"{wait_ms}ms", True)))
            elapsed = session.execute(
                select(
                    func.extract("epoch", func.clock_timestamp() - GeocoderThrottle.last_request_at)
                )
                .where(GeocoderThrottle.id == 1)
                .with_for_update()
            ).scalar_one()
            cached = session.get(GeocodeCache, key)
            if cached is not None:
                return cached  # rolled back: the turn stays unused
            remaining = providers.min_interval_s - float(elapsed)
            if remaining > 0:
                time.sleep(remaining)
            session.execute(
                update(GeocoderThrottle)
                .where(GeocoderThrottle.id == 1)
                .values(last_request_at=func.clock_timestamp())
            )
            uow.commit()
    except OperationalError as exc:
        if getattr(exc.orig, "pgcode", None) == "55P03":  # lock_not_available
            raise ProviderUnavailable(
                f"nominatim busy: no turn within {providers.max_wait_s:g} s"
            ) from None
        raise
    return None


# ---------------------------------------------------------------- distances


@dataclass(frozen=True)
class DistanceResult:
    """Travel distance and time between two points, and where they come from."""

    distance_km: float
    duration_min: float
    mode: str
    source: str
    fallback_reason: str | None = None


def distance(
    uow: UnitOfWork, providers: Providers, start: str, end: str, mode: str
) -> DistanceResult:
    """OSRM's road distance and time when a profile serves `mode` (cached), else or on
    failure the great-circle distance times the mode's detour factor, at the mode's speed."""
    points = [parse_point(start), parse_point(end)]
    with uow:
        known = _centroids(uow, {p.postal_code for p in points if p.postal_code})
    ends = []
    for point in points:
        if point.coordinates is not None:
            ends.append(point.coordinates)
        elif point.postal_code in known:
            ends.append(known[point.postal_code])
        else:
            raise NotFound(
                f"postal code {point.postal_code} is not known",
                {"postal_code": point.postal_code},
            )
    reason = None
    profile = providers.osrm_profiles.get(mode)
    if providers.router is not None and profile:
        try:
            route = _route(uow, providers, profile, ends[0], ends[1])
        except ProviderUnavailable as exc:
            reason = exc.reason
        else:
            if route is not None:
                return DistanceResult(
                    round(route[0] / 1000, 2), round(route[1] / 60, 1), mode, "osrm"
                )
            reason = "osrm found no route"
    km, minutes = estimate_between(providers.policy, ends[0], ends[1], mode)
    return DistanceResult(round(km, 2), round(minutes, 1), mode, "geodesic", reason)


def _route(
    uow: UnitOfWork, providers: Providers, profile: str, start: Coordinates, end: Coordinates
) -> tuple[float, float] | None:
    """(metres, seconds) from the route cache, else from OSRM (then cached)."""
    assert providers.router is not None
    start = Coordinates(round(start.lat, 5), round(start.lon, 5))  # the cache's precision
    end = Coordinates(round(end.lat, 5), round(end.lon, 5))
    with uow:
        cached = uow.session.get(RouteCache, (profile, start.lat, start.lon, end.lat, end.lon))
    if cached is not None:
        return cached.distance_m, cached.duration_s
    route = providers.router.route(profile, start, end)
    if route is None:
        return None
    with uow:
        uow.session.execute(
            pg_insert(RouteCache)
            .values(
                profile=profile,
                from_lat=start.lat,
                from_lon=start.lon,
                to_lat=end.lat,
                to_lon=end.lon,
                distance_m=route.distance_m,
                duration_s=route.duration_s,
            )
            .on_conflict_do_nothing()
        )
        uow.commit()
    return route.distance_m, route.duration_s


@dataclass(frozen=True)
class BatchDistances:
    """Distances for many pairs, in order; None with an error where an end is unknown."""

    mode: str
    source: str
    results: list[dict[str, Any]]


def distances(
    uow: UnitOfWork, providers: Providers, mode: str, pairs: Sequence[tuple[str, str]]
) -> BatchDistances:
    """The estimate (great circle x detour, at the mode's speed) for every pair, vectorised:
    one query for all postal codes, one numpy pass for all pairs."""
    size = len(pairs)
    texts = [end for pair in pairs for end in pair]
    parsed = [parse_point(end) for end in texts]
    with uow:
        known = _centroids(uow, {p.postal_code for p in parsed if p.postal_code})
    lat = np.full(2 * size, np.nan)
    lon = np.full(2 * size, np.nan)
    unknown: dict[int, str] = {}
    for index, point in enumerate(parsed):
        where = point.coordinates or known.get(point.postal_code or "")
        if where is None:
            unknown.setdefault(index // 2, f"postal code {point.postal_code} is not known")
        else:
            lat[index], lon[index] = where.lat, where.lon
    km, minutes = providers.policy.estimate(
        haversine_km(lat[0::2], lon[0::2], lat[1::2], lon[1::2]), mode
    )
    km_list = np.round(km, 2).tolist()
    minute_list = np.round(minutes, 1).tolist()
    results = [
        {"distance_km": None, "duration_min": None, "error": unknown[index]}
        if index in unknown
        else {"distance_km": km_list[index], "duration_min": minute_list[index], "error": None}
        for index in range(size)
    ]
    return BatchDistances(mode=mode, source="geodesic", results=results)


# ---------------------------------------------------------------- entity locations


def locate_patient(
    uow: UnitOfWork,
    providers: Providers,
    patient_id: int,
    version: int,
    postal_code: str,
    *,
    correlation_id: str | None = None,
) -> bool:
    """A patient event: the patient is placed at their PLZ centroid (never their street).
    Runs in the consumer's unit of work; returns whether a location event was emitted."""
    return _locate_entity(
        uow, providers, "patient", patient_id, version, postal_code, None, None, correlation_id
    )


def locate_therapist(
    uow: UnitOfWork,
    providers: Providers,
    therapist_id: int,
    version: int,
    postal_code: str,
    street: str | None,
    city: str | None,
    *,
    correlation_id: str | None = None,
) -> bool:
    """A therapist event: PLZ centroid at once; the practice address (public) is geocoded
    later by the worker's address loop when a geocoder is configured (unless cached)."""
    return _locate_entity(
        uow,
        providers,
        "therapist",
        therapist_id,
        version,
        postal_code,
        street,
        city,
        correlation_id,
    )


def _locate_entity(
    uow: UnitOfWork,
    providers: Providers,
    entity_type: str,
    entity_id: int,
    version: int,
    postal_code: str,
    street: str | None,
    city: str | None,
    correlation_id: str | None,
) -> bool:
    session = uow.session
    row = session.get(EntityLocation, (entity_type, entity_id), with_for_update=True)
    if row is not None and row.source_version >= version:
        return False  # an older version of the entity, arriving late
    if row is not None and (row.postal_code, row.street, row.city) == (postal_code, street, city):
        row.source_version = version  # the location fields did not change
        return False
    location = location_by_centroid(_centroids(uow, {postal_code}).get(postal_code))
    pending = False
    address = therapist_address(street, postal_code, city) if entity_type == "therapist" else None
    if address is not None and providers.geocoder is not None:
        cached = session.get(GeocodeCache, normalise_address(address))
        if cached is None:
            pending = True  # the worker's address loop asks Nominatim, at its pace
        elif (point := _cached_point(cached)) is not None:
            location = _address_location(point)
    if row is None:
        row = EntityLocation(entity_type=entity_type, entity_id=entity_id, version=0)
        session.add(row)
    row.source_version = version
    row.postal_code, row.street, row.city = postal_code, street, city
    row.address_pending, row.address_attempts = pending, 0
    row.address_retry_at = None
    return _apply(uow, row, location, correlation_id)


def _cached_point(cached: GeocodeCache) -> Coordinates | None:
    if cached.found and cached.lat is not None and cached.lon is not None:
        return Coordinates(cached.lat, cached.lon)
    return None


def _address_location(point: Coordinates) -> Location:
    return Location(
        resolved=True, lat=point.lat, lon=point.lon, precision="address", source="nominatim"
    )


def _apply(
    uow: UnitOfWork, row: EntityLocation, location: Location, correlation_id: str | None
) -> bool:
    """Store the location; emit location.resolved / unresolved when it differs from what
    was last published about the entity (or nothing was)."""
    unchanged = row.version > 0 and (
        row.resolved,
        row.lat,
        row.lon,
        row.precision,
        row.source,
        row.reason,
    ) == (
        location.resolved,
        location.lat,
        location.lon,
        location.precision,
        location.source,
        location.reason,
    )
    row.updated_at = utcnow()
    if unchanged:
        return False
    row.resolved, row.lat, row.lon = location.resolved, location.lat, location.lon
    row.precision, row.source, row.reason = location.precision, location.source, location.reason
    row.version += 1
    uow.session.flush()
    uow.emit(_location_event(row, correlation_id))
    return True


def _location_event(row: EntityLocation, correlation_id: str | None) -> PendingEvent:
    event_type = LOCATION_RESOLVED if row.resolved else LOCATION_UNRESOLVED
    payload = {
        "entity_type": row.entity_type,
        "entity_id": row.entity_id,
        "version": row.version,
        "entity_version": row.source_version,
        "postal_code": row.postal_code,
    }
    if row.resolved:
        payload.update(lat=row.lat, lon=row.lon, precision=row.precision, source=row.source)
    else:
        payload["reason"] = row.reason
    return PendingEvent.of(  # validated against the payload schema here
        event_type,
        producer=PRODUCER,
        aggregate_id=f"{row.entity_type}-{row.entity_id}",
        payload=payload,
        correlation_id=correlation_id,
    )


def _locate_unresolved(uow: UnitOfWork) -> int:
    """Entities unresolved for an unknown PLZ that is now known: located and announced."""
    rows = (
        uow.session.execute(
            select(EntityLocation)
            .where(
                EntityLocation.resolved.is_(False),
                EntityLocation.postal_code.in_(select(PostalCode.postal_code)),
            )
            .order_by(EntityLocation.entity_type, EntityLocation.entity_id)
            .with_for_update()
        )
        .scalars()
        .all()
    )
    known = _centroids(uow, {row.postal_code for row in rows})
    for row in rows:
        _apply(uow, row, location_by_centroid(known[row.postal_code]), None)
    return len(rows)


def _relocate_moved_centroids(uow: UnitOfWork, changed: Sequence[str]) -> int:
    """Entities located at the centroid of a postal code whose data changed: moved to the
    new centroid and announced (a new version) where the centroid itself moved."""
    moved = 0
    for start in range(0, len(changed), IMPORT_CHUNK):
        codes = set(changed[start : start + IMPORT_CHUNK])
        rows = (
            uow.session.execute(
                select(EntityLocation)
                .where(
                    EntityLocation.resolved.is_(True),
                    EntityLocation.precision == "plz",
                    EntityLocation.postal_code.in_(sorted(codes)),
                )
                .order_by(EntityLocation.entity_type, EntityLocation.entity_id)
                .with_for_update()
            )
            .scalars()
            .all()
        )
        known = _centroids(uow, codes)
        for row in rows:
            moved += _apply(uow, row, location_by_centroid(known[row.postal_code]), None)
    return moved


def queue_therapist_addresses(uow: UnitOfWork) -> int:
    """Mark every therapist with a street but no address-precise location for the address
    loop (e.g. after a geocoder was configured); returns how many were queued."""
    with uow:
        queued = len(
            uow.session.execute(
                update(EntityLocation)
                .where(
                    EntityLocation.entity_type == "therapist",
                    func.btrim(func.coalesce(EntityLocation.street, "")) != "",
                    EntityLocation.precision.is_distinct_from("address"),
                    EntityLocation.address_pending.is_(False),
                )
                .values(address_pending=True, address_attempts=0, address_retry_at=None)
                .returning(EntityLocation.entity_id)
            ).all()
        )
        uow.commit()
    return queued


class GeocoderDown(RuntimeError):
    """The geocoder itself failed (unreachable, timed out, 429, 5xx, no turn at the rate
    limit): the address loop pauses; no address is charged an attempt."""

    def __init__(self, reason: str, retry_after: float | None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


def geocode_next_address(uow: UnitOfWork, providers: Providers) -> bool:
    """One step of the worker's address loop: claim a therapist address waiting for the
    geocoder, ask it (cache, shared rate limit), store the answer and announce a better
    location. Returns False when nothing was waiting; raises GeocoderDown when the
    geocoder failed as a whole (the address keeps its attempts and its place)."""
    if providers.geocoder is None:
        return False
    claimed = _claim_pending_address(uow)
    if claimed is None:
        return False
    entity_id, fields = claimed
    address = therapist_address(*fields)
    assert address is not None
    failure: ProviderUnavailable | None = None
    try:
        found = locate_address(uow, providers, address)
    except ProviderUnavailable as exc:
        failure, found = exc, None
    with uow:
        row = uow.session.get(EntityLocation, ("therapist", entity_id), with_for_update=True)
        if (
            row is None
            or not row.address_pending
            or (row.street, row.postal_code, row.city) != fields
        ):
            if failure is not None and failure.provider_down:
                raise GeocoderDown(failure.reason, failure.retry_after)
            return True  # changed meanwhile: the newer event set what happens next
        if failure is not None and failure.provider_down:
            # not this address's fault: it keeps its attempts and is next once the loop
            # has paused (the lease is given back)
            row.address_retry_at = None
            uow.commit()
            raise GeocoderDown(failure.reason, failure.retry_after)
        if failure is not None:
            row.address_attempts += 1
            if row.address_attempts >= providers.max_address_attempts:
                log.warning(
                    "therapist %s: address not geocoded after %d attempts (%s); keeping %s",
                    entity_id,
                    row.address_attempts,
                    failure.reason,
                    row.precision or row.reason,
                )
                row.address_pending = False
            else:
                delay = retry_delay_seconds(row.address_attempts)
                row.address_retry_at = utcnow() + timedelta(seconds=delay)
        else:
            row.address_pending = False
            if found is not None:
                _apply(uow, row, _address_location(found), None)
        uow.commit()
    return True


def _claim_pending_address(
    uow: UnitOfWork,
) -> tuple[int, tuple[str | None, str, str | None]] | None:
    """The next waiting address, leased to this worker (SKIP LOCKED: workers never wait)."""
    now = utcnow()
    due: ColumnElement[bool] = EntityLocation.address_retry_at.is_(None) | (
        EntityLocation.address_retry_at <= now
    )
    with uow:
        row = uow.session.execute(
            select(EntityLocation)
            .where(EntityLocation.address_pending.is_(True), due)
            .order_by(EntityLocation.address_retry_at.nulls_first(), EntityLocation.entity_id)
            .limit(1)
            .with_for_update(skip_locked=True)
        ).scalar_one_or_none()
        if row is None:
            return None
        row.address_retry_at = now + ADDRESS_LEASE
        claimed = (row.entity_id, (row.street, row.postal_code, row.city))
        uow.commit()
    return claimed


# ---------------------------------------------------------------- GDPR


def erase_patient(uow: UnitOfWork, patient_id: int) -> None:
    """patient.erased: drop the patient's location (runs in the consumer's unit of work;
    a redelivery finds nothing left). Postal-code and route caches are not tied to anyone."""
    uow.session.execute(
        delete(EntityLocation).where(
            EntityLocation.entity_type == "patient", EntityLocation.entity_id == patient_id
        )
    )
    audit.record(uow.session, INFRA.audit_events, "erase", "patient", patient_id)


def patient_data(uow: UnitOfWork, patient_id: int) -> dict[str, Any]:
    """Everything geocoding holds about one patient (their part of the data export)."""
    with uow:
        location = uow.session.get(EntityLocation, ("patient", patient_id))
        entries = audit.entries_of(uow.session, INFRA.audit_events, "patient", patient_id)
        return {
            "location": None
            if location is None
            else {
                column.key: _plain(getattr(location, column.key))
                for column in EntityLocation.__table__.columns
            },
            "audit_events": [{k: _plain(v) for k, v in entry.items()} for entry in entries],
        }


def _plain(value: Any) -> Any:
    return value.isoformat() if hasattr(value, "isoformat") else value
