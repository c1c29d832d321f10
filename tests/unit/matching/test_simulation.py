"""The market simulator: reproducible, rule-abiding, quick on a tiny market."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import date, timedelta
from pathlib import Path

import numpy as np

from matching_service.bundling import Strategy
from matching_service.bundling.model import HistoryEntry
from matching_service.simulation.__main__ import main
from matching_service.simulation.engine import Simulation
from matching_service.simulation.geography import synthetic_areas
from matching_service.simulation.metrics import cooling_violations, summarise
from matching_service.simulation.model import Parameters

TINY = Parameters(seed=3, days=70, therapists=40, patients=50, observe_days=30)


def _run(strategy: Strategy, params: Parameters = TINY) -> dict:
    sim = Simulation(params, synthetic_areas(np.random.default_rng(0), 400), strategy)
    sim.run()
    return summarise(sim)


def test_same_seed_gives_the_same_result() -> None:
    assert _run(Strategy.GLOBAL) == _run(Strategy.GLOBAL)


def test_tiny_run_places_patients_without_cooling_violations() -> None:
    for strategy in Strategy:
        summary = _run(strategy)
        assert summary["patients"] == 50
        assert summary["placed"] > 0
        assert summary["cooling_violations"] == 0


def test_violation_check_catches_a_send_during_cooling() -> None:
    events = [
        ("inquiry_sent", 0, "p"),
        ("answer_recorded", 3, "p"),
        ("inquiry_sent", 20, "p"),  # 17 days after the answer: cooling
        ("inquiry_sent", 40, "q"),
        ("inquiry_sent", 41, "q"),  # open inquiry and within the email week
    ]
    assert cooling_violations(events, cooling_days=28, email_days=7) == 2


def test_cli_compare_writes_one_record_per_strategy(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "sim.json"
    args = ["--compare", "--days", "40", "--therapists", "30", "--patients", "30"]
    assert main([*args, "--observe-days", "20", "--json", str(out)]) == 0
    records = json.loads(out.read_text())
    assert [r["strategy"] for r in records] == ["baseline", "global"]
    for key in (
        "median_days",
        "p90_days",
        "placed_within_30_share",
        "inquiries_per_placement",
        "conflict_rate",
        "cooling_violations",
        "never_placed",
        "patients",
    ):
        assert key in records[0]
    assert "cooling viol." in capsys.readouterr().out


def _replayed_histories(events: list[tuple], start: date) -> dict[str, list[tuple]]:
    """(sent_on, answered_on) per therapist, newest first, from the event log alone."""
    sent: dict[str, list[list]] = {}
    open_by_practice: dict[str, list] = {}
    for event in events:
        if event[0] == "inquiry_sent":
            entry = [start + timedelta(event[1]), None]
            sent.setdefault(event[3], []).append(entry)
            open_by_practice[event[2]] = entry
        elif event[0] == "answer_recorded" and event[2] in open_by_practice:
            entry = open_by_practice.pop(event[2])
            if event[3] != "no_response":
                entry[1] = start + timedelta(event[1])
    return {tid: [tuple(e) for e in reversed(entries)][:10] for tid, entries in sent.items()}


def test_the_simulation_keeps_each_therapists_answer_history() -> None:
    params = replace(TINY, days=120, opening_rate_spread=1.0, flag_share=0.5)
    sim = Simulation(params, synthetic_areas(np.random.default_rng(0), 400), Strategy.GLOBAL)
    sim.run()
    replayed = _replayed_histories(sim.w.events, params.start)
    assert replayed, "the run sent inquiries"
    answered = 0
    for tid in sim.w.therapists:
        history = sim.answer_history(tid)
        assert [(e.sent_on, e.answered_on) for e in history] == replayed.get(tid, [])
        for entry in history:
            assert 3 <= entry.patients <= 6
            assert entry.accepted + entry.rejected_capacity + entry.rejected_other <= entry.patients
            if entry.answered_on is None:
                assert entry.accepted == entry.rejected_capacity == entry.rejected_other == 0
            else:
                answered += 1
    assert answered > 0
    # at most the newest ten reach the bundler
    tid = next(iter(sim.w.therapists))
    sim.w.history[tid] = [HistoryEntry(params.start + timedelta(i), None, 3) for i in range(12)]
    assert [e.sent_on.day for e in sim.answer_history(tid)] == list(range(16, 6, -1))


def test_history_reaches_the_bundler_and_changes_its_choices() -> None:
    params = replace(TINY, days=120, patients=80, opening_rate_spread=1.0)  # history only
    areas = synthetic_areas(np.random.default_rng(0), 400)
    runs = {}
    for use in (True, False):
        sim = Simulation(params, areas, Strategy.GLOBAL, use_history=use)
        sim.run()
        runs[use] = sim.w.events
        assert summarise(sim)["history"] == ("used" if use else "ignored")
    # before the first answer no history tells therapists apart: both runs go the same way
    first = next(e[1] for e in runs[True] if e[0] == "answer_recorded")
    assert [e for e in runs[True] if e[1] < first] == [e for e in runs[False] if e[1] < first]
    assert runs[True] != runs[False]


def test_opening_rate_spread_makes_therapists_differ() -> None:
    areas = synthetic_areas(np.random.default_rng(0), 400)
    alike = Simulation(TINY, areas, Strategy.GLOBAL).opening_days
    spread = Simulation(replace(TINY, opening_rate_spread=1.5), areas, Strategy.GLOBAL)
    counts = [int(np.count_nonzero(d < 1000)) for d in spread.opening_days.values()]
    assert max(counts) > 3 * min(counts)
    assert all(days[-1] >= TINY.days for days in spread.opening_days.values())
    alike_counts = [int(np.count_nonzero(d < 1000)) for d in alike.values()]
    assert max(alike_counts) < 3 * min(alike_counts)


def test_cli_runs_the_global_strategy_with_and_without_history(tmp_path: Path) -> None:
    out = tmp_path / "sim.json"
    args = ["--compare", "--history", "both", "--days", "40", "--therapists", "30"]
    assert main([*args, "--patients", "30", "--observe-days", "20", "--json", str(out)]) == 0
    records = json.loads(out.read_text())
    assert [(r["strategy"], r["history"]) for r in records] == [
        ("baseline", "ignored"),
        ("global", "ignored"),
        ("global", "used"),
    ]
