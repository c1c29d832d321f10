"""Answers to inquiries (business-rules.md §8): outcomes per patient, first acceptance wins,
conflicts with replacement offers, withdrawals from other open inquiries, answer links.

Locks are always taken in one order, so that concurrent answers, claims and withdrawals
wait for each other instead of deadlocking: first the searches an answer accepts (by id),
then the inquiries it touches (its own and the open ones holding those searches, by id),
then inquiry patients. Whether an acceptance claims its search is decided by one conditional
UPDATE; of any number of concurrent acceptances of a patient exactly one wins.
"""

from __future__ import annotations

import functools
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    Integer,
    Text,
    Update,
    and_,
    bindparam,
    case,
    cast,
    column,
    exists,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.dialects.postgresql import insert as pg_insert

from matching_service.bundling.model import BundleConfig
from matching_service.models import (
    OPEN_INQUIRY_STATUSES,
    Inquiry,
    InquiryPatient,
    PatientProjection,
    PatientSearch,
    SearchExclusion,
)
from matching_service.placement.answers import response_type
from matching_service.placement.links import LinkClaim
from matching_service.placement.replacement import replacement_offer
from matching_service.placement.values import ACCEPTING, EXCLUDING, Outcome
from matching_service.schemas import (
    INQUIRY_ANSWERED,
    SEARCH_CLAIMED,
    AnsweredPatient,
    InquiryAnsweredPayload,
    InquiryResponseIn,
    SearchStatusChangedPayload,
)
from matching_service.service import market
from matching_service.service.cooling import start_cooling
from matching_service.service.inquiries import InquiryDetail
from matching_service.service.withdrawals import CLAIMED_ELSEWHERE, withdraw_search
from matching_service.settings import MatchingSettings
from shared.db import UnitOfWork, UTCDateTime, json_dumps, utcnow
from shared.errors import Conflict, NotFound, RuleViolation
from shared.outbox import PendingEvent

PRODUCER = "matching_service"

# ---------------------------------------------------------------- claims


def lock_searches(uow: UnitOfWork, search_ids: Collection[int]) -> None:
    """Lock searches in id order (FOR NO KEY UPDATE: inserts referring to them still pass)."""
    if search_ids:
        uow.session.execute(
            select(PatientSearch.id)
            .where(PatientSearch.id.in_(sorted(search_ids)))
            .order_by(PatientSearch.id)
            .with_for_update(key_share=True)
        ).all()


def lock_claimable(uow: UnitOfWork, search_ids: Collection[int]) -> set[int]:
    """Lock, in id order, the searches an acceptance may still claim (active ones) and
    return their ids.

    A search found no longer active is let go at once (its lock was taken in a savepoint
    that is rolled back): its acceptance is a conflict, and holding it to the end of this
    answer would make every other late acceptance of the patient wait for this one.
    """
    if not search_ids:
        return set()
    savepoint = uow.session.begin_nested()
    held = uow.session.execute(
        select(PatientSearch.id, PatientSearch.status)
        .where(PatientSearch.id.in_(sorted(search_ids)))
        .order_by(PatientSearch.id)
        .with_for_update(key_share=True)
    ).all()
    active = {row.id for row in held if row.status == "active"}
    if len(active) == len(held):
        savepoint.commit()
        return active
    savepoint.rollback()
    lock_searches(uow, active)  # none held now: the order is kept
    return active


def claim_search(
    uow: UnitOfWork,
    search_id: int,
    therapist_id: int,
    *,
    inquiry_id: int | None,
    now: datetime,
    correlation_id: str | None = None,
) -> bool:
    """The first acceptance claims the search: one conditional UPDATE (active, therapist not
    excluded); on success search.claimed is emitted and the patient withdrawn from every
    other open inquiry."""
    claimed = uow.session.execute(
        update(PatientSearch)
        .where(
            PatientSearch.id == search_id,
            PatientSearch.status == "active",
            ~exists().where(
                SearchExclusion.search_id == search_id,
                SearchExclusion.therapist_id == therapist_id,
            ),
            # nor one the patient excluded for good (patient_service's exclusions)
            ~exists().where(
                PatientProjection.patient_id == PatientSearch.patient_id,
                PatientProjection.excluded_therapist_ids.contains([therapist_id]),
            ),
        )
        .values(status="in_trial", placed_therapist_id=therapist_id, claimed_at=now, updated_at=now)
        .returning(
            PatientSearch.patient_id, PatientSearch.waiting_since, PatientSearch.contact_budget
        )
    ).first()
    if claimed is None:
        return False
    uow.emit(
        PendingEvent.of(
            SEARCH_CLAIMED,
            producer=PRODUCER,
            aggregate_id=search_id,
            payload=SearchStatusChangedPayload(
                search_id=search_id,
                patient_id=claimed.patient_id,
                status="in_trial",
                previous_status="active",
                waiting_since=claimed.waiting_since,
                contact_budget=claimed.contact_budget,
                therapist_id=therapist_id,
                inquiry_id=inquiry_id,
            ),
            correlation_id=correlation_id,
        )
    )
    withdraw_search(
        uow, search_id, CLAIMED_ELSEWHERE, inquiry_id, correlation_id=correlation_id, as_of=now
    )
    return True


class ReplacementFinder:
    """Replacement offers for therapists whose acceptance lost (same hard rules as bundling,
    with budget; cooling and the weekly email limit do not hold the reply back). The
    searches within reach of a practice are read once per use case, when the first conflict
    there needs them."""

    def __init__(self, uow: UnitOfWork, settings: MatchingSettings, now: datetime) -> None:
        self.uow, self.settings, self.today = uow, settings, now.date()
        # the candidates near each practice location asked about in this use case
        self._searches: dict[tuple[float, float], list[Any]] = {}

    def offers(self, therapist_id: int, skip_search_ids: Collection[int]) -> list[int]:
        """Search ids eligible for the therapist, longest waiting first, at most a bundle."""
        session = self.uow.session
        therapists = market.load_therapists(session, self.today, therapist_ids=[therapist_id])
        therapist = therapists[0] if therapists else None
        if therapist is None or therapist.lat is None or therapist.lon is None:
            return []  # not active, unknown or not located: nobody to offer patients to
        near = (therapist.lat, therapist.lon)
        searches = self._searches.get(near)
        if searches is None:
            # only patients within reach of the practice (not the whole country's)
            searches = market.load_searches(
                session, max_open_inquiries=self.settings.max_open_inquiries_per_search, near=near
            )
            self._searches[near] = searches
        config = BundleConfig(
            bundle_min_size=self.settings.bundle_min_size,
            bundle_max_size=self.settings.bundle_max_size,
            max_inquiries_per_patient=self.settings.max_open_inquiries_per_search,
        )
        offered = replacement_offer(
            therapist,
            searches,
            config,
            self.today,
            skip_search_ids=skip_search_ids,
            limit=self.settings.bundle_max_size,
        )
        return [int(search_id) for search_id in offered]


def placed_with(uow: UnitOfWork, search_id: int, therapist_id: int) -> bool:
    """Whether the search is in trial (or successful) with this therapist already."""
    return bool(
        uow.session.execute(
            select(
                exists().where(
                    PatientSearch.id == search_id,
                    PatientSearch.status.in_(("in_trial", "successful")),
                    PatientSearch.placed_therapist_id == therapist_id,
                )
            )
        ).scalar_one()
    )


# ---------------------------------------------------------------- answers


@dataclass(frozen=True)
class InquiryAnswer:
    """An inquiry with its answer as `InquiryAnswerOut` shows it: the inquiry's detail and
    the conflicts its acceptances met."""

    detail: InquiryDetail

    def __getattr__(self, name: str) -> Any:
        """The detail's fields (id, status, patients, ...) read through."""
        if name == "detail":  # not set yet (copy, unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.detail, name)

    @property
    def conflicts(self) -> list[dict[str, Any]]:
        """Acceptances that came after another claim, with the patients offered instead."""
        return [
            {"search_id": p.search_id, "replacement_offers": list(p.replacement_offers or [])}
            for p in self.detail.patients
            if p.conflict
        ]


def record_response(
    uow: UnitOfWork,
    inquiry_id: int,
    response: InquiryResponseIn,
    settings: MatchingSettings,
    *,
    as_of: datetime | None = None,
    correlation_id: str | None = None,
) -> InquiryAnswer:
    """Record a therapist's answer to an inquiry (staff, by email or phone).

    The patients must be exactly the inquiry's (withdrawn ones included); the response type
    must follow from the outcomes. An inquiry answered already takes the same answer again
    (nothing changes) and, when links answered part of it, the outcomes still missing;
    anything contradicting a recorded outcome is a conflict.
    """
    outcomes = {p.search_id: Outcome(p.outcome) for p in response.patients}
    with uow:
        inquiry, rows, claimable = _lock_for_answer(uow, inquiry_id, outcomes)
        _check_exact_patients(rows, outcomes)
        expected = response_type(dict(outcomes.items()))
        if response.response_type != expected.value:
            raise RuleViolation(
                f"response_type '{response.response_type}' does not match the outcomes",
                [
                    {
                        "field": "response_type",
                        "message": f"the outcomes make it '{expected.value}'",
                    }
                ],
            )
        _check_recorded(rows, outcomes)
        missing = {sid: o for sid, o in outcomes.items() if rows[sid].outcome is None}
        if missing:
            _apply(
                uow,
                inquiry,
                rows,
                missing,
                settings,
                claimable=claimable,
                channel=response.channel,
                notes=response.notes,
                now=as_of or utcnow(),
                correlation_id=correlation_id,
            )
        answer = InquiryAnswer(InquiryDetail(inquiry, _in_order(rows)))
        uow.commit()
    return answer


@dataclass(frozen=True)
class LinkAnswer:
    """What an answer link recorded (or found recorded) for its patient."""

    inquiry_id: int
    search_id: int
    outcome: str
    recorded_now: bool
    conflict: bool
    replacement_offers: list[int]


def record_link_answer(
    uow: UnitOfWork,
    claim: LinkClaim,
    settings: MatchingSettings,
    *,
    as_of: datetime | None = None,
    correlation_id: str | None = None,
) -> LinkAnswer:
    """Record one patient's outcome from a signed answer link, once: a patient with an
    outcome keeps it (the second click shows it). The first answer of the inquiry marks it
    answered and starts cooling."""
    outcome = Outcome(claim.outcome)
    with uow:
        inquiry, rows, claimable = _lock_for_answer(
            uow, claim.inquiry_id, {claim.search_id: outcome}
        )
        row = rows.get(claim.search_id)
        if row is None:
            raise NotFound(
                f"search {claim.search_id} is not in inquiry {claim.inquiry_id}",
                {"inquiry_id": claim.inquiry_id, "search_id": claim.search_id},
            )
        recorded_now = row.outcome is None
        if recorded_now:
            _apply(
                uow,
                inquiry,
                rows,
                {claim.search_id: outcome},
                settings,
                claimable=claimable,
                channel="link",
                notes=None,
                now=as_of or utcnow(),
                correlation_id=correlation_id,
            )
        assert row.outcome is not None
        answer = LinkAnswer(
            inquiry_id=claim.inquiry_id,
            search_id=claim.search_id,
            outcome=row.outcome,
            recorded_now=recorded_now,
            conflict=row.conflict,
            replacement_offers=list(row.replacement_offers or []),
        )
        uow.commit()
    return answer


@dataclass(frozen=True)
class LinkView:
    """What an answer link's page shows before anything is recorded."""

    inquiry_id: int
    search_id: int
    inquiry_status: str
    recorded_outcome: str | None


def link_view(uow: UnitOfWork, claim: LinkClaim) -> LinkView:
    """The inquiry and patient a valid link points to (reads only: mail scanners open links
    before people do)."""
    with uow:
        found = uow.session.execute(
            select(Inquiry.status, InquiryPatient.outcome)
            .join(InquiryPatient, InquiryPatient.inquiry_id == Inquiry.id)
            .where(Inquiry.id == claim.inquiry_id, InquiryPatient.search_id == claim.search_id)
        ).first()
    if found is None:
        raise NotFound(f"search {claim.search_id} is not in inquiry {claim.inquiry_id}")
    return LinkView(claim.inquiry_id, claim.search_id, found.status, found.outcome)


def _lock_for_answer(
    uow: UnitOfWork, inquiry_id: int, outcomes: Mapping[int, Outcome]
) -> tuple[Inquiry, dict[int, InquiryPatient], set[int]]:
    """Lock what an answer may touch, in the one order (accepted searches still active,
    then inquiries), and read the inquiry (404 unknown, 409 closed), its patients by search
    id and the accepted searches it may claim."""
    session = uow.session
    claimable = lock_claimable(
        uow, [sid for sid, outcome in outcomes.items() if outcome in ACCEPTING]
    )
    holding = select(InquiryPatient.inquiry_id).where(
        InquiryPatient.search_id.in_(claimable), InquiryPatient.status == "open"
    )
    locked = (
        session.execute(
            select(Inquiry)
            .where(
                or_(
                    Inquiry.id == inquiry_id,
                    and_(Inquiry.status.in_(OPEN_INQUIRY_STATUSES), Inquiry.id.in_(holding)),
                )
            )
            .order_by(Inquiry.id)
            .with_for_update(of=Inquiry, key_share=True)
            .execution_options(populate_existing=True)
        )
        .scalars()
        .all()
    )
    inquiry = next((found for found in locked if found.id == inquiry_id), None)
    if inquiry is None:
        raise NotFound(f"inquiry {inquiry_id} does not exist")
    if inquiry.status == "closed":
        raise Conflict(
            f"inquiry {inquiry_id} was closed without an answer (no_response); an answer can "
            "no longer be recorded for it",
            {"status": "closed", "response_type": inquiry.response_type},
        )
    rows = session.execute(
        select(InquiryPatient)
        .where(InquiryPatient.inquiry_id == inquiry_id)
        .order_by(InquiryPatient.position)
        .execution_options(populate_existing=True)
    ).scalars()
    return inquiry, {row.search_id: row for row in rows}, claimable


def _check_exact_patients(
    rows: Mapping[int, InquiryPatient], outcomes: Mapping[int, Outcome]
) -> None:
    missing = sorted(set(rows) - set(outcomes))
    extra = sorted(set(outcomes) - set(rows))
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing answers for search ids {missing}")
        if extra:
            parts.append(f"search ids {extra} are not in the inquiry")
        raise RuleViolation(
            "the answer must list exactly the inquiry's patients (withdrawn ones included)",
            [
                {
                    "field": "patients",
                    "message": "; ".join(parts),
                    "missing_search_ids": missing,
                    "extra_search_ids": extra,
                }
            ],
        )


def _check_recorded(rows: Mapping[int, InquiryPatient], outcomes: Mapping[int, Outcome]) -> None:
    contradicted = {
        sid: rows[sid].outcome
        for sid, outcome in outcomes.items()
        if rows[sid].outcome is not None and rows[sid].outcome != outcome
    }
    if contradicted:
        raise Conflict(
            "the inquiry was answered already with other outcomes; a recorded answer is not "
            "changed (send the recorded outcomes to complete a partly answered inquiry)",
            {"recorded": [{"search_id": s, "outcome": o} for s, o in sorted(contradicted.items())]},
        )


def _apply(
    uow: UnitOfWork,
    inquiry: Inquiry,
    rows: Mapping[int, InquiryPatient],
    outcomes: Mapping[int, Outcome],
    settings: MatchingSettings,
    *,
    claimable: Collection[int],
    channel: str,
    notes: str | None,
    now: datetime,
    correlation_id: str | None,
) -> None:
    """Record outcomes not recorded yet, with their effects, then the inquiry's answer."""
    finder = ReplacementFinder(uow, settings, now)
    answered: list[_Answered] = []
    for search_id, outcome in outcomes.items():
        conflict, offers = False, None
        if outcome in EXCLUDING:
            exclude_once(uow, search_id, inquiry.therapist_id, outcome.value, now)
        elif outcome in ACCEPTING:
            won = (
                search_id in claimable
                and rows[search_id].status != "withdrawn"
                and claim_search(
                    uow,
                    search_id,
                    inquiry.therapist_id,
                    inquiry_id=inquiry.id,
                    now=now,
                    correlation_id=correlation_id,
                )
            )
            if not won and not placed_with(uow, search_id, inquiry.therapist_id):
                conflict = True
                offers = finder.offers(inquiry.therapist_id, skip_search_ids=set(rows))
        answered.append(_Answered(search_id, outcome, conflict, offers))
    # no statement above reads this inquiry's patient rows, and whoever else writes them
    # locks the inquiry first: their outcomes can wait for the end and go in as one UPDATE
    _record_outcomes(uow, inquiry.id, answered, now)
    _mark_answered(
        uow,
        inquiry,
        rows,
        settings,
        channel=channel,
        notes=notes,
        now=now,
        correlation_id=correlation_id,
    )


def exclude_once(
    uow: UnitOfWork, search_id: int, therapist_id: int, reason: str, now: datetime
) -> None:
    """Exclude the therapist from the search, once (a second exclusion changes nothing)."""
    uow.session.execute(
        pg_insert(SearchExclusion)
        .values(search_id=search_id, therapist_id=therapist_id, reason=reason, created_at=now)
        .on_conflict_do_nothing(
            index_elements=[SearchExclusion.search_id, SearchExclusion.therapist_id]
        )
    )


def _mark_answered(
    uow: UnitOfWork,
    inquiry: Inquiry,
    rows: Mapping[int, InquiryPatient],
    settings: MatchingSettings,
    *,
    channel: str,
    notes: str | None,
    now: datetime,
    correlation_id: str | None,
) -> None:
    """The inquiry answered (the first answer starts the practice's cooling), its response
    type from every outcome recorded so far; inquiry.answered carries them all.

    `rows` are the inquiry's patients as they are now: read after the inquiry was locked
    (whatever changes them locks it first), and each outcome recorded here refreshed its row."""
    session = uow.session
    recorded = [row for row in _in_order(rows) if row.outcome is not None]
    summary = response_type({p.search_id: Outcome(p.outcome) for p in recorded if p.outcome})
    first_answer = inquiry.answered_at is None
    values: dict[str, Any] = {"response_type": summary.value, "channel": channel, "updated_at": now}
    if first_answer:
        values.update(status="answered", answered_at=now)
    if notes is not None:
        values["notes"] = notes
    # the row as the UPDATE left it, into the loaded inquiry (no second read)
    session.execute(
        update(Inquiry)
        .where(Inquiry.id == inquiry.id)
        .values(**values)
        .returning(Inquiry)
        .execution_options(populate_existing=True, synchronize_session=False)
    ).scalar_one()
    if first_answer:
        start_cooling(
            uow,
            inquiry,
            now.date(),
            cooling_period_days=settings.cooling_period_days,
            correlation_id=correlation_id,
        )
    assert inquiry.answered_at is not None
    uow.emit(
        PendingEvent.of(
            INQUIRY_ANSWERED,
            producer=PRODUCER,
            aggregate_id=inquiry.id,
            payload=InquiryAnsweredPayload(
                inquiry_id=inquiry.id,
                therapist_id=inquiry.therapist_id,
                practice_key=inquiry.practice_key,
                response_type=summary.value,
                channel=channel,  # type: ignore[arg-type]
                answered_at=inquiry.answered_at,
                patients=[
                    AnsweredPatient(
                        search_id=p.search_id,
                        patient_id=p.patient_id,
                        outcome=p.outcome,  # type: ignore[arg-type]
                        conflict=p.conflict,
                        replacement_offers=list(p.replacement_offers or []),
                    )
                    for p in recorded
                ],
            ),
            correlation_id=correlation_id,
        )
    )


@dataclass(frozen=True)
class _Answered:
    """One patient's outcome to record."""

    search_id: int
    outcome: Outcome
    conflict: bool
    offers: list[int] | None


def _record_outcomes(
    uow: UnitOfWork, inquiry_id: int, answered: Sequence[_Answered], now: datetime
) -> None:
    """The patients' outcomes; an open patient becomes answered, a withdrawn one stays so.
    One UPDATE (it locks the rows as they are now) returning the rows into the loaded ones."""
    if not answered:
        return
    uow.session.execute(
        _outcomes_update(),
        {
            "answered_inquiry": inquiry_id,
            "now": now,
            "search_ids": [a.search_id for a in answered],
            "outcomes": [a.outcome.value for a in answered],
            "conflicts": [a.conflict for a in answered],
            # JSON text; no offers: NULL, and SQL NULL in the row
            "offers": [None if a.offers is None else json_dumps(a.offers) for a in answered],
        },
    ).all()


@functools.cache
def _outcomes_update() -> Update:
    """The UPDATE of `_record_outcomes`, the outcomes given as arrays (one row each from
    unnest); built once per process (building and compiling it cost more than running it)."""
    given = (
        func.unnest(
            cast(bindparam("search_ids"), ARRAY(Integer)),
            cast(bindparam("outcomes"), ARRAY(Text)),
            cast(bindparam("conflicts"), ARRAY(Boolean)),
            cast(bindparam("offers"), ARRAY(Text)),
        )
        .table_valued(
            column("search_id", Integer),
            column("outcome", Text),
            column("conflict", Boolean),
            column("offers", Text),
        )
        .render_derived(name="given")
    )
    return (
        update(InquiryPatient)
        .where(
            InquiryPatient.inquiry_id == bindparam("answered_inquiry", type_=Integer),
            InquiryPatient.search_id == given.c.search_id,
        )
        .values(
            outcome=given.c.outcome,
            outcome_at=bindparam("now", type_=UTCDateTime),
            status=case((InquiryPatient.status == "open", "answered"), else_=InquiryPatient.status),
            conflict=given.c.conflict,
            replacement_offers=cast(given.c.offers, JSONB),
        )
        .returning(InquiryPatient)
        .execution_options(populate_existing=True, synchronize_session=False)
    )


def _in_order(rows: Mapping[int, InquiryPatient]) -> list[InquiryPatient]:
    """The inquiry's patients in position order."""
    return sorted(rows.values(), key=lambda row: row.position)
