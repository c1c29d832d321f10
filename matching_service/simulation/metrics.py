"""Outcome figures of a simulation run and an independent check of the contact rules."""

from __future__ import annotations

import numpy as np

from ..bundling import Strategy
from .engine import Simulation


def cooling_violations(events: list[tuple], cooling_days: int, email_days: int) -> int:
    """Count sends that break a rule, replaying the event log on its own (not the rules)."""
    open_inquiry: dict[str, bool] = {}
    answered: dict[str, int] = {}
    emailed: dict[str, int] = {}
    violations = 0
    for event in events:
        kind, day = event[0], event[1]
        if kind == "inquiry_sent":
            practice = event[2]
            cooling = practice in answered and day < answered[practice] + cooling_days
            too_soon = practice in emailed and day < emailed[practice] + email_days
            if open_inquiry.get(practice) or cooling or too_soon:
                violations += 1
            open_inquiry[practice] = True
            emailed[practice] = day
        elif kind == "answer_recorded":
            open_inquiry[event[2]] = False
            answered[event[2]] = day
    return violations


def summarise(sim: Simulation) -> dict:
    """The figures the business watches (business-rules.md §9) for one strategy run."""
    w, p = sim.w, sim.p
    patients = len(w.started)
    waits = np.array(sorted(w.placed_day[s] - w.started[s] for s in w.placed_day), dtype=float)
    placed = len(waits)
    months = p.days / 30.44

    def pct(q: float) -> float | None:
        return None if placed == 0 else float(np.percentile(waits, q, method="inverted_cdf"))

    return {
        "strategy": sim.strategy.value,
        # the baseline never looks at the history
        "history": "used" if sim.use_history and sim.strategy is Strategy.GLOBAL else "ignored",
        "seed": p.seed,
        "patients": patients,
        "therapists": len(w.therapists),
        "placed": placed,
        "median_days": pct(50),
        "p90_days": pct(90),
        "max_days": None if placed == 0 else float(waits.max()),
        "placed_within_30_share": round(float(np.sum(waits <= 30)) / max(patients, 1), 3),
        "placed_within_60_share": round(float(np.sum(waits <= 60)) / max(patients, 1), 3),
        "inquiries": sim.stats["inquiries"],
        "inquiries_per_placement": round(sim.stats["inquiries"] / max(placed, 1), 2),
        "slots_per_placement": round(sim.stats["slots"] / max(placed, 1), 2),
        "conflicts_per_placement": round(sim.stats["conflicts"] / max(placed, 1), 3),
        "conflict_rate": round(sim.stats["conflicts"] / max(sim.stats["acceptances"], 1), 3),
        "contacts_per_therapist_month": round(
            sim.stats["inquiries"] / max(len(w.therapists), 1) / months, 3
        ),
        "cooling_violations": cooling_violations(
            w.events, p.cooling_period_days, p.email_min_days_between
        ),
        "never_placed": patients - placed,
    }
