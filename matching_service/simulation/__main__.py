"""python -m matching_service.simulation: compare bundling strategies on a simulated market.

Defaults and where they come from (A = assumption, to be replaced by observed data):
  --days 180, --therapists 300, --patients 400: a mid-sized city region (Leipzig), fast.
  --opening-every-days 30 (A): each therapist has a place free for the platform about
      once a month; --opening-lasts-days 14 (A): then it is filled from other channels.
  --answer-probability 0.6 (A), --answer-within-days 7: business-rules.md §7 follow-up after 7 days.
  --phone-reach-probability 0.5 (A), --phone-attempts 3 (business-rules.md §7 MAX_CALL_ATTEMPTS).
  --unsuitable-probability 0.1 (A) per patient; --unaware-of-withdrawal-probability 0.5
      (A): share of therapists who answer from the original email, causing conflicts.
  --trial-days 21 (A: a few trial sessions, weekly); --trial-success-probability 0.8 (A).
  --contact-budget 25 (A: the business rules set no DEFAULT_CONTACT_BUDGET; "25 more contacts"
      is its example grant); --top-up-after-days 7 (A: staff grant the same again a week
      after a search used its contacts up); --max-inquiries-per-patient 3 (A).
  Bundle sizes 3-6, cooling 28 days, follow-up 7 days, email 7 days: business-rules.md §11 defaults.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import fields
from pathlib import Path

from ..bundling import Strategy
from .engine import Simulation
from .geography import load_postal_areas, synthetic_areas
from .metrics import summarise
from .model import Parameters

COLUMNS = [
    ("strategy", "strategy", "{}"),
    ("history", "history", "{}"),
    ("patients", "patients", "{}"),
    ("median_days", "median d", "{:.0f}"),
    ("p90_days", "p90 d", "{:.0f}"),
    ("max_days", "max d", "{:.0f}"),
    ("placed_within_30_share", "<=30 d", "{:.1%}"),
    ("placed_within_60_share", "<=60 d", "{:.1%}"),
    ("inquiries_per_placement", "inq/place", "{:.2f}"),
    ("slots_per_placement", "slots/place", "{:.2f}"),
    ("conflicts_per_placement", "conflicts/place", "{:.2f}"),
    ("conflict_rate", "conflicts", "{:.1%}"),
    ("contacts_per_therapist_month", "contacts/ther/mo", "{:.2f}"),
    ("cooling_violations", "cooling viol.", "{}"),
    ("never_placed", "never placed", "{}"),
]


def table(records: list[dict]) -> str:
    """Markdown table of the summaries, one row per strategy."""
    head = "| " + " | ".join(c[1] for c in COLUMNS) + " |"
    rule = "|" + "|".join("---" for _ in COLUMNS) + "|"
    rows = [
        "| " + " | ".join("-" if r[k] is None else fmt.format(r[k]) for k, _, fmt in COLUMNS) + " |"
        for r in records
    ]
    return "\n".join([head, rule, *rows])


HELP = {
    "seed": "random seed; the same seed gives the same run",
    "days": "simulated days",
    "therapists": "therapists in the region (about one per 2,000 inhabitants)",
    "patients": "searches starting during the run",
    "observe_days": "searches start no later than this many days before the end",
    "centre_lat": "region centre latitude (Leipzig); the nearest postal codes form the region",
    "centre_lon": "region centre longitude",
    "opening_every_days": "A: mean days between places a therapist could give the platform",
    "opening_lasts_days": "A: days an unclaimed place stays open before other channels fill it",
    "opening_rate_spread": "A: how much therapists differ in how often a place comes free "
    "(sigma of a lognormal factor with mean 1 on the rate; 0 = all alike)",
    "flag_share": "A: share of therapists who set potentially_available while a place is free",
    "answer_probability": "A: share of inquiries answered by email without a call",
    "answer_within_days": "emailed answers arrive 1..N days after sending (business rules §7: 7)",
    "phone_reach_probability": "A: chance a follow-up call reaches the therapist",
    "phone_attempts": "follow-up calls before giving up (business-rules.md §11 MAX_CALL_ATTEMPTS)",
    "unsuitable_probability": "A: chance a therapist rejects a listed patient as unsuitable",
    "unaware_of_withdrawal_probability": "A: share answering from the original email",
    "trial_days": "A: days of trial sessions before success or failure",
    "trial_success_probability": "A: share of trials that end in therapy",
    "contact_budget": "A: contacts granted at search start (the business rules' example grant: 25)",
    "top_up_after_days": "A: staff grant the budget again this long after it ran out",
    "max_inquiries_per_patient": "A: inquiries a patient may join per daily run",
    "bundle_min_size": "business-rules.md §11 BUNDLE_MIN_SIZE",
    "bundle_max_size": "business-rules.md §11 BUNDLE_MAX_SIZE",
    "cooling_period_days": "business-rules.md §11 COOLING_PERIOD_DAYS",
    "follow_up_after_days": "business-rules.md §11 FOLLOW_UP_AFTER_DAYS",
    "email_min_days_between": "business-rules.md §11 EMAIL_MIN_DAYS_BETWEEN",
}


def parser() -> argparse.ArgumentParser:
    """Options: one per Parameters field, plus strategy selection and outputs."""
    ap = argparse.ArgumentParser(
        prog="python -m matching_service.simulation",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    for f in fields(Parameters):
        if f.name == "start":
            continue
        ap.add_argument(
            f"--{f.name.replace('_', '-')}",
            type=type(f.default),
            default=f.default,
            help=f"{HELP[f.name]} (default: %(default)s)",
        )
    ap.add_argument("--strategy", choices=[s.value for s in Strategy], default="global")
    ap.add_argument("--compare", action="store_true", help="run baseline and global side by side")
    ap.add_argument(
        "--history",
        choices=["used", "ignored", "both"],
        default="used",
        help="whether the global strategy ranks therapists by their answer history "
        "(both: run it each way on the same seed)",
    )
    ap.add_argument("--zipcodes", type=Path, help="postal-code CSV (default ../shared/data)")
    ap.add_argument("--json", type=Path, help="write one record per strategy (a JSON list)")
    return ap


def main(argv: list[str] | None = None) -> int:
    """Run the simulation(s), print the table, optionally write JSON."""
    args = parser().parse_args(argv)
    params = Parameters(
        **{f.name: getattr(args, f.name) for f in fields(Parameters) if f.name != "start"}
    )
    if args.zipcodes is not None and not args.zipcodes.is_file():
        print(f"error: --zipcodes: no such file {args.zipcodes}", file=sys.stderr)
        return 2
    import numpy as np

    areas = load_postal_areas(args.zipcodes) or synthetic_areas(np.random.default_rng(args.seed))
    strategies = [Strategy.BASELINE, Strategy.GLOBAL] if args.compare else [Strategy(args.strategy)]
    uses = {"used": [True], "ignored": [False], "both": [False, True]}[args.history]
    runs = [
        (strategy, use)
        for strategy in strategies
        for use in (uses if strategy is Strategy.GLOBAL else [False])
    ]
    print(f"geography: {areas.source}; seed {params.seed}; {params.days} days")
    records = []
    for strategy, use in runs:
        began = time.perf_counter()
        sim = Simulation(params, areas, strategy, use_history=use)
        sim.run()
        record = summarise(sim)
        record["seconds"] = round(time.perf_counter() - began, 1)
        records.append(record)
    print(table(records))
    if args.json:
        args.json.write_text(json.dumps(records, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
