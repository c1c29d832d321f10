"""Use cases of therapist_service: each takes a unit of work and commits what it changes."""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from pydantic import ValidationError
from sqlalchemy import ColumnElement, and_, func, or_, select, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import DBAPIError, IntegrityError

from shared import audit
from shared.db import UnitOfWork, count_upto, utcnow
from shared.errors import Conflict, NotFound, ValidationFailed
from shared.events import EventType, describe
from shared.outbox import PendingEvent
from shared.web import Page, PageQuery
from therapist_service.directory.matching import (
    IMPORTED_FIELDS,
    CandidateIndex,
    directory_changes,
    name_key,
)
from therapist_service.directory.records import (
    DUPLICATE_DIRECTORY_ID,
    DirectoryRecord,
    SourceFile,
    parse_entries,
)
from therapist_service.models import INFRA, DirectoryImport, Therapist
from therapist_service.rules import TherapistStatus, gender_from_salutation
from therapist_service.schemas import (
    THERAPIST_BLOCKED,
    THERAPIST_CREATED,
    THERAPIST_UNBLOCKED,
    THERAPIST_UPDATED,
    TherapistCreate,
    TherapistEventPayload,
    TherapistListQuery,
    TherapistUpdate,
)

PRODUCER = "therapist_service"


def create_therapist(
    uow: UnitOfWork, command: TherapistCreate, *, correlation_id: str | None = None
) -> Therapist:
    """Add a therapist (staff, for therapists outside the directory); emits therapist.created."""
    data = command.model_dump()
    data["gender"] = data["gender"] or gender_from_salutation(data["salutation"])
    with uow:
        if data["directory_id"] is not None:
            _refuse_taken_directory_id(uow, data["directory_id"])
        therapist = Therapist(**data, status=TherapistStatus.ACTIVE.value, version=1)
        uow.session.add(therapist)
        try:
            uow.session.flush()
        except IntegrityError:  # a concurrent create took the directory id first
            raise Conflict(
                f"a therapist with directory id {data['directory_id']} already exists",
                {"directory_id": data["directory_id"]},
            ) from None
        uow.session.refresh(therapist, ["practice_key"])  # computed by PostgreSQL
        uow.emit(therapist_event(THERAPIST_CREATED, therapist, sorted(data), correlation_id))
        _audit(uow, "create", therapist.id, data)
        uow.commit()
    return therapist


def _audit(uow: UnitOfWork, action: str, therapist_ids: object, fields: Iterable[str] = ()) -> None:
    audit.record(uow.session, INFRA.audit_events, action, "therapist", therapist_ids, fields)


def _refuse_taken_directory_id(uow: UnitOfWork, directory_id: str) -> None:
    # a friendly 409 first; the unique index still decides a race (IntegrityError -> 409)
    existing = uow.session.execute(
        select(Therapist.id).where(Therapist.directory_id == directory_id)
    ).scalar_one_or_none()
    if existing is not None:
        raise Conflict(
            f"therapist {existing} already has directory id {directory_id}",
            {"existing_id": existing},
        )


def get_therapist(uow: UnitOfWork, therapist_id: int) -> Therapist:
    """One therapist, or NotFound."""
    with uow:
        return _load(uow, therapist_id)


def _load(uow: UnitOfWork, therapist_id: int, *, for_update: bool = False) -> Therapist:
    statement = select(Therapist).where(Therapist.id == therapist_id)
    if for_update:
        statement = statement.with_for_update()
    therapist = uow.session.execute(statement).scalar_one_or_none()
    if therapist is None:
        raise NotFound(f"therapist {therapist_id} does not exist")
    return therapist


def list_therapists(uow: UnitOfWork, query: TherapistListQuery) -> Page:
    """A page of therapists, newest first, filtered as the query says."""
    conditions: list[Any] = []
    if query.status is not None:
        conditions.append(Therapist.status == query.status.value)
    if query.postal_code_prefix:
        conditions.append(
            Therapist.postal_code.startswith(query.postal_code_prefix, autoescape=True)
        )
    if query.therapy_method is not None:
        conditions.append(Therapist.therapy_methods.contains([query.therapy_method]))
    if query.potentially_available is not None:
        # `= true` (not `IS true`): the planner then uses the partial index of the flagged ones
        conditions.append(Therapist.potentially_available == query.potentially_available)
    if query.informed_about_platform is not None:
        conditions.append(Therapist.informed_about_platform == query.informed_about_platform)
    if query.practice_key is not None:
        conditions.append(Therapist.practice_key == query.practice_key)
    if query.id:
        conditions.append(Therapist.id.in_(query.id))
    if query.q:
        pattern = f"%{_escape_like(query.q.lower())}%"
        conditions.append(
            or_(
                func.lower(Therapist.last_name).like(pattern, escape="\\"),
                func.lower(Therapist.first_name).like(pattern, escape="\\"),
            )
        )
    with uow:
        total, exact = count_upto(uow.session, select(Therapist).where(*conditions))
        items = (
            uow.session.execute(
                select(Therapist)
                .where(*conditions)
                .order_by(Therapist.id.desc())
                .offset((query.page - 1) * query.per_page)
                .limit(query.per_page)
            )
            .scalars()
            .all()
        )
    return Page(
        items=items, total=total, page=query.page, per_page=query.per_page, total_exact=exact
    )


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def update_therapist(
    uow: UnitOfWork,
    therapist_id: int,
    changes: TherapistUpdate,
    *,
    correlation_id: str | None = None,
) -> Therapist:
    """Apply the given fields and emit therapist.updated (nothing when nothing changed)."""
    fields = changes.model_dump(exclude_unset=True)
    with uow:
        therapist = _load(uow, therapist_id, for_update=True)
        if "status" in fields:
            _check_patch_status(therapist, fields["status"])
        _check_age_range(therapist, fields)
        changed = sorted(
            name for name, value in fields.items() if getattr(therapist, name) != value
        )
        if not changed:
            return therapist
        for name in changed:
            setattr(therapist, name, fields[name])
        _touch(uow, therapist)
        uow.emit(therapist_event(THERAPIST_UPDATED, therapist, changed, correlation_id))
        # the entries go in with the event, in its statement
        if "status" in changed:
            audit.record_on_commit(
                uow, INFRA.audit_events, "status_change", "therapist", therapist.id, ["status"]
            )
        if set(changed) - {"status"}:
            audit.record_on_commit(
                uow,
                INFRA.audit_events,
                "update",
                "therapist",
                therapist.id,
                set(changed) - {"status"},
            )
        uow.commit()
    return therapist


def _check_patch_status(therapist: Therapist, target: str) -> None:
    if therapist.status == TherapistStatus.BLOCKED and target != TherapistStatus.BLOCKED:
        raise ValidationFailed(
            f"therapist {therapist.id} is blocked: unblock it with POST "
            f"/api/therapists/{therapist.id}/unblock",
            [{"field": "status", "message": "a blocked therapist is unblocked by /unblock"}],
        )


def _check_age_range(therapist: Therapist, fields: dict[str, Any]) -> None:
    low = fields.get("patient_age_min", therapist.patient_age_min)
    high = fields.get("patient_age_max", therapist.patient_age_max)
    if low is not None and high is not None and low > high:
        field = "patient_age_min" if "patient_age_min" in fields else "patient_age_max"
        raise ValidationFailed(
            f"invalid body: {field}",
            [{"field": field, "message": f"the age range {low}-{high} is empty"}],
        )


def block_therapist(
    uow: UnitOfWork, therapist_id: int, reason: str, *, correlation_id: str | None = None
) -> Therapist:
    """Block a therapist (never contacted again until unblocked); emits therapist.blocked."""
    with uow:
        therapist = _load(uow, therapist_id, for_update=True)
        if therapist.status == TherapistStatus.BLOCKED:
            raise Conflict(
                f"therapist {therapist_id} is already blocked",
                {"blocked_at": therapist.blocked_at.isoformat() if therapist.blocked_at else None},
            )
        therapist.status = TherapistStatus.BLOCKED.value
        therapist.block_reason = reason
        therapist.blocked_at = utcnow()
        _touch(uow, therapist)
        changed = ["block_reason", "blocked_at", "status"]
        uow.emit(therapist_event(THERAPIST_BLOCKED, therapist, changed, correlation_id))
        _audit(uow, "status_change", therapist.id, changed)
        uow.commit()
    return therapist


def unblock_therapist(
    uow: UnitOfWork, therapist_id: int, *, correlation_id: str | None = None
) -> Therapist:
    """Make a blocked therapist active again; emits therapist.unblocked."""
    with uow:
        therapist = _load(uow, therapist_id, for_update=True)
        if therapist.status != TherapistStatus.BLOCKED:
            raise Conflict(
                f"therapist {therapist_id} is not blocked (status '{therapist.status}')",
                {"status": therapist.status},
            )
        therapist.status = TherapistStatus.ACTIVE.value
        therapist.block_reason = None
        therapist.blocked_at = None
        _touch(uow, therapist)
        changed = ["block_reason", "blocked_at", "status"]
        uow.emit(therapist_event(THERAPIST_UNBLOCKED, therapist, changed, correlation_id))
        _audit(uow, "status_change", therapist.id, changed)
        uow.commit()
    return therapist


def practice_members(uow: UnitOfWork, practice_key: str) -> list[Therapist]:
    """The therapists of one practice (NotFound when the key names none)."""
    with uow:
        members = list(
            uow.session.execute(
                select(Therapist)
                .where(Therapist.practice_key == practice_key)
                .order_by(Therapist.id)
            )
            .scalars()
            .all()
        )
    if not members:
        raise NotFound(f"practice {practice_key} has no therapists")
    return members


def _touch(uow: UnitOfWork, therapist: Therapist) -> None:
    """A new version of the record; the UPDATE returns the practice key PostgreSQL computed
    (from the email, which may have changed)."""
    therapist.version += 1
    therapist.updated_at = utcnow()
    uow.session.flush()


def therapist_event(
    event_type: EventType,
    therapist: Therapist,
    changed: list[str],
    correlation_id: str | None = None,
) -> PendingEvent:
    """The event of `event_type` carrying the therapist's current state."""
    payload = TherapistEventPayload(
        therapist_id=therapist.id,
        version=therapist.version,
        status=TherapistStatus(therapist.status),
        gender=therapist.gender,  # type: ignore[arg-type]
        postal_code=therapist.postal_code,
        city=therapist.city,
        street=therapist.street,
        practice_key=therapist.practice_key,
        has_email=bool(therapist.email),
        statutory_seat=therapist.statutory_seat,
        therapy_methods=therapist.therapy_methods,
        languages=therapist.languages,
        phone_hours=therapist.phone_hours,
        working_hours=therapist.working_hours,
        potentially_available=therapist.potentially_available,
        informed_about_platform=therapist.informed_about_platform,
        preferred_diagnoses=therapist.preferred_diagnoses,
        patient_age_min=therapist.patient_age_min,
        patient_age_max=therapist.patient_age_max,
        preferred_patient_gender=therapist.preferred_patient_gender,  # type: ignore[arg-type]
        prefers_group_therapy=therapist.prefers_group_therapy,
        next_contactable_date=therapist.next_contactable_date,
        changed_fields=changed,
    )
    return PendingEvent.of(
        event_type,
        producer=PRODUCER,
        aggregate_id=therapist.id,
        payload=payload,
        correlation_id=correlation_id,
    )


# ---------------------------------------------------------------- cooling from matching


def follow_cooling(
    uow: UnitOfWork,
    therapist_ids: Iterable[int],
    next_date: Callable[[date | None], date | None],
    *,
    occurred_at: datetime,
    correlation_id: str | None = None,
) -> list[int]:
    """Set the therapists' `next_contactable_date` to `next_date(current)` for a cooling
    event of matching that happened at `occurred_at` (inside the caller's transaction).

    Rows are locked in id order; an event not newer than the last cooling event applied to a
    therapist is stale (a repeat, or a cooling.started older than an override) and changes
    nothing. A changed date is a new version with therapist.updated (`changed_fields`:
    next_contactable_date); matching decides contactability from its own cooling periods, so
    that event starts no cooling again. Returns the therapists whose date changed."""
    therapists = uow.session.scalars(
        select(Therapist)
        .where(Therapist.id.in_(sorted(set(therapist_ids))))
        .order_by(Therapist.id)
        .with_for_update()
    ).all()
    changed = []
    for therapist in therapists:
        if therapist.cooling_event_at is not None and therapist.cooling_event_at >= occurred_at:
            continue
        therapist.cooling_event_at = occurred_at
        new_date = next_date(therapist.next_contactable_date)
        if new_date == therapist.next_contactable_date:
            continue
        therapist.next_contactable_date = new_date
        _touch(uow, therapist)
        event = therapist_event(
            THERAPIST_UPDATED, therapist, ["next_contactable_date"], correlation_id
        )
        uow.emit(event)
        changed.append(therapist.id)
    uow.session.flush()
    return changed


def cooling_until(until: date) -> Callable[[date | None], date | None]:
    """cooling.started: the later of the date held and the new period's end."""
    return lambda held: until if held is None else max(held, until)


# ---------------------------------------------------------------- directory import

log = logging.getLogger(__name__)

CREATED, UPDATED, UNCHANGED = "created", "updated", "unchanged"
# A concurrent import wrote the same therapist first (unique directory id, deadlock): the
# batch is rolled back and done again on what that import committed.
_RETRY_PGCODES = frozenset({"23505", "40P01", "40001"})
_BATCH_ATTEMPTS = 3
# advisory-lock namespace of the directory import's postal-code locks (patients use 1001)
_IMPORT_LOCK_NAMESPACE = 1002


@dataclass
class ImportCounts:
    """What happened to the entries of a run or of one of its files."""

    created: int = 0
    updated: int = 0
    unchanged: int = 0
    skipped: int = 0
    errors: int = 0


@dataclass(frozen=True)
class FileImported:
    """Progress: every entry of one file is committed (or reported)."""

    name: str | None
    counts: ImportCounts


@dataclass
class _FileState:
    name: str | None
    counts: ImportCounts = field(default_factory=ImportCounts)
    ids: set[str] = field(default_factory=set)
    names: set[tuple[str, ...]] = field(default_factory=set)  # exact name keys of its records
    pending: int = 0
    read: bool = False


@dataclass(frozen=True)
class _Queued:
    fields: dict[str, Any]
    file: _FileState


def import_directory(
    uow: UnitOfWork,
    files: Iterable[SourceFile],
    *,
    source: str,
    batch_size: int,
    correlation_id: str | None = None,
    on_file: Callable[[FileImported], None] | None = None,
) -> DirectoryImport:
    """Import 116117 directory files (business-rules.md §3) and store the run's report.

    Adults only; an entry is matched to an existing therapist by directory id, else first +
    last name + postal code, else first name + postal code + street + title; only
    directory-owned fields change (`directory.matching.directory_changes`). A real change
    emits therapist.updated with the changed fields, a new therapist therapist.created; the
    same files again change nothing and emit nothing. Entries are committed `batch_size` at
    a time (a record and its event in one transaction); a broken entry is reported with its
    directory id and the rest imports; an id seen earlier in the run is skipped.
    """
    run = _DirectoryImportRun(uow, batch_size, correlation_id, on_file)
    report_id = _start_report(uow, source)
    try:
        for file in files:
            run.add(file)
        run.flush()
    except BaseException as exc:  # the report says the run stopped (Ctrl-C too)
        run.errors.append({"directory_id": None, "reason": f"import stopped: {type(exc).__name__}"})
        try:
            _finish_report(uow, report_id, run)
        except Exception:
            log.exception("directory import %s: the report could not be finished", report_id)
        raise
    report = _finish_report(uow, report_id, run)
    log.info(
        "directory import %s: %s created, %s updated, %s unchanged, %s skipped, %s errors",
        report.id,
        report.created,
        report.updated,
        report.unchanged,
        len(report.skipped),
        len(report.errors),
    )
    return report


class _DirectoryImportRun:
    """The state of one run: the batch being filled, the files not yet reported, the report."""

    def __init__(
        self,
        uow: UnitOfWork,
        batch_size: int,
        correlation_id: str | None,
        on_file: Callable[[FileImported], None] | None,
    ) -> None:
        self.uow = uow
        self.batch_size = batch_size
        self.correlation_id = correlation_id
        self.on_file = on_file
        self.counts = ImportCounts()
        self.skipped: list[dict[str, Any]] = []
        self.errors: list[dict[str, Any]] = []
        self.seen: set[str] = set()  # directory ids queued in this run
        self.seen_by_area: dict[str, set[str]] = {}  # the same by postal code
        self.batch: list[_Queued] = []
        self.files: deque[_FileState] = deque()

    def add(self, file: SourceFile) -> None:
        """Parse, check and queue the entries of one file (committing full batches)."""
        state = _FileState(file.name)
        self.files.append(state)
        if file.unreadable is not None:
            self._problem(self.errors, state, None, file.unreadable)
        parsed = parse_entries(file.entries)
        state.ids = {record.directory_id for record in parsed.records}
        state.names = {
            name_key(
                record.fields.get("first_name"),
                record.fields.get("last_name"),
                str(record.fields.get("postal_code") or "").strip(),
            )
            for record in parsed.records
        }
        for problem in parsed.problems:
            target = self.skipped if problem.skipped else self.errors
            self._problem(target, state, problem.directory_id, problem.reason)
        for record in parsed.records:
            self._queue(record, state)
        state.read = True
        self._report_finished_files()

    def _queue(self, record: DirectoryRecord, state: _FileState) -> None:
        if record.directory_id in self.seen:
            self._problem(self.skipped, state, record.directory_id, DUPLICATE_DIRECTORY_ID)
            return
        try:
            command = TherapistCreate.model_validate(record.fields)
        except ValidationError as exc:
            self._problem(self.errors, state, record.directory_id, describe(exc))
            return
        fields = command.model_dump(include=set(IMPORTED_FIELDS))
        self.seen.add(record.directory_id)
        self.seen_by_area.setdefault(fields["postal_code"], set()).add(record.directory_id)
        state.pending += 1
        self.batch.append(_Queued(fields, state))
        if len(self.batch) >= self.batch_size:
            self.flush()

    def flush(self) -> None:
        """Commit the queued records (one transaction) and report the files now complete."""
        if self.batch:
            batch, self.batch = self.batch, []
            files = {id(queued.file): queued.file for queued in batch}.values()
            reserved = self.seen.union(*(file.ids for file in files))
            # earlier batches of this run wrote these, in the batch's postal codes: reserved,
            # so no key but their own directory id finds them and they need not be read
            areas = {queued.fields["postal_code"] for queued in batch}
            written = set().union(*(self.seen_by_area[area] for area in areas))
            outcomes = _import_batch(
                self.uow,
                [q.fields for q in batch],
                _Reservations(reserved, written, set().union(*(file.names for file in files))),
                self.correlation_id,
            )
            for queued, outcome in zip(batch, outcomes, strict=True):
                setattr(self.counts, outcome, getattr(self.counts, outcome) + 1)
                setattr(queued.file.counts, outcome, getattr(queued.file.counts, outcome) + 1)
                queued.file.pending -= 1
        self._report_finished_files()

    def _problem(
        self,
        target: list[dict[str, Any]],
        state: _FileState,
        directory_id: str | None,
        reason: str,
    ) -> None:
        problem: dict[str, Any] = {"directory_id": directory_id, "reason": reason}
        if state.name is not None:
            problem["file"] = state.name
        target.append(problem)
        if target is self.skipped:
            state.counts.skipped += 1
        else:
            state.counts.errors += 1

    def _report_finished_files(self) -> None:
        while self.files and self.files[0].read and self.files[0].pending == 0:
            state = self.files.popleft()
            if self.on_file is not None:
                self.on_file(FileImported(state.name, state.counts))


@dataclass(frozen=True)
class _Reservations:
    """Directory ids of the run that only their own entry may match (`reserved`), those of
    them already written in the batch's postal codes (`written`: not read again), and the
    exact name keys of the batch's files (`names`: never taken by the name-change key)."""

    reserved: set[str]
    written: set[str]
    names: set[tuple[str, ...]] = field(default_factory=set)  # exact name keys of the files


def _import_batch(
    uow: UnitOfWork,
    batch: list[dict[str, Any]],
    reservations: _Reservations,
    correlation_id: str | None,
) -> list[str]:
    """One transaction for the batch, done again when a concurrent import got in between."""
    for attempt in range(1, _BATCH_ATTEMPTS + 1):
        try:
            return _write_batch(uow, batch, reservations, correlation_id)
        except DBAPIError as exc:
            code = getattr(exc.orig, "pgcode", None)
            if code not in _RETRY_PGCODES or attempt == _BATCH_ATTEMPTS:
                raise
            log.info("directory import batch done again after a concurrent write (%s)", code)
    raise AssertionError("unreachable")


def _write_batch(
    uow: UnitOfWork,
    batch: list[dict[str, Any]],
    reservations: _Reservations,
    correlation_id: str | None,
) -> list[str]:
    with uow:
        _lock_areas(uow, batch)
        candidates = _lock_candidates(uow, batch, reservations.written)
        index = CandidateIndex(candidates, reservations.reserved)
        events: list[PendingEvent] = []
        outcomes: list[str] = []
        for fields, found in zip(batch, index.match_all(batch, reservations.names), strict=True):
            outcomes.append(
                CREATED
                if found is None
                else _apply_directory_record(uow, found.therapist, fields, events, correlation_id)
            )
        new = [
            fields for fields, outcome in zip(batch, outcomes, strict=True) if outcome == CREATED
        ]
        inserted = _insert_new(uow, new)
        lost = [fields for fields in new if fields["directory_id"] not in inserted]
        if lost:  # a concurrent import inserted them after our read: they are updates now
            current = _lock_by_directory_id(uow, [fields["directory_id"] for fields in lost])
            for position, fields in enumerate(batch):
                therapist = current.get(fields["directory_id"])
                if outcomes[position] == CREATED and therapist is not None:
                    outcomes[position] = _apply_directory_record(
                        uow, therapist, fields, events, correlation_id
                    )
        for fields in new:
            if fields["directory_id"] in inserted:
                created = inserted[fields["directory_id"]]
                events.append(
                    therapist_event(THERAPIST_CREATED, created, sorted(fields), correlation_id)
                )
        imported: dict[tuple[str, ...], list[str]] = {}
        for event in events:
            uow.emit(event)
            names = tuple(event.envelope.payload.get("changed_fields", []))
            imported.setdefault(names, []).append(event.envelope.aggregate_id)
        for names, therapist_ids in imported.items():
            _audit(uow, "import", therapist_ids, names)
        uow.commit()
    return outcomes


def _lock_areas(uow: UnitOfWork, batch: list[dict[str, Any]]) -> None:
    """Transaction-scoped advisory locks on the batch's postal codes, in sorted order: two
    imports of one area take turns, so the second sees the person the first created and
    matches them by name instead of creating them again (row locks cannot cover rows not
    yet inserted). Released at commit or rollback, so safe under transaction pooling."""
    for postal_code in sorted({fields["postal_code"] for fields in batch}):
        uow.session.execute(
            text("SELECT pg_advisory_xact_lock(:ns, hashtext(:plz))"),
            {"ns": _IMPORT_LOCK_NAMESPACE, "plz": postal_code},
        )


def _lock_candidates(
    uow: UnitOfWork, batch: list[dict[str, Any]], written: set[str]
) -> list[Therapist]:
    """Every therapist the batch may match (its directory ids; in its postal codes, all but
    those this run wrote already), locked in id order: a concurrent import of the same area
    waits instead of deciding on stale rows."""
    ids = [fields["directory_id"] for fields in batch]
    postal_codes = sorted({fields["postal_code"] for fields in batch})
    in_area: ColumnElement[bool] = Therapist.postal_code.in_(postal_codes)
    if written:
        not_written = or_(
            Therapist.directory_id.is_(None), Therapist.directory_id.not_in(sorted(written))
        )
        in_area = and_(in_area, not_written)
    return list(
        uow.session.scalars(
            select(Therapist)
            .where(or_(Therapist.directory_id.in_(ids), in_area))
            .order_by(Therapist.id)
            .with_for_update()
        ).all()
    )


def _lock_by_directory_id(uow: UnitOfWork, directory_ids: list[str]) -> dict[str, Therapist]:
    rows = uow.session.scalars(
        select(Therapist)
        .where(Therapist.directory_id.in_(directory_ids))
        .order_by(Therapist.id)
        .with_for_update()
    ).all()
    return {row.directory_id: row for row in rows if row.directory_id}


def _apply_directory_record(
    uow: UnitOfWork,
    therapist: Therapist,
    fields: dict[str, Any],
    events: list[PendingEvent],
    correlation_id: str | None,
) -> str:
    changes = directory_changes(therapist, fields)
    if not changes:
        return UNCHANGED
    for name, value in changes.items():
        setattr(therapist, name, value)
    _touch(uow, therapist)
    events.append(therapist_event(THERAPIST_UPDATED, therapist, sorted(changes), correlation_id))
    return UPDATED


def _insert_new(uow: UnitOfWork, new: list[dict[str, Any]]) -> dict[str, Therapist]:
    """Insert the new therapists in one statement; a directory id a concurrent import took
    meanwhile is left out (ON CONFLICT DO NOTHING), never duplicated."""
    if not new:
        return {}
    now = utcnow()
    rows = [
        {**fields, "status": TherapistStatus.ACTIVE.value, "version": 1, "created_at": now,
         "updated_at": now}
        for fields in sorted(new, key=lambda fields: fields["directory_id"])
    ]  # fmt: skip
    # Core executemany (the connection, not the ORM session): one cached statement sent as
    # multi-row VALUES pages (insertmanyvalues)
    statement = (
        pg_insert(Therapist)
        .on_conflict_do_nothing(index_elements=[Therapist.directory_id])
        .returning(Therapist.id)
    )
    ids = [row.id for row in uow.session.connection().execute(statement, rows)]
    inserted = uow.session.scalars(select(Therapist).where(Therapist.id.in_(ids))).all()
    return {therapist.directory_id: therapist for therapist in inserted if therapist.directory_id}


def _start_report(uow: UnitOfWork, source: str) -> int:
    with uow:
        report = DirectoryImport(source=source[:500], started_at=utcnow())
        uow.session.add(report)
        uow.commit()
        return report.id


def _finish_report(uow: UnitOfWork, report_id: int, run: _DirectoryImportRun) -> DirectoryImport:
    with uow:
        report = uow.session.get_one(DirectoryImport, report_id)
        report.created = run.counts.created
        report.updated = run.counts.updated
        report.unchanged = run.counts.unchanged
        report.skipped = run.skipped
        report.errors = run.errors
        report.finished_at = utcnow()
        uow.commit()
    return report


def get_directory_import(uow: UnitOfWork, import_id: int) -> DirectoryImport:
    """One import report, or NotFound."""
    with uow:
        report = uow.session.get(DirectoryImport, import_id)
    if report is None:
        raise NotFound(f"directory import {import_id} does not exist")
    return report


def list_directory_imports(uow: UnitOfWork, query: PageQuery) -> Page:
    """A page of import reports, newest first, with the number of skipped and broken
    entries instead of the lists (those only in `get_directory_import`)."""
    with uow:
        total = uow.session.execute(select(func.count()).select_from(DirectoryImport)).scalar_one()
        rows = uow.session.execute(
            select(
                DirectoryImport.id,
                DirectoryImport.source,
                DirectoryImport.created,
                DirectoryImport.updated,
                DirectoryImport.unchanged,
                func.jsonb_array_length(DirectoryImport.skipped).label("skipped_count"),
                func.jsonb_array_length(DirectoryImport.errors).label("error_count"),
                DirectoryImport.started_at,
                DirectoryImport.finished_at,
            )
            .order_by(DirectoryImport.id.desc())
            .offset((query.page - 1) * query.per_page)
            .limit(query.per_page)
        ).all()
    items = [dict(row._mapping) for row in rows]
    return Page(items=items, total=total, page=query.page, per_page=query.per_page)
