"""Inquiries (business-rules.md §6): the one writer bundle runs and staff share, manual inquiries,
and the inquiry reads (list, detail, a search's inquiries).

Every writer of new inquiries holds the same transaction-scoped advisory lock, so runs and
manual inquiries serialise; the database's own rules (one open inquiry per practice, budget
never exceeded) hold whatever runs at once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from typing import Any, cast

from sqlalchemy import (
    Double,
    Integer,
    String,
    Table,
    and_,
    any_,
    func,
    insert,
    literal,
    select,
    text,
    update,
)
from sqlalchemy import cast as cast_
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session

from matching_service.bundling.eligibility import age_on, eligible_pairs, prepare
from matching_service.bundling.explain import travel_km, unmet_constraints
from matching_service.bundling.model import BundleConfig, Id, Search
from matching_service.models import (
    OPEN_INQUIRY_STATUSES,
    Inquiry,
    InquiryPatient,
    PatientProjection,
    PatientSearch,
    TherapistProjection,
)
from matching_service.placement.links import LinkSigner
from matching_service.schemas import (
    INQUIRY_CREATED,
    InquiryCreate,
    InquiryListQuery,
)
from matching_service.service import market
from matching_service.settings import MatchingSettings
from shared.db import UnitOfWork, count_upto, ids_where, utcnow
from shared.errors import Conflict, NotFound, RuleViolation
from shared.outbox import PendingEvent
from shared.web import Page

PRODUCER = "matching_service"
# pg_advisory_xact_lock key of every writer of new inquiries ("inqu" in ASCII)
INQUIRY_WRITE_LOCK = 0x696E7175
# the platform places statutorily insured patients; patient events carry no insurer
INSURER_TYPE = "statutory"
# Core table: its rows go in as one INSERT ... SELECT FROM unnest (no ORM objects)
_INQUIRIES = cast(Table, Inquiry.__table__)
# the unique index's predicate as literal SQL (an executemany takes no expanding IN list)
_OPEN_INQUIRY = text("status IN (" + ", ".join(f"'{s}'" for s in OPEN_INQUIRY_STATUSES) + ")")
_INQUIRY_PATIENTS = cast(Table, InquiryPatient.__table__)


def bundle_config(settings: MatchingSettings) -> BundleConfig:
    """The bundler's configuration from the service settings."""
    return BundleConfig(
        bundle_min_size=settings.bundle_min_size,
        bundle_max_size=settings.bundle_max_size,
        max_inquiries_per_patient=settings.max_open_inquiries_per_search,
    )


def lock_inquiry_writes(session: Session) -> None:
    """Wait for, then hold until commit or rollback, the lock of every inquiry writer."""
    session.execute(select(func.pg_advisory_xact_lock(INQUIRY_WRITE_LOCK)))


# ---------------------------------------------------------------- the writer


@dataclass(frozen=True, slots=True)
class HeldSearch:
    """A search row locked for this transaction, with what an inquiry tells of its patient
    beyond the bundler's values."""

    search_id: int
    patient_id: int
    status: str
    budget_left: int
    symptoms: list[str]
    two_year_rule_flag: bool


def hold_searches(session: Session, search_ids: Sequence[int]) -> dict[int, HeldSearch]:
    """Lock the searches' rows (in id order: no deadlock between writers) and read them (Core
    rows on the session's connection: no ORM handling per row)."""
    s, p = PatientSearch, PatientProjection
    rows = session.connection().execute(
        select(
            s.id,
            s.patient_id,
            s.status,
            s.contact_budget - s.contacts_used,
            p.symptoms,
            p.two_year_rule_flag,
        )
        .join(p, p.patient_id == s.patient_id)
        .where(s.id == func.any(_int_array(sorted(set(search_ids)))))
        .order_by(s.id)
        .with_for_update(of=s)  # the searches' rows only; projections stay free to update
    )
    return {
        search_id: HeldSearch(search_id, patient_id, status, left, symptoms or [], flag)
        for search_id, patient_id, status, left, symptoms, flag in rows
    }


@dataclass(frozen=True, slots=True)
class PlannedInquiry:
    """An inquiry to write: its patients (search id, distance km) in position order."""

    therapist_id: int
    practice_key: str
    patients: tuple[tuple[int, float | None], ...]


@dataclass(frozen=True, slots=True)
class WrittenInquiry:
    """An inquiry as written, its searches in position order."""

    inquiry_id: int
    therapist_id: int
    practice_key: str
    created_at: datetime
    search_ids: list[int]


@dataclass
class WriteResult:
    """What `write_inquiries` wrote, and the practices that had an open inquiry already."""

    written: list[WrittenInquiry] = field(default_factory=list)
    practice_taken: list[PlannedInquiry] = field(default_factory=list)


def write_inquiries(
    uow: UnitOfWork,
    planned: Sequence[PlannedInquiry],
    held: dict[int, HeldSearch],
    searches: Mapping[Id, Search],
    *,
    origin: str,
    settings: MatchingSettings,
    as_of: datetime,
    bundle_run_id: int | None = None,
    correlation_id: str | None = None,
) -> WriteResult:
    """Insert the inquiries and their patients in bulk, use one contact per inclusion and
    emit one inquiry.created each, inside the caller's transaction.

    The caller holds, in this order, `lock_inquiry_writes` (first in its transaction: a
    writer that locked search rows before it could deadlock with a bundle run) and the
    searches' rows (`hold_searches`), and has checked their status and budget. `searches`
    are the bundler's values of the searches (what the event tells about each patient).
    A plan whose practice has an open inquiry is not written (`practice_taken`).
    """
    result = WriteResult()
    if not planned:
        return result
    session = uow.session
    now = utcnow()
    # one INSERT of every inquiry, its columns as arrays (one parameter per column)
    sizes = _unnest([len(plan.patients) for plan in planned], ARRAY(Integer))
    inserted = session.execute(
        pg_insert(_INQUIRIES)
        .from_select(
            [
                "bundle_run_id",
                "therapist_id",
                "practice_key",
                "origin",
                "status",
                "original_size",
                "current_size",
                "created_at",
                "updated_at",
            ],
            select(
                literal(bundle_run_id, Integer),
                _unnest([plan.therapist_id for plan in planned], ARRAY(Integer)),
                _unnest([plan.practice_key for plan in planned], ARRAY(String)),
                literal(origin),
                literal("unsent"),
                sizes,
                sizes,
                literal(now, Inquiry.created_at.type),
                literal(now, Inquiry.updated_at.type),
            ),
        )
        # a practice with an open inquiry gets no second one (the partial unique index)
        .on_conflict_do_nothing(
            index_elements=[Inquiry.practice_key],
            index_where=_OPEN_INQUIRY,
        )
        .returning(Inquiry.id, Inquiry.practice_key, Inquiry.created_at)
    ).all()
    inquiry_of = {row.practice_key: row for row in inserted}
    rows: list[dict[str, Any]] = []
    used: dict[int, int] = {}
    for plan in planned:
        inserted_row = inquiry_of.pop(plan.practice_key, None)  # once: a practice, one inquiry
        if inserted_row is None:
            result.practice_taken.append(plan)
            continue
        inquiry_id = inserted_row.id
        for position, (search_id, km) in enumerate(plan.patients, start=1):
            rows.append(
                {
                    "inquiry_id": inquiry_id,
                    "search_id": search_id,
                    "patient_id": held[search_id].patient_id,
                    "position": position,
                    "distance_km": km,
                }
            )
            used[search_id] = used.get(search_id, 0) + 1
        search_ids = [search_id for search_id, _ in plan.patients]
        result.written.append(
            WrittenInquiry(
                inquiry_id,
                plan.therapist_id,
                plan.practice_key,
                inserted_row.created_at,
                search_ids,
            )
        )
    if not rows:
        return result
    # one INSERT of every patient row, its columns as arrays (one parameter per column)
    columns = ("inquiry_id", "search_id", "patient_id", "position", "distance_km")
    session.execute(
        insert(_INQUIRY_PATIENTS).from_select(
            [*columns, "status"],
            select(
                *(_unnest([row[name] for row in rows], _ARRAY_OF[name]) for name in columns),
                literal("open"),
            ),
        )
    )
    # one UPDATE for all searches, its (id, count) pairs as two arrays
    counts = select(
        _unnest(list(used), _ARRAY_OF["search_id"]).label("id"),
        _unnest(list(used.values()), _ARRAY_OF["search_id"]).label("n"),
    ).subquery("used")
    session.execute(
        update(PatientSearch)
        .where(PatientSearch.id == counts.c.id)
        .values(contacts_used=PatientSearch.contacts_used + counts.c.n, updated_at=now)
        # no loaded search objects to refresh: skip the ORM's per-row bookkeeping
        .execution_options(synchronize_session=False)
    )
    _emit_created(
        uow,
        result.written,
        rows,
        held,
        searches,
        settings,
        as_of,
        origin,
        bundle_run_id,
        correlation_id,
    )
    return result


_ARRAY_OF = {
    "inquiry_id": ARRAY(Integer),
    "search_id": ARRAY(Integer),
    "patient_id": ARRAY(Integer),
    "position": ARRAY(Integer),
    "distance_km": ARRAY(Double),
}


def _int_array(items: list[int]) -> Any:
    """One parameter holding many ids (`= ANY(...)`: no IN list of thousands of parameters)."""
    return cast_(literal(items, ARRAY(Integer)), ARRAY(Integer))


def _unnest(items: list[Any], array_type: ARRAY) -> Any:
    """The items as a set of rows; several in one SELECT list zip (PostgreSQL 10+)."""
    # cast: psycopg2 sends a list of NULLs (or an empty list) without an element type
    return func.unnest(cast_(literal(items, array_type), array_type))


def _emit_created(
    uow: UnitOfWork,
    written: list[WrittenInquiry],
    rows: list[dict[str, Any]],
    held: dict[int, HeldSearch],
    searches: Mapping[Id, Search],
    settings: MatchingSettings,
    as_of: datetime,
    origin: str,
    bundle_run_id: int | None,
    correlation_id: str | None,
) -> None:
    """One inquiry.created per written inquiry: anonymised patients with their answer links."""
    by_inquiry: dict[int, list[dict[str, Any]]] = {}
    for row in rows:
        by_inquiry.setdefault(row["inquiry_id"], []).append(row)
    signer = LinkSigner(settings.answer_link_secret.get_secret_value())
    expires_at = as_of + timedelta(days=settings.answer_link_days)
    base = settings.answer_link_base_url.rstrip("/")
    today = as_of.date()
    for inquiry in written:
        summaries: list[dict[str, Any]] = []
        for row in by_inquiry[inquiry.inquiry_id]:
            search, facts = searches[row["search_id"]], held[row["search_id"]]
            tokens = signer.sign_every_outcome(inquiry.inquiry_id, row["search_id"], expires_at)
            links = {outcome: f"{base}/answers/{token}" for outcome, token in tokens.items()}
            summaries.append(
                {
                    "search_id": row["search_id"],
                    "patient_id": row["patient_id"],
                    "reference": f"PS-{row['search_id']}",
                    "position": row["position"],
                    "age": age_on(cast(date, search.birth_date), today),
                    "gender": search.gender,
                    "diagnosis": search.diagnosis,
                    "symptoms": facts.symptoms,
                    "insurer_type": INSURER_TYPE,
                    "availability": search.availability,
                    "distance_km": row["distance_km"],
                    "two_year_rule_flag": facts.two_year_rule_flag,
                    "answer_links": links,
                }
            )
        # a plain dict: the event type validates it against InquiryCreatedPayload once
        payload = {
            "inquiry_id": inquiry.inquiry_id,
            "therapist_id": inquiry.therapist_id,
            "practice_key": inquiry.practice_key,
            "origin": origin,
            "bundle_run_id": bundle_run_id,
            "created_at": inquiry.created_at,
            "answer_links_valid_until": expires_at,
            "patients": summaries,
        }
        uow.emit(
            PendingEvent.of(
                INQUIRY_CREATED,
                producer=PRODUCER,
                aggregate_id=inquiry.inquiry_id,
                payload=payload,
                correlation_id=correlation_id,
            )
        )


# ---------------------------------------------------------------- manual inquiries


def create_inquiry(
    uow: UnitOfWork,
    request: InquiryCreate,
    *,
    settings: MatchingSettings,
    as_of: datetime | None = None,
    correlation_id: str | None = None,
) -> InquiryDetail:
    """Staff send one therapist 1..BUNDLE_MAX_SIZE patients by hand (business-rules.md §6): the
    therapist contactable, every search active with budget left and every pair within the hard
    constraints; written by the bundle runs' writer under the same lock."""
    as_of = as_of or utcnow()
    today = as_of.date()
    search_ids = request.search_ids
    _check_size(search_ids, settings.bundle_max_size)
    config = bundle_config(settings)
    with uow:
        session = uow.session
        lock_inquiry_writes(session)
        held_therapist = market.contactability(session, today, [request.therapist_id]).get(
            request.therapist_id
        )
        if held_therapist is None:
            raise NotFound(f"therapist {request.therapist_id} is not known to matching")
        if not held_therapist.contactable:
            raise Conflict(
                f"therapist {request.therapist_id} may not be contacted now: "
                + ", ".join(held_therapist.reasons),
                {
                    "therapist_id": request.therapist_id,
                    "reasons": list(held_therapist.reasons),
                    "next_contactable_date": held_therapist.next_contactable_date,
                },
            )
        held = hold_searches(session, search_ids)
        _check_searches(search_ids, held)
        searches = {
            s.search_id: s
            for s in market.load_searches(
                session,
                search_ids=search_ids,
                max_open_inquiries=settings.max_open_inquiries_per_search,
            )
        }
        full = [sid for sid in search_ids if searches[sid].contact_budget <= 0]
        if full:
            raise Conflict(
                f"search(es) {_ids(full)} are in {settings.max_open_inquiries_per_search} open "
                "inquiries already (max_open_inquiries_per_search)",
                {"search_ids": full, "rule": "max_open_inquiries_per_search"},
            )
        (therapist,) = market.load_therapists(session, today, therapist_ids=[request.therapist_id])
        _check_pairs([searches[sid] for sid in search_ids], therapist, config, today)
        patients = tuple(
            (sid, _rounded(travel_km(searches[sid], therapist, config))) for sid in search_ids
        )
        plan = PlannedInquiry(request.therapist_id, held_therapist.practice_key, patients)
        result = write_inquiries(
            uow,
            [plan],
            held,
            searches,
            origin="manual",
            settings=settings,
            as_of=as_of,
            correlation_id=correlation_id,
        )
        if not result.written:
            raise Conflict(
                f"the practice of therapist {request.therapist_id} has an open inquiry",
                {"therapist_id": request.therapist_id, "reasons": ["open_inquiry"]},
            )
        inquiry_id = result.written[0].inquiry_id
        uow.commit()
        return _detail(session, inquiry_id)


def _ids(search_ids: Sequence[int]) -> str:
    return ", ".join(str(sid) for sid in search_ids)


def _rounded(km: float | None) -> float | None:
    return None if km is None else round(km, 3)


def _check_size(search_ids: Sequence[int], max_size: int) -> None:
    """422 for more searches than a bundle may hold, or one search twice."""
    if len(search_ids) > max_size:
        raise RuleViolation(
            f"an inquiry holds at most {max_size} patients (BUNDLE_MAX_SIZE)",
            [{"field": "search_ids", "message": f"at most {max_size} searches"}],
        )
    twice = sorted({sid for sid in search_ids if search_ids.count(sid) > 1})
    if twice:
        raise RuleViolation(
            f"search(es) {_ids(twice)} listed more than once",
            [{"field": "search_ids", "message": f"duplicate search ids: {_ids(twice)}"}],
        )


def _check_searches(search_ids: Sequence[int], held: dict[int, HeldSearch]) -> None:
    """404 for an unknown search; 409 for one not active or without budget left."""
    unknown = [sid for sid in search_ids if sid not in held]
    if unknown:
        raise NotFound(f"patient search(es) {_ids(unknown)} do not exist", {"search_ids": unknown})
    inactive = [held[sid] for sid in search_ids if held[sid].status != "active"]
    if inactive:
        raise Conflict(
            "only active searches are offered: "
            + ", ".join(f"search {s.search_id} is {s.status}" for s in inactive),
            {
                "rule": "search_not_active",
                "searches": [{"search_id": s.search_id, "status": s.status} for s in inactive],
            },
        )
    spent = [sid for sid in search_ids if held[sid].budget_left <= 0]
    if spent:
        raise Conflict(
            f"search(es) {_ids(spent)} have no contact budget left; grant contacts first "
            "(POST /api/patient-searches/{id}/contact-requests)",
            {"rule": "budget_used_up", "search_ids": spent},
        )


def _check_pairs(searches: list[Search], therapist: Any, config: BundleConfig, today: date) -> None:
    """422 naming, per search the therapist may not get, the hard constraints it breaks."""
    # eligibility decides; budget and contactability were checked above
    pool = [replace(s, contact_budget=1) for s in searches]
    prep = prepare(pool, [replace(therapist, contactable=True)], config, today)
    pairs = eligible_pairs(prep, config, today)
    eligible = {prep.searches[p].search_id for p in pairs.patient.tolist()}
    failing: list[dict[str, Any]] = []
    for search in searches:
        if search.search_id in eligible:
            continue
        rules = unmet_constraints(search, therapist, config, today) or ["distance"]
        failing.append({"search_id": search.search_id, "rules": rules})
    if failing:
        raise RuleViolation(
            f"therapist {therapist.therapist_id} may not be offered "
            + "; ".join(f"search {f['search_id']} ({', '.join(f['rules'])})" for f in failing),
            {"therapist_id": therapist.therapist_id, "searches": failing},
        )


# ---------------------------------------------------------------- reads


@dataclass(frozen=True)
class InquiryDetail:
    """An inquiry with its patients in position order (the shape of `InquiryOut`)."""

    inquiry: Inquiry
    # ORM objects; plain rows of the same columns in the list (read only)
    patients: list[Any]

    def __getattr__(self, name: str) -> Any:
        """The inquiry's own columns (id, status, sent_at, ...) read through."""
        if name == "inquiry":  # not set yet (copy, unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.inquiry, name)


def inquiry_detail(uow: UnitOfWork, inquiry_id: int) -> InquiryDetail:
    """One inquiry with its patients, or NotFound."""
    with uow:
        return _detail(uow.session, inquiry_id)


def _detail(session: Session, inquiry_id: int) -> InquiryDetail:
    inquiry = session.get(Inquiry, inquiry_id, populate_existing=True)
    if inquiry is None:
        raise NotFound(f"inquiry {inquiry_id} does not exist")
    return _with_patients(session, [inquiry])[0]


def _with_patients(session: Session, inquiries: Sequence[Inquiry]) -> list[InquiryDetail]:
    """The inquiries with their patients (one query)."""
    patients: dict[int, list[InquiryPatient]] = {inquiry.id: [] for inquiry in inquiries}
    if inquiries:
        rows = session.execute(
            select(InquiryPatient)
            .where(InquiryPatient.inquiry_id.in_(list(patients)))
            .order_by(InquiryPatient.inquiry_id, InquiryPatient.position)
        ).scalars()
        for row in rows:
            patients[row.inquiry_id].append(row)
    return [InquiryDetail(inquiry, patients[inquiry.id]) for inquiry in inquiries]


def _with_patient_rows(session: Session, inquiries: Sequence[Inquiry]) -> list[InquiryDetail]:
    """The same for reading only: the patients as plain rows of the columns `InquiryOut`
    shows (a page holds about 100 of them; as ORM objects they cost most of the request)."""
    table = InquiryPatient.__table__
    patients: dict[int, list[Any]] = {inquiry.id: [] for inquiry in inquiries}
    if inquiries:
        columns = (
            "inquiry_id", "search_id", "patient_id", "position", "status", "outcome",
            "conflict", "replacement_offers",
        )  # fmt: skip
        rows = session.execute(
            select(*(table.c[name] for name in columns))
            .where(table.c.inquiry_id.in_(list(patients)))
            .order_by(table.c.inquiry_id, table.c.position)
        )
        for row in rows:
            patients[row.inquiry_id].append(row)
    return [InquiryDetail(inquiry, patients[inquiry.id]) for inquiry in inquiries]


def list_inquiries(uow: UnitOfWork, query: InquiryListQuery, *, follow_up_after_days: int) -> Page:
    """A page of inquiries, newest first, filtered by therapist, status, overdue (sent,
    unanswered for FOLLOW_UP_AFTER_DAYS at `as_of`) and the therapist's postal-code prefix."""
    conditions = []
    if query.therapist_id is not None:
        conditions.append(Inquiry.therapist_id == query.therapist_id)
    if query.status is not None:
        conditions.append(Inquiry.status == query.status)
    if query.overdue is not None:
        due = (query.as_of or utcnow()) - timedelta(days=follow_up_after_days)
        overdue = and_(Inquiry.status == "sent", Inquiry.sent_at < due)
        conditions.append(overdue if query.overdue else ~overdue)
    if query.postal_code_prefix:
        conditions.append(
            Inquiry.therapist_id
            == any_(
                ids_where(
                    TherapistProjection.therapist_id,
                    TherapistProjection.postal_code.startswith(
                        query.postal_code_prefix, autoescape=True
                    ),
                )
            )
        )
    with uow:
        session = uow.session
        total, exact = count_upto(session, select(Inquiry).where(*conditions))
        items = (
            session.execute(
                select(Inquiry)
                .where(*conditions)
                .order_by(Inquiry.created_at.desc(), Inquiry.id.desc())
                .offset((query.page - 1) * query.per_page)
                .limit(query.per_page)
            )
            .scalars()
            .all()
        )
        details = _with_patient_rows(session, items)
    return Page(
        items=details, total=total, page=query.page, per_page=query.per_page, total_exact=exact
    )
