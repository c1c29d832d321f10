"""Reconciliation: every projection compared with its source, across the service schemas.

A projection is what one service keeps of another's data, fed by events: matching's patient
and therapist projections, the locations geocoding keeps of patients and therapists and
matching keeps of geocoding's, the cooling dates therapist_service follows from matching,
the search status patient_service follows from matching, the inquiry emails communication
queues for matching's inquiries and the sent state matching follows from communication.
After a broker lost records it had acknowledged, the projections miss what those records
carried; `reconcile` names the ids, `python -m shared.cli outbox --replay` repairs them
(docs/runbook.md, "Broker lost acknowledged records").

In-process use (tests, other tools)::

    from shared.reconcile import reconcile

    report = reconcile(url)  # url: the admin/migration URL, it reads every schema
    report = reconcile(url, services=("matching_service",), as_of=datetime(...))
    report.ok                   # True when every projection equals its source
    for diff in report.diffs:   # one ProjectionDiff per projection checked
        diff.projection, diff.source, diff.missing, diff.stale, diff.extra, diff.checked
    report.to_dict()            # JSON-ready; report.lines(): the text the CLI prints

`reconcile(url_or_engine, *, services=SERVICES, as_of=None, projections=None)
-> ReconciliationReport`: `url_or_engine` is a database URL (an engine is made and
disposed) or an SQLAlchemy engine (left open); `services` keeps the projections that a
listed service holds or feeds; `projections` (names from `PROJECTIONS`) keeps only those;
`as_of` (default now) is the day cooling dates count from. All schemas are read in one
repeatable-read transaction (one snapshot), so a reconciliation never sees half a change.
It compares whole schemas: in tests, give it a database of its own (as
tests/integration/test_reconcile.py does), or only look at the ids the test created.

Ids are strings (`"17"`, `"patient:17"`). A projection is only comparable once the events
in flight are consumed: run it on a quiet platform (relays and consumers caught up), or
read differences of ids that just changed as "still on their way".
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from sqlalchemy import Connection, Engine, text

from shared.db import make_engine, utcnow
from shared.settings import SERVICES

Values = Mapping[str, object]


@dataclass(frozen=True)
class ProjectionDiff:
    """The differences of one projection from its source.

    missing: ids the source has and the projection lacks; stale: ids both have with a
    different value (an older version, another status); extra: ids only the projection has.
    """

    projection: str
    source: str
    missing: list[str] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
    checked: int = 0  # ids compared (source and projection together)

    @property
    def ok(self) -> bool:
        """Whether the projection equals its source."""
        return not (self.missing or self.stale or self.extra)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "projection": self.projection,
            "source": self.source,
            "ok": self.ok,
            "checked": self.checked,
            "missing": self.missing,
            "stale": self.stale,
            "extra": self.extra,
        }


@dataclass(frozen=True)
class ReconciliationReport:
    """Every projection checked, in the order of `PROJECTIONS`."""

    diffs: list[ProjectionDiff]
    as_of: datetime

    @property
    def ok(self) -> bool:
        """Whether every projection equals its source."""
        return all(diff.ok for diff in self.diffs)

    def diff(self, projection: str) -> ProjectionDiff:
        """The diff of one projection, by name."""
        for diff in self.diffs:
            if diff.projection == projection:
                return diff
        raise KeyError(projection)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (`python -m shared.cli reconcile --json`)."""
        return {
            "ok": self.ok,
            "as_of": self.as_of.isoformat(),
            "projections": [diff.to_dict() for diff in self.diffs],
        }

    def lines(self, limit: int = 50) -> list[str]:
        """One line per projection, then the differing ids (at most `limit` per kind)."""
        out = []
        for diff in self.diffs:
            state = "ok" if diff.ok else "DIFFERS"
            out.append(
                f"{diff.projection} <- {diff.source}: {state} ({diff.checked} ids; "
                f"{len(diff.missing)} missing, {len(diff.stale)} stale, {len(diff.extra)} extra)"
            )
            for kind, ids in (
                ("missing", diff.missing),
                ("stale", diff.stale),
                ("extra", diff.extra),
            ):
                if ids:
                    shown = ", ".join(ids[:limit])
                    more = f" ... and {len(ids) - limit} more" if len(ids) > limit else ""
                    out.append(f"  {kind}: {shown}{more}")
        return out


# ---------------------------------------------------------------- the projections

Reader = Callable[[Connection, date], tuple[Values, Values]]


@dataclass(frozen=True)
class Projection:
    """One projection: its name, its source, the services involved and how to read both.

    `read` returns (expected, held): id -> value as the source says it should be, and as the
    projection holds it. `extra_counts`: False when the projection may hold ids the source
    does not list (then only missing and stale are reported).
    """

    name: str
    source: str
    services: tuple[str, ...]
    read: Reader
    extra_counts: bool = True


def _rows(connection: Connection, sql: str, **params: object) -> dict[str, object]:
    return {str(key): value for key, value in connection.execute(text(sql), params).all()}


def _patient_projection(connection: Connection, today: date) -> tuple[Values, Values]:
    # an erased patient's projection says 'erased' (erasure bumps the source's version but
    # publishes patient.erased, not a new snapshot); every other patient: version and status
    expected = _rows(
        connection,
        "SELECT id, CASE WHEN status = 'erased' THEN 'erased' ELSE version || ':' || status END "
        "FROM patient_service.patients",
    )
    held = _rows(
        connection,
        "SELECT patient_id, CASE WHEN status = 'erased' THEN 'erased' "
        "ELSE version || ':' || status END FROM matching_service.patient_projection",
    )
    return expected, held


def _therapist_projection(connection: Connection, today: date) -> tuple[Values, Values]:
    expected = _rows(connection, "SELECT id, version FROM therapist_service.therapists")
    held = _rows(
        connection, "SELECT therapist_id, version FROM matching_service.therapist_projection"
    )
    return expected, held


def _geocoding_entities(connection: Connection, today: date) -> tuple[Values, Values]:
    # geocoding locates every patient (not erased: erasure drops the location) and therapist
    expected = _rows(
        connection,
        "SELECT 'patient:' || id, version FROM patient_service.patients "
        "WHERE status <> 'erased' "
        "UNION ALL SELECT 'therapist:' || id, version FROM therapist_service.therapists",
    )
    held = _rows(
        connection,
        "SELECT entity_type || ':' || entity_id, source_version "
        "FROM geocoding_service.entity_locations",
    )
    return expected, held


def _matching_locations(connection: Connection, today: date) -> tuple[Values, Values]:
    expected = _rows(
        connection,
        "SELECT entity_type || ':' || entity_id, version FROM geocoding_service.entity_locations",
    )
    held = _rows(
        connection,
        "SELECT entity_type || ':' || entity_id, version FROM matching_service.locations",
    )
    return expected, held


def _cooling_dates(connection: Connection, today: date) -> tuple[Values, Values]:
    # business-rules.md §7: a therapist is not contacted before the end of the latest cooling
    # period of their practice that was not overridden. Only dates still ahead count (a past
    # date and none both mean contactable), so a period that ran out needs no event.
    expected = _rows(
        connection,
        "SELECT t.id, max(p.until) FROM matching_service.cooling_periods p "
        "CROSS JOIN LATERAL jsonb_array_elements_text(p.therapist_ids) AS member(id) "
        "JOIN therapist_service.therapists t ON t.id = member.id::bigint "
        "WHERE p.overridden_at IS NULL AND p.until > :today GROUP BY t.id",
        today=today,
    )
    held = _rows(
        connection,
        "SELECT id, next_contactable_date FROM therapist_service.therapists "
        "WHERE next_contactable_date > :today",
        today=today,
    )
    return expected, held


# a search's status -> what patient_service makes of it (business-rules.md §2): searching
# while the search is open, in therapy (and on from there) once it succeeded
_SEARCH_STATE = (
    "CASE WHEN {column} IN ('active', 'paused', 'in_trial') THEN 'open' "
    "WHEN {column} = 'successful' THEN 'successful' ELSE 'cancelled' END"
)
_PATIENT_STATE = (
    "CASE WHEN status = 'searching' THEN 'open' "
    "WHEN status IN ('in_therapy', 'therapy_completed', 'therapy_aborted') THEN 'successful' "
    "WHEN status = 'search_cancelled' THEN 'cancelled' ELSE status END"
)


def _followed_searches(connection: Connection, today: date) -> tuple[Values, Values]:
    # patient_service follows each patient's newest search (search events); erased patients
    # are final and left out
    expected = _rows(
        connection,
        "SELECT s.patient_id, s.id || ':' || "
        + _SEARCH_STATE.format(column="s.status")
        + " FROM matching_service.patient_searches s "
        "JOIN patient_service.patients p ON p.id = s.patient_id AND p.status <> 'erased' "
        "WHERE s.id = (SELECT max(id) FROM matching_service.patient_searches n "
        "WHERE n.patient_id = s.patient_id)",
    )
    held = _rows(
        connection,
        "SELECT id, search_id || ':' || "
        + _PATIENT_STATE
        + " FROM patient_service.patients WHERE search_id IS NOT NULL AND status <> 'erased'",
    )
    return expected, held


def _inquiry_emails(connection: Connection, today: date) -> tuple[Values, Values]:
    # every inquiry.created queues one inquiry email (send key inquiry:<id>)
    expected = _rows(connection, "SELECT id, 'queued' FROM matching_service.inquiries")
    held = _rows(
        connection,
        "SELECT inquiry_id, 'queued' FROM communication_service.emails "
        "WHERE kind = 'inquiry' AND inquiry_id IS NOT NULL",
    )
    return expected, held


def _inquiries_sent(connection: Connection, today: date) -> tuple[Values, Values]:
    # an inquiry email sent, or an inquiry call that reached the therapist, makes the inquiry
    # sent in matching (email.sent / phone_call.completed)
    expected = _rows(
        connection,
        "SELECT inquiry_id, 'sent' FROM communication_service.emails "
        "WHERE kind = 'inquiry' AND status = 'sent' AND inquiry_id IS NOT NULL "
        "UNION SELECT inquiry_id, 'sent' FROM communication_service.phone_calls "
        "WHERE purpose = 'inquiry' AND status = 'reached' AND inquiry_id IS NOT NULL",
    )
    held = _rows(
        connection,
        "SELECT id, CASE WHEN sent_at IS NULL THEN 'unsent' ELSE 'sent' END "
        "FROM matching_service.inquiries",
    )
    return expected, held


PROJECTIONS: tuple[Projection, ...] = (
    Projection(
        "matching_service.patient_projection",
        "patient_service.patients",
        ("matching_service", "patient_service"),
        _patient_projection,
    ),
    Projection(
        "matching_service.therapist_projection",
        "therapist_service.therapists",
        ("matching_service", "therapist_service"),
        _therapist_projection,
    ),
    Projection(
        "geocoding_service.entity_locations",
        "patient_service.patients + therapist_service.therapists",
        ("geocoding_service", "patient_service", "therapist_service"),
        _geocoding_entities,
    ),
    Projection(
        "matching_service.locations",
        "geocoding_service.entity_locations",
        ("matching_service", "geocoding_service"),
        _matching_locations,
    ),
    Projection(
        "therapist_service.therapists.next_contactable_date",
        "matching_service.cooling_periods",
        ("therapist_service", "matching_service"),
        _cooling_dates,
    ),
    Projection(
        "patient_service.patients.search_id+status",
        "matching_service.patient_searches",
        ("patient_service", "matching_service"),
        _followed_searches,
    ),
    Projection(
        "communication_service.emails(inquiry)",
        "matching_service.inquiries",
        ("communication_service", "matching_service"),
        _inquiry_emails,
    ),
    Projection(
        "matching_service.inquiries.sent_at",
        "communication_service.emails + phone_calls",
        ("matching_service", "communication_service"),
        _inquiries_sent,
        extra_counts=False,  # unsent inquiries are held too, and staff may mark one sent
    ),
)


def compare(projection: Projection, expected: Values, held: Values) -> ProjectionDiff:
    """The missing, stale and extra ids of `held` against `expected` (ids sorted)."""
    missing = [key for key in expected if key not in held]
    stale = [key for key in expected if key in held and _text(held[key]) != _text(expected[key])]
    extra = [key for key in held if key not in expected] if projection.extra_counts else []
    compared = set(expected) | (set(held) if projection.extra_counts else set())
    return ProjectionDiff(
        projection=projection.name,
        source=projection.source,
        missing=_sorted(missing),
        stale=_sorted(stale),
        extra=_sorted(extra),
        checked=len(compared),
    )


def _text(value: object) -> str:
    return value.isoformat() if isinstance(value, date) else str(value)


def _sorted(ids: Sequence[str]) -> list[str]:
    """Numeric ids in numeric order, `kind:id` by kind then number."""

    def key(value: str) -> tuple[str, int, str]:
        prefix, _, number = value.rpartition(":")
        return (prefix, int(number), "") if number.isdigit() else (prefix, -1, value)

    return sorted(ids, key=key)


def reconcile(
    url_or_engine: str | Engine,
    *,
    services: Sequence[str] = SERVICES,
    as_of: datetime | None = None,
    projections: Sequence[str] | None = None,
) -> ReconciliationReport:
    """Compare every projection a service in `services` holds or feeds with its source
    (`projections`: only those named, see `PROJECTIONS`).

    Reads all schemas in one read-only repeatable-read transaction (one snapshot) with the
    admin/migration connection. Returns a `ReconciliationReport` (`ok`, `diffs`).
    """
    as_of = as_of or utcnow()
    unknown = sorted(set(services) - set(SERVICES))
    if unknown:
        raise ValueError(f"unknown service(s): {', '.join(unknown)}; known: {', '.join(SERVICES)}")
    names = {p.name for p in PROJECTIONS}
    if projections is not None and (strange := sorted(set(projections) - names)):
        raise ValueError(f"unknown projection(s): {', '.join(strange)}")
    selected = [
        p
        for p in PROJECTIONS
        if set(p.services) & set(services) and (projections is None or p.name in projections)
    ]
    engine = (
        make_engine(url_or_engine, pool_size=1, application_name="reconcile")
        if isinstance(url_or_engine, str)
        else url_or_engine
    )
    try:
        with engine.connect() as connection:
            connection = connection.execution_options(isolation_level="REPEATABLE READ")
            with connection.begin():
                connection.execute(text("SET TRANSACTION READ ONLY"))
                diffs = [
                    compare(projection, *projection.read(connection, as_of.date()))
                    for projection in selected
                ]
    finally:
        if isinstance(url_or_engine, str):
            engine.dispose()
    return ReconciliationReport(diffs=diffs, as_of=as_of)
