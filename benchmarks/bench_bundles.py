"""Benchmark one full bundling run (global and baseline) on realistic seeded markets.

Usage: .venv/bin/python benchmarks/bench_bundles.py [--sizes small,city,germany] [--json FILE]
       [--history] [--no-reference]
Times are the median of several runs (wall clock and this process's CPU time); peak memory
is the tracemalloc peak of one extra run (Python and numpy allocations made during the run,
inputs excluded). The global strategy runs twice per market: the columnar engine (`global`)
and the per-pair reference engine (`global-ref`, bundling/reference.py), so time, memory and
coverage compare side by side.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import tracemalloc
from dataclasses import dataclass, replace
from datetime import date, timedelta
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from matching_service.bundling import BundleConfig, Strategy, Therapist, propose_bundles
from matching_service.bundling.model import MAX_HISTORY_ENTRIES, HistoryEntry
from matching_service.bundling.reference import propose_bundles_reference
from matching_service.simulation.geography import (
    PostalAreas,
    load_postal_areas,
    synthetic_areas,
)
from matching_service.simulation.population import make_searches, make_therapists

TODAY = date(2026, 3, 2)
INHABITANTS_PER_POSTAL_CODE = 7700  # 83.6 M inhabitants / about 10,800 postal codes


@dataclass(frozen=True)
class Size:
    """A benchmark market: its size, region, repetitions and target for the global strategy."""

    name: str
    searches: int
    therapists: int
    centre: tuple[float, float] | None
    repeats: int
    target_seconds: float


SIZES = {
    "small": Size("small", 100, 50, (51.5413, 9.9158), 7, 0.020),  # Göttingen
    "city": Size("city", 10_000, 2_000, (52.5200, 13.4050), 3, 0.3),  # Berlin region
    "germany": Size("germany", 100_000, 40_000, None, 2, 3.0),
}


def market(size: Size, areas: PostalAreas, seed: int, history: bool = False) -> tuple[list, list]:
    """Searches and therapists for a size; ~1 therapist per 2,000 inhabitants."""
    rng = np.random.default_rng(seed)
    if size.centre is not None:
        inhabitants = size.therapists * 2000
        count = max(3, round(inhabitants / INHABITANTS_PER_POSTAL_CODE))
        areas = areas.nearest(*size.centre, count)
    therapists = make_therapists(rng, areas, size.therapists)
    searches = make_searches(rng, areas, size.searches, TODAY)
    if history:
        therapists = with_history(np.random.default_rng([seed, 1]), therapists)
    return searches, therapists


def with_history(rng: np.random.Generator, therapists: list[Therapist]) -> list[Therapist]:
    """Every therapist with up to 10 answered or unanswered inquiries; one in five flagged."""
    out = []
    for t in therapists:
        entries = []
        sent = TODAY
        for _ in range(int(rng.integers(0, MAX_HISTORY_ENTRIES + 1))):
            sent -= timedelta(days=int(rng.integers(28, 60)))
            patients = int(rng.integers(3, 7))
            answered = rng.random() < 0.8
            accepted = int(answered and rng.random() < 0.3)
            capacity = int(rng.integers(0, patients - accepted + 1)) if answered else 0
            entries.append(
                HistoryEntry(
                    sent_on=sent,
                    answered_on=sent + timedelta(days=3) if answered else None,
                    patients=patients,
                    accepted=accepted,
                    rejected_capacity=capacity,
                    rejected_other=patients - accepted - capacity if answered else 0,
                )
            )
        flagged = bool(rng.random() < 0.2)
        out.append(replace(t, answer_history=tuple(entries), potentially_available=flagged))
    return out


def measure(
    size: Size, strategy: Strategy, searches: list, therapists: list, reference: bool = False
) -> dict:
    """Median seconds, tracemalloc peak and coverage of one strategy on one market."""
    config = BundleConfig()
    run = propose_bundles_reference if reference else propose_bundles
    repeats = (
        size.repeats if strategy is Strategy.GLOBAL and not reference else max(1, size.repeats // 2)
    )
    times, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        result = run(searches, therapists, config, TODAY, strategy)
        times.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    tracemalloc.start()
    run(searches, therapists, config, TODAY, strategy)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    covered = result.covered_search_ids()
    long_wait = {s.search_id for s in searches if (TODAY - s.waiting_since.date()).days >= 60}
    return {
        "size": size.name,
        "searches": len(searches),
        "therapists": len(therapists),
        "strategy": strategy.value + ("-ref" if reference else ""),
        "seconds": round(statistics.median(times), 4),
        # CPU time of this process: less disturbed than wall time on a shared machine
        "cpu_seconds": round(statistics.median(cpu), 4),
        "repeats": repeats,
        "peak_mb": round(peak / 2**20, 1),
        "covered": len(covered),
        "covered_waiting_60_days": len(covered & long_wait),
        "waiting_60_days": len(long_wait),
        "inquiries": len(result.inquiries),
        "target_seconds": size.target_seconds
        if strategy is Strategy.GLOBAL and not reference
        else None,
    }


def main(argv: list[str] | None = None) -> int:
    """Run the selected sizes and print a table (and optionally write JSON records)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="small,city,germany", help="comma-separated subset")
    parser.add_argument("--json", type=Path, help="write one record per size and strategy")
    parser.add_argument("--seed", type=int, default=20260302)
    parser.add_argument("--zipcodes", type=Path, help="postal-code CSV (default ../shared/data)")
    parser.add_argument(
        "--history",
        action="store_true",
        help="give every therapist a seeded answer history (0-10 entries; one in five flagged)",
    )
    parser.add_argument(
        "--no-reference", action="store_true", help="skip the reference engine (global-ref)"
    )
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.sizes.split(",") if n.strip()]
    unknown = [n for n in names if n not in SIZES]
    if unknown:
        parser.error(f"unknown size(s) {', '.join(unknown)}; choose from {', '.join(SIZES)}")
    areas = load_postal_areas(args.zipcodes) or synthetic_areas(np.random.default_rng(args.seed))
    print(f"geography: {areas.source}, {len(areas)} areas; seed {args.seed}")
    header = (
        f"{'size':8} {'strategy':10} {'searches':>8} {'therap.':>7} {'median s':>9} {'cpu s':>8} "
        f"{'peak MB':>8} {'covered':>8} {'cov>=60d':>12} {'inquiries':>9} {'target':>8}"
    )
    print(header)
    records = []
    for name in names:
        size = SIZES[name]
        searches, therapists = market(size, areas, args.seed, args.history)
        runs = [(Strategy.GLOBAL, False), (Strategy.GLOBAL, True), (Strategy.BASELINE, False)]
        for strategy, reference in runs:
            if reference and args.no_reference:
                continue
            rec = measure(size, strategy, searches, therapists, reference)
            records.append(rec)
            target = rec["target_seconds"]
            verdict = "" if target is None else ("ok" if rec["seconds"] < target else "MISSED")
            print(
                f"{name:8} {rec['strategy']:10} {rec['searches']:>8} {rec['therapists']:>7} "
                f"{rec['seconds']:>9.4f} {rec['cpu_seconds']:>8.4f} {rec['peak_mb']:>8.1f} "
                f"{rec['covered']:>8} "
                f"{rec['covered_waiting_60_days']:>5}/{rec['waiting_60_days']:<6} "
                f"{rec['inquiries']:>9} {verdict:>8}",
                flush=True,
            )
    if args.json:
        args.json.write_text(json.dumps(records, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
