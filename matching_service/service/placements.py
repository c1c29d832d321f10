"""Trial outcomes and manual placements of a search (business-rules.md §5, §8): conditional UPDATEs
decide, so a search is claimed, confirmed or sent back to the market once."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, update

from matching_service.models import INFRA, PatientSearch, TherapistProjection
from matching_service.placement.status import TRIAL_FAILED
from matching_service.schemas import (
    SEARCH_FAILED_TRIAL,
    SEARCH_SUCCEEDED,
    SearchStatusChangedPayload,
)
from matching_service.service import SearchDetail, _detail, _load_search
from matching_service.service.answers import (
    ReplacementFinder,
    claim_search,
    exclude_once,
    lock_searches,
)
from matching_service.service.withdrawals import SEARCH_SUCCEEDED as SUCCEEDED_REASON
from matching_service.service.withdrawals import withdraw_search
from matching_service.settings import MatchingSettings
from shared import audit
from shared.db import UnitOfWork, utcnow
from shared.errors import Conflict, InvalidTransition, RuleViolation
from shared.outbox import PendingEvent

PRODUCER = "matching_service"


def record_trial_outcome(
    uow: UnitOfWork,
    search_id: int,
    outcome: str,
    *,
    as_of: datetime | None = None,
    correlation_id: str | None = None,
) -> SearchDetail:
    """After trial sessions staff confirm the place (`successful`, the patient leaves every
    open inquiry) or record failure (back to `active`, the trial's therapist excluded)."""
    now = as_of or utcnow()
    with uow:
        # the locked row as it is now: its therapist is the trial's
        held = (
            select(PatientSearch.id, PatientSearch.placed_therapist_id)
            .where(PatientSearch.id == search_id)
            .with_for_update(key_share=True)
            .subquery("held")
        )
        success = outcome == "success"
        values = (
            {"status": "successful", "ended_at": now}
            if success
            else {"status": "active", "placed_therapist_id": None, "claimed_at": None}
        )
        changed = uow.session.execute(
            update(PatientSearch)
            .where(PatientSearch.id == held.c.id, PatientSearch.status == "in_trial")
            .values(**values, updated_at=now)
            .returning(held.c.placed_therapist_id)
        ).first()
        if changed is None:
            current = _load_search(uow, search_id).status
            raise InvalidTransition(
                f"a trial outcome is recorded only for a search in trial; search {search_id} "
                f"is {current}",
                {"current": current, "required": "in_trial"},
            )
        therapist_id = changed.placed_therapist_id
        if success:
            withdraw_search(
                uow, search_id, SUCCEEDED_REASON, correlation_id=correlation_id, as_of=now
            )
        else:
            exclude_once(uow, search_id, therapist_id, TRIAL_FAILED, now)
        search = _load_search(uow, search_id)
        uow.emit(
            PendingEvent.of(
                SEARCH_SUCCEEDED if success else SEARCH_FAILED_TRIAL,
                producer=PRODUCER,
                aggregate_id=search_id,
                payload=SearchStatusChangedPayload(
                    search_id=search_id,
                    patient_id=search.patient_id,
                    status=search.status,  # type: ignore[arg-type]
                    previous_status="in_trial",
                    waiting_since=search.waiting_since,
                    contact_budget=search.contact_budget,
                    therapist_id=therapist_id,
                ),
                correlation_id=correlation_id,
            )
        )
        detail = _detail(uow, search)
        audit.record(
            uow.session,
            INFRA.audit_events,
            "status_change",
            "patient_search",
            search_id,
            ["status"],
        )
        uow.commit()
    return detail


def place_manually(
    uow: UnitOfWork,
    search_id: int,
    therapist_id: int,
    settings: MatchingSettings,
    *,
    as_of: datetime | None = None,
    correlation_id: str | None = None,
) -> SearchDetail:
    """A therapist called with an opening: staff place the patient with them outside any
    inquiry, under the same claim and conflict rules as an acceptance."""
    now = as_of or utcnow()
    with uow:
        therapist = uow.session.get(TherapistProjection, therapist_id)
        if therapist is None:
            raise RuleViolation(
                f"therapist {therapist_id} is not known to matching",
                [{"field": "therapist_id", "message": "no such therapist"}],
            )
        if therapist.status != "active":
            raise Conflict(
                f"therapist {therapist_id} is {therapist.status}: only an active therapist "
                "takes a placement",
                {"therapist_id": therapist_id, "therapist_status": therapist.status},
            )
        lock_searches(uow, [search_id])
        search = _load_search(uow, search_id)
        if not claim_search(
            uow, search_id, therapist_id, inquiry_id=None, now=now, correlation_id=correlation_id
        ):
            _refuse_placement(uow, search, therapist_id, settings, now)
        detail = _detail(uow, _load_search(uow, search_id))
        audit.record(
            uow.session,
            INFRA.audit_events,
            "status_change",
            "patient_search",
            search_id,
            ["placed_therapist_id", "status"],
        )
        uow.commit()
    return detail


def _refuse_placement(
    uow: UnitOfWork,
    search: PatientSearch,
    therapist_id: int,
    settings: MatchingSettings,
    now: datetime,
) -> None:
    """Why the claim did not happen, as a 409 naming the rule."""
    if search.status in ("in_trial", "successful"):
        offers = ReplacementFinder(uow, settings, now).offers(therapist_id, {search.id})
        raise Conflict(
            f"search {search.id} was claimed already by therapist "
            f"{search.placed_therapist_id}; the patients in replacement_offers are eligible "
            f"for therapist {therapist_id}",
            {"placed_therapist_id": search.placed_therapist_id, "replacement_offers": offers},
        )
    if search.status != "active":
        raise InvalidTransition(
            f"only an active search is placed; search {search.id} is {search.status}",
            {"current": search.status, "required": "active"},
        )
    raise Conflict(
        f"therapist {therapist_id} is excluded from search {search.id} or by its patient",
        {"therapist_id": therapist_id, "rule": "excluded_therapist"},
    )
