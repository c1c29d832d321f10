"""Bundle runs (business-rules.md §6): the global bundler over the projections, for a region, a
list of therapists or everywhere; a dry run stores only its record.

A real run reads, plans and writes in one transaction that holds the inquiry writers' lock:
two runs at once serialise, and the second reads the first one's inquiries (its therapists
are not contactable: `open_inquiry`). At write time each search's row is locked and read
again: a search no longer active, or without budget, loses its places; an inquiry that
falls below BUNDLE_MIN_SIZE is not written.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import func, insert, select, text, update

from matching_service.bundling import BundleResult, Strategy, propose_bundles
from matching_service.bundling.engine import without_cycle_collection
from matching_service.bundling.model import Id, Search, SearchReason, TherapistReason
from matching_service.models import BundleRun
from matching_service.schemas import BundleRunCreate, BundleRunListQuery
from matching_service.service import market
from matching_service.service.inquiries import (
    HeldSearch,
    PlannedInquiry,
    bundle_config,
    hold_searches,
    lock_inquiry_writes,
    write_inquiries,
)
from matching_service.settings import MatchingSettings
from shared.db import UnitOfWork, utcnow
from shared.errors import NotFound
from shared.web import Page

# why a planned place was not written (the search's row, read again under its lock)
SEARCH_NO_LONGER_ACTIVE = "search_no_longer_active"
INQUIRY_BELOW_MINIMUM = "inquiry_below_minimum_at_write"
UNKNOWN_THERAPIST = "unknown_therapist"


@dataclass
class _Outcome:
    """What a run ends with: inquiries (id None until written) and the explanations."""

    inquiries: list[dict[str, Any]]
    left_out: list[dict[str, Any]]
    therapists_without_inquiry: list[dict[str, Any]]


def run_bundles(
    uow: UnitOfWork,
    request: BundleRunCreate,
    *,
    settings: MatchingSettings,
    created_by: str,
    correlation_id: str | None = None,
) -> BundleRunView:
    """Run the global bundler once and store the run; unless a dry run, write its inquiries
    (each search's contacts used, one inquiry.created each) in the same transaction."""
    started = time.perf_counter()
    as_of = request.as_of or utcnow()
    today = as_of.date()
    config = bundle_config(settings)
    with uow, without_cycle_collection():
        session = uow.session
        # this transaction only (nothing outlives it: safe behind PgBouncer): the reads'
        # estimated costs pass the JIT threshold once inquiries exist, and compiling them
        # takes longer than running them
        session.execute(text("SET LOCAL jit = off"))
        if not request.dry_run:
            lock_inquiry_writes(session)
        searches = market.load_searches(
            session,
            postal_code_prefix=request.postal_code_prefix,
            max_open_inquiries=settings.max_open_inquiries_per_search,
        )
        therapists = market.load_therapists(
            session,
            today,
            therapist_ids=request.therapist_ids,
            postal_code_prefix=request.postal_code_prefix,
        )
        phases = {"read": time.perf_counter() - started}
        proposed = propose_bundles(searches, therapists, config, today, Strategy.GLOBAL)
        phases["bundle"] = time.perf_counter() - started - phases["read"]
        outcome = _explained(proposed)
        outcome.therapists_without_inquiry += _missing_therapists(
            uow, request.therapist_ids, {t.therapist_id for t in therapists}, today
        )
        run_id = session.execute(
            insert(BundleRun)
            .values(
                dry_run=request.dry_run,
                as_of=as_of,
                postal_code_prefix=request.postal_code_prefix,
                therapist_ids=request.therapist_ids,
                created_by=created_by,
                searches_considered=len(searches),
                therapists_considered=len(therapists),
                result={},
            )
            .returning(BundleRun.id)
        ).scalar_one()
        if not request.dry_run:
            by_id = {search.search_id: search for search in searches}
            outcome = _write(uow, proposed, by_id, outcome, settings, as_of, run_id, correlation_id)
        written = sum(1 for inquiry in outcome.inquiries if inquiry["id"] is not None)
        seconds = time.perf_counter() - started
        phases["write"] = seconds - phases["read"] - phases["bundle"]
        session.execute(
            update(BundleRun)
            .where(BundleRun.id == run_id)
            .values(
                inquiries_created=written,
                seconds=round(seconds, 3),
                result={
                    # until the commit (which adds the outbox rows)
                    "phase_seconds": {name: round(value, 3) for name, value in phases.items()},
                    "inquiries": outcome.inquiries,
                    "left_out": outcome.left_out,
                    "therapists_without_inquiry": outcome.therapists_without_inquiry,
                },
            )
        )
        uow.commit()
        return BundleRunView(_load_run(uow, run_id))


def _explained(proposed: BundleResult) -> _Outcome:
    return _Outcome(
        inquiries=[
            {"id": None, "therapist_id": inquiry.therapist_id, "search_ids": inquiry.search_ids}
            for inquiry in proposed.inquiries
        ],
        left_out=[{"search_id": o.search_id, "reason": o.reason} for o in proposed.left_out],
        therapists_without_inquiry=[
            {"therapist_id": t.therapist_id, "reason": t.reason}
            for t in proposed.therapists_without_inquiry
        ],
    )


def _missing_therapists(
    uow: UnitOfWork, requested: list[int] | None, loaded: set[Any], today: date
) -> list[dict[str, Any]]:
    """Requested therapists the run could not consider: unknown, or not active."""
    missing = sorted(set(requested or ()) - loaded)
    if not missing:
        return []
    known = market.contactability(uow.session, today, missing)
    return [
        {
            "therapist_id": therapist_id,
            "reason": (
                f"{TherapistReason.NOT_CONTACTABLE.value}: {', '.join(known[therapist_id].reasons)}"
                if therapist_id in known
                else UNKNOWN_THERAPIST
            ),
        }
        for therapist_id in missing
    ]


def _write(
    uow: UnitOfWork,
    proposed: BundleResult,
    searches: Mapping[Id, Search],
    outcome: _Outcome,
    settings: MatchingSettings,
    as_of: datetime,
    run_id: int,
    correlation_id: str | None,
) -> _Outcome:
    """Write the proposed inquiries that still hold under the searches' row locks."""
    held = hold_searches(
        uow.session, [int(fit.search_id) for i in proposed.inquiries for fit in i.patients]
    )
    planned, dropped, below = _still_valid(proposed, held, settings.bundle_min_size)
    result = write_inquiries(
        uow,
        planned,
        held,
        searches,
        origin="bundle_run",
        settings=settings,
        as_of=as_of,
        bundle_run_id=run_id,
        correlation_id=correlation_id,
    )
    inquiries = [
        {"id": w.inquiry_id, "therapist_id": w.therapist_id, "search_ids": w.search_ids}
        for w in result.written
    ]
    covered = {sid for w in result.written for sid in w.search_ids}
    left_out = list(outcome.left_out)
    for search_id in sorted(set(dropped) - covered):
        left_out.append({"search_id": search_id, "reason": dropped[search_id]})
    idle = list(outcome.therapists_without_inquiry)
    for plan in below:
        idle.append({"therapist_id": plan.therapist_id, "reason": INQUIRY_BELOW_MINIMUM})
    for plan in result.practice_taken:
        reason = f"{TherapistReason.NOT_CONTACTABLE.value}: open_inquiry"
        idle.append({"therapist_id": plan.therapist_id, "reason": reason})
    return _Outcome(inquiries, left_out, idle)


def _still_valid(
    proposed: BundleResult, held: dict[int, HeldSearch], min_size: int
) -> tuple[list[PlannedInquiry], dict[int, str], list[PlannedInquiry]]:
    """The inquiries to write: places of searches no longer active or out of budget dropped
    (in bundle order), then inquiries below the minimum dropped; with why each search lost
    a place, and the inquiries dropped."""
    budget = {sid: search.budget_left for sid, search in held.items()}
    dropped: dict[int, str] = {}
    planned, below = [], []
    for inquiry in proposed.inquiries:
        patients = []
        for fit in inquiry.patients:
            search = held.get(int(fit.search_id))
            if search is None or search.status != "active":
                dropped[int(fit.search_id)] = SEARCH_NO_LONGER_ACTIVE
            elif budget[search.search_id] <= 0:
                dropped[search.search_id] = SearchReason.BUDGET_USED_UP.value
            else:
                budget[search.search_id] -= 1
                patients.append((search.search_id, fit.distance_km))
        plan = PlannedInquiry(int(inquiry.therapist_id), inquiry.practice_key, tuple(patients))
        if len(patients) < min_size:
            below.append(plan)
            for search_id, _ in patients:
                budget[search_id] += 1
                dropped.setdefault(search_id, INQUIRY_BELOW_MINIMUM)
        else:
            planned.append(plan)
    return planned, dropped, below


def _load_run(uow: UnitOfWork, run_id: int) -> BundleRun:
    run = uow.session.get(BundleRun, run_id, populate_existing=True)
    if run is None:
        raise NotFound(f"bundle run {run_id} does not exist")
    return run


@dataclass(frozen=True)
class BundleRunView:
    """A stored run with its result's lists read through (the shape of `BundleRunOut`)."""

    run: BundleRun

    def __getattr__(self, name: str) -> Any:
        if name == "run":  # not set yet (copy, unpickling): no recursion
            raise AttributeError(name)
        if name in ("inquiries", "left_out", "therapists_without_inquiry"):
            return self.run.result.get(name, [])
        if name == "phase_seconds":
            return self.run.result.get(name, {})
        return getattr(self.run, name)


def bundle_run(uow: UnitOfWork, run_id: int) -> BundleRunView:
    """One stored run, or NotFound."""
    with uow:
        return BundleRunView(_load_run(uow, run_id))


def list_bundle_runs(uow: UnitOfWork, query: BundleRunListQuery) -> Page:
    """A page of stored runs, newest first."""
    with uow:
        total = uow.session.execute(select(func.count()).select_from(BundleRun)).scalar_one()
        runs = (
            uow.session.execute(
                select(BundleRun)
                .order_by(BundleRun.created_at.desc(), BundleRun.id.desc())
                .offset((query.page - 1) * query.per_page)
                .limit(query.per_page)
            )
            .scalars()
            .all()
        )
    return Page(
        items=[BundleRunView(run) for run in runs],
        total=total,
        page=query.page,
        per_page=query.per_page,
    )
