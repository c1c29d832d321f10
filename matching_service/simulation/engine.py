"""The day loop: arrivals, openings, answers, follow-ups, trials and one bundling run a day."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta

import numpy as np

from ..bundling import BundleConfig, Strategy, propose_bundles
from ..bundling.model import MAX_HISTORY_ENTRIES, HistoryEntry, Search
from ..placement import (
    InquiryState,
    Outcome,
    PlacementSettings,
    SearchState,
    SearchStatus,
    TherapistContact,
    accepts_first,
    claim,
    contactability,
    cooling_end,
    email_allowed,
    grant_contacts,
    record_answer,
    record_trial_failure,
    record_trial_success,
    replacement_offer,
    use_contact,
    withdraw,
    withdrawals,
)
from .geography import PostalAreas
from .model import OpenInquiry, Parameters, World
from .population import make_searches, make_therapists


class Simulation:
    """One strategy on one seeded market; run() fills the world and its event log."""

    def __init__(
        self,
        params: Parameters,
        areas: PostalAreas,
        strategy: Strategy,
        use_history: bool = True,
    ) -> None:
        self.p = params
        self.strategy = strategy
        self.use_history = use_history
        market = np.random.default_rng([params.seed, 1])
        region = areas.nearest(
            params.centre_lat, params.centre_lon, max(3, round(params.therapists * 2000 / 7700))
        )
        self.therapist_list = make_therapists(market, region, params.therapists)
        patients = make_searches(market, region, params.patients, params.start)
        last_arrival = max(params.days - params.observe_days, 1)
        self.arrival = sorted(
            zip(market.integers(0, last_arrival, len(patients)).tolist(), patients, strict=True),
            key=lambda item: (item[0], item[1].search_id),
        )
        # Therapists differ in how often a place comes free (A: a lognormal factor on the
        # rate with mean 1, so the market has as many places whatever the spread; spread 0 =
        # all alike); a separate stream keeps the other draws the same whatever the spread.
        spread = np.random.default_rng([params.seed, 3])
        sigma = params.opening_rate_spread
        factor = np.exp(sigma**2 / 2 - spread.normal(0.0, 1.0, len(self.therapist_list)) * sigma)
        self.opening_days = {
            str(t.therapist_id): _opening_days(
                market.exponential(params.opening_every_days, params.days // 5 + 5) * f,
                params.opening_every_days * f,
                params.days,
                spread,
            )
            for t, f in zip(self.therapist_list, factor.tolist(), strict=True)
        }
        # Therapists who keep their potentially_available flag current (A).
        self.flag_keepers = {
            str(t.therapist_id)
            for t, keeps in zip(
                self.therapist_list,
                (spread.random(len(self.therapist_list)) < params.flag_share).tolist(),
                strict=True,
            )
            if keeps
        }
        self.rng = np.random.default_rng([params.seed, 2])
        self.config = BundleConfig(
            params.bundle_min_size,
            params.bundle_max_size,
            params.max_inquiries_per_patient,
            use_answer_history=use_history,
        )
        self.settings = PlacementSettings(
            params.cooling_period_days, params.follow_up_after_days, params.email_min_days_between
        )
        self.w = World()
        self.stats = {"inquiries": 0, "slots": 0, "acceptances": 0, "conflicts": 0}
        for t in self.therapist_list:
            # In the simulation every therapist starts contactable (cooling is not modelled
            # before day 0).
            self.w.therapists[str(t.therapist_id)] = replace(t, contactable=True)
            self.w.openings[str(t.therapist_id)] = []
            self.w.history[str(t.therapist_id)] = []

    def day(self, d: int) -> datetime:
        """Calendar date of a simulation day (as a UTC timestamp at 09:00)."""
        return datetime.combine(self.p.start + timedelta(days=d), time(9), tzinfo=UTC)

    def run(self) -> World:
        """Simulate every day in order."""
        arrivals = iter(self.arrival)
        pending = next(arrivals, None)
        for d in range(self.p.days):
            while pending is not None and pending[0] == d:
                self._arrive(d, pending[1])
                pending = next(arrivals, None)
            self._trials(d)
            self._top_up_budgets(d)
            self._openings(d)
            self._answers_and_follow_ups(d)
            self._bundle(d)
        return self.w

    def _arrive(self, d: int, profile: Search) -> None:
        sid = str(profile.search_id)
        self.w.profiles[sid] = replace(profile, waiting_since=self.day(d))
        self.w.searches[sid] = SearchState(
            search_id=sid, patient_id=profile.patient_id, contact_budget=self.p.contact_budget
        )
        self.w.started[sid] = d
        self.w.events.append(("search_started", d, sid))

    def _trials(self, d: int) -> None:
        for sid in [s for s, end in self.w.trial_ends.items() if end == d]:
            del self.w.trial_ends[sid]
            search = self.w.searches[sid]
            if self.rng.random() < self.p.trial_success_probability:
                self.w.searches[sid] = record_trial_success(search)
                self.w.placed_day[sid] = self.w.claim_day[sid]
                self.w.events.append(("trial_succeeded", d, sid))
            else:
                self.w.searches[sid] = record_trial_failure(search, self.p.start + timedelta(d))
                self.w.events.append(("trial_failed", d, sid))

    def _top_up_budgets(self, d: int) -> None:
        # Staff grant another default budget a while after a search used its contacts up.
        for sid, since in list(self.w.budget_empty_since.items()):
            if d >= since + self.p.top_up_after_days:
                del self.w.budget_empty_since[sid]
                self.w.searches[sid] = grant_contacts(self.w.searches[sid], self.p.contact_budget)
                self.w.events.append(("contacts_granted", d, sid))

    def _openings(self, d: int) -> None:
        for tid, days in self.opening_days.items():
            slots = [end for end in self.w.openings[tid] if end > d]
            slots += [d + self.p.opening_lasts_days] * int(np.count_nonzero(days == d))
            self.w.openings[tid] = slots

    def _answers_and_follow_ups(self, d: int) -> None:
        for iid in sorted(self.w.inquiries):
            inq = self.w.inquiries.get(iid)
            if inq is None:
                continue
            sent_on = inq.state.sent_on
            assert sent_on is not None, "simulated inquiries are sent when they are created"
            sent = (sent_on - self.p.start).days
            if inq.answer_day == d:
                self._answer(d, inq)
            elif inq.answer_day is None and d >= sent + self.p.follow_up_after_days:
                self.w.events.append(("phone_call", d, inq.state.practice_key))
                if self.rng.random() < self.p.phone_reach_probability:
                    self._answer(d, inq)
                else:
                    inq.phone_attempts_left -= 1
                    if inq.phone_attempts_left == 0:
                        self._close_without_answer(d, inq)

    def _close_without_answer(self, d: int, inq: OpenInquiry) -> None:
        # Assumption: after the last failed call the inquiry is closed as no_response and
        # the practice cools down as if it had answered.
        del self.w.inquiries[str(inq.state.inquiry_id)]
        today = self.p.start + timedelta(d)
        self.w.next_contactable[inq.state.practice_key] = (
            cooling_end(today, self.settings) - self.p.start
        ).days
        self.w.events.append(("answer_recorded", d, inq.state.practice_key, "no_response"))

    def _answer(self, d: int, inq: OpenInquiry) -> None:
        w, today = self.w, self.p.start + timedelta(d)
        tid = str(inq.state.therapist_id)
        current = inq.state.current_search_ids
        has_opening = bool(w.openings[tid])
        seen = (
            inq.original
            if self.rng.random() < self.p.unaware_of_withdrawal_probability
            else current
        )
        unsuitable, chosen = set(), None
        for sid in seen:
            if self.rng.random() < self.p.unsuitable_probability:
                unsuitable.add(sid)
            elif has_opening and chosen is None:
                chosen = sid
        outcomes = {
            sid: Outcome.ACCEPTED
            if sid == chosen
            else Outcome.REJECTED_UNSUITABLE
            if sid in unsuitable
            else Outcome.REJECTED_CAPACITY
            for sid in current
        }
        record = record_answer(
            inq.state, outcomes, {s: w.searches[str(s)] for s in current}, today, self.settings
        )
        del w.inquiries[str(inq.state.inquiry_id)]
        w.searches.update({str(s): st for s, st in record.searches.items()})
        w.next_contactable[inq.state.practice_key] = (
            record.next_contactable_date - self.p.start
        ).days
        w.events.append(("answer_recorded", d, inq.state.practice_key, record.response_type.value))
        counts = Counter(outcomes.values())
        # An acceptance of a withdrawn patient (a conflict) still shows the therapist had room.
        self._answered_in_history(
            inq,
            today,
            accepted=int(chosen is not None),
            rejected_capacity=counts[Outcome.REJECTED_CAPACITY],
            rejected_other=counts[Outcome.REJECTED_UNSUITABLE],
        )
        for sid in record.claimed:
            self._placed(d, str(sid), tid)
        if chosen is not None:
            self.stats["acceptances"] += 1
        lost = [chosen] if chosen is not None and chosen not in current else []
        lost += list(record.conflicts)
        for sid in lost:
            self.stats["conflicts"] += 1
            w.events.append(("conflict", d, sid, tid))
            self._replacement(d, tid, str(sid))

    def _answered_in_history(
        self,
        inq: OpenInquiry,
        today: date,
        accepted: int,
        rejected_capacity: int,
        rejected_other: int,
    ) -> None:
        entries = self.w.history[str(inq.state.therapist_id)]
        entries[inq.history_index] = replace(
            entries[inq.history_index],
            answered_on=today,
            accepted=accepted,
            rejected_capacity=rejected_capacity,
            rejected_other=rejected_other,
        )

    def answer_history(self, tid: str) -> tuple[HistoryEntry, ...]:
        """The therapist's answer history as the database would give it: newest first."""
        return tuple(reversed(self.w.history[tid][-MAX_HISTORY_ENTRIES:]))

    def _replacement(self, d: int, tid: str, lost: str) -> None:
        # The conflict reply offers eligible patients; it answers the therapist's own
        # message, so neither cooling nor the weekly email limit applies.
        w, today = self.w, self.p.start + timedelta(d)
        pool = [
            replace(w.profiles[s], contact_budget=max(st.contact_budget, 1),
                    excluded_therapist_ids=frozenset(e.therapist_id for e in st.exclusions))
            for s, st in w.searches.items()
            if st.status is SearchStatus.ACTIVE
        ]  # fmt: skip
        offer = replacement_offer(w.therapists[tid], pool, self.config, today, {lost}, limit=3)
        w.events.append(("replacement_offered", d, tid, len(offer)))
        for sid in offer:
            if w.openings[tid] and accepts_first(w.searches[str(sid)], tid):
                w.searches[str(sid)] = claim(w.searches[str(sid)], tid)
                self._placed(d, str(sid), tid)
                break

    def _placed(self, d: int, sid: str, tid: str) -> None:
        w = self.w
        w.openings[tid].pop(0)
        w.claim_day[sid] = d
        w.trial_ends[sid] = d + self.p.trial_days
        w.events.append(("search_claimed", d, sid, tid))
        open_states = [i.state for i in w.inquiries.values()]
        for wd in withdrawals(sid, open_states):
            inq = w.inquiries[str(wd.inquiry_id)]
            inq.state = withdraw(inq.state, sid)
            w.events.append(("patient_withdrawn", d, sid, str(wd.inquiry_id)))
            if not inq.state.current_search_ids:
                self._close_without_answer(d, inq)

    def _bundle(self, d: int) -> None:
        w, today = self.w, self.p.start + timedelta(d)
        open_practices = {i.state.practice_key for i in w.inquiries.values()}
        therapists = []
        for t in w.therapists.values():
            practice = str(t.practice_key)
            nxt = w.next_contactable.get(practice)
            contact = TherapistContact(
                therapist_id=t.therapist_id,
                practice_key=practice,
                next_contactable_date=None if nxt is None else self.p.start + timedelta(nxt),
            )
            last = w.last_email.get(practice)
            last_day = None if last is None else self.p.start + timedelta(last)
            if contactability(contact, today, open_practices).contactable and email_allowed(
                last_day, today, self.settings
            ):
                therapists.append(
                    replace(
                        t,
                        potentially_available=str(t.therapist_id) in self.flag_keepers
                        and bool(w.openings[str(t.therapist_id)]),
                        answer_history=self.answer_history(str(t.therapist_id)),
                    )
                )
        searches = [
            replace(
                w.profiles[sid],
                contact_budget=st.contact_budget,
                excluded_therapist_ids=frozenset(e.therapist_id for e in st.exclusions),
            )
            for sid, st in w.searches.items()
            if st.status is SearchStatus.ACTIVE and st.contact_budget > 0
        ]
        if not searches or not therapists:
            return
        result = propose_bundles(searches, therapists, self.config, today, self.strategy)
        for inquiry in result.inquiries:
            w.counter += 1
            iid = f"I{w.counter:06d}"
            ids = tuple(str(s) for s in inquiry.search_ids)
            state = InquiryState(
                iid, inquiry.therapist_id, inquiry.practice_key, ids, sent_on=today
            )
            answers = self.rng.random() < self.p.answer_probability
            answer_day = d + int(self.rng.integers(1, self.p.answer_within_days + 1))
            history = w.history[str(inquiry.therapist_id)]
            history.append(HistoryEntry(sent_on=today, answered_on=None, patients=len(ids)))
            w.inquiries[iid] = OpenInquiry(
                state,
                ids,
                answer_day if answers else None,
                self.p.phone_attempts,
                history_index=len(history) - 1,
            )
            for sid in ids:
                w.searches[sid] = use_contact(w.searches[sid])
                if w.searches[sid].contact_budget == 0:
                    w.budget_empty_since[sid] = d
            w.last_email[inquiry.practice_key] = d
            self.stats["inquiries"] += 1
            self.stats["slots"] += len(ids)
            w.events.append(("inquiry_sent", d, inquiry.practice_key, str(inquiry.therapist_id)))


def _opening_days(
    intervals: np.ndarray, mean: float, days: int, rng: np.random.Generator
) -> np.ndarray:
    """Days on which a place comes free: cumulative intervals, extended to cover the run."""
    moments = np.cumsum(intervals)
    while moments[-1] < days:
        more = rng.exponential(mean, len(intervals))
        moments = np.concatenate([moments, moments[-1] + np.cumsum(more)])
    return moments.astype(int)
